"""dbt's selector language through the CLI: `ls --output`, `build --select tag:…`, and
`build --select state:modified+` rebuilding only an edited node and its descendants."""

from __future__ import annotations

import json

import pytest
from cli_helpers import copy_fixture, invoke, run_results

# run_basic: seeds families, models -> model_sizes (table) -> family_sizes (view),
# size_history (append), split (Python: big_models, small_models) -> big_count;
# source regions -> region_count.
DOWNSTREAM_OF_MODEL_SIZES = {"model_sizes", "family_sizes", "size_history", "split", "big_count"}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    project = copy_fixture("run_basic", tmp_path_factory.mktemp("selectors"))
    yml = project / "sql" / "models.yml"
    text = yml.read_text()
    text = text.replace("  - name: model_sizes\n", "  - name: model_sizes\n    tags: [core]\n")
    text = text.replace("  - name: region_count\n    config: {materialized: table}",
                        "  - name: region_count\n    config: {materialized: table, tags: [geo, nightly]}")
    yml.write_text(text)
    profiles = project / "profiles.yml"
    profiles.write_text(profiles.read_text() + "    other:\n      type: duckdb\n      path: target/other.duckdb\n")
    result = invoke(project, "build")
    assert result.exit_code == 0, result.output
    return project


def ran(project) -> set[str]:
    """Nodes and tests in the last run's run_results.json."""
    return {name for name in run_results(project) if name != "__all__"}


def names(project, *args: str) -> list[str]:
    result = invoke(project, "ls", *args, "--output", "name")
    assert result.exit_code == 0, result.output
    return result.output.split()


def test_help_says_space_is_union_and_comma_is_intersection(built):
    for command in ("build", "run", "test", "ls"):
        text = " ".join(invoke(built, command, "--help").output.split())
        assert "space = union, comma = intersection" in text, command
        assert "--resource-type" in text


def test_ls_json_one_object_per_line(built):
    result = invoke(built, "ls", "--select", "tag:core+", "--output", "json")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert [r["name"] for r in rows] == ["model_sizes", "family_sizes", "size_history", "split", "big_count"]
    sizes = rows[0]
    assert sizes == {
        "name": "model_sizes", "unique_id": "model.model_sizes", "resource_type": "model", "kind": "sql",
        "path": "sql/model_sizes.sql", "materialized": "table", "tags": ["core"],
        "depends_on": {"nodes": ["seed.families", "seed.models"]}, "relations": ["model_sizes"],
    }
    split = rows[3]
    assert split["outputs"] == {"big_models": "table", "small_models": "table"}
    assert split["path"] == "python_models/split.py" and split["depends_on"] == {"nodes": ["model.model_sizes"]}


def test_ls_set_operators_methods_and_outputs(built):
    assert names(built, "--select", "tag:core tag:geo") == ["model_sizes", "region_count"]  # union
    assert names(built, "-s", "tag:core", "-s", "tag:geo") == ["model_sizes", "region_count"]
    assert names(built, "-s", "tag:nightly,config.materialized:table") == ["region_count"]  # intersection
    assert names(built, "-s", "+big_count,model_sizes+") == ["model_sizes", "split", "big_count"]
    assert names(built, "-s", "*_sizes", "--exclude", "family_*") == ["model_sizes"]
    assert names(built, "-s", "config.materialized:append") == ["size_history"]
    assert names(built, "-s", "resource_type:source") == ["regions"]
    assert names(built, "-s", "model_sizes", "--resource-type", "test") == \
        ["assert_every_family_has_models", "unique_model_sizes_model_id"]  # each reads model_sizes
    assert names(built, "-s", "model_sizes+1", "--resource-type", "model") == \
        ["model_sizes", "family_sizes", "size_history", "split"]
    paths = invoke(built, "ls", "-s", "path:sql/model_sizes.sql @big_count", "--output", "path")
    assert paths.output.split() == ["seeds/families.csv", "seeds/models.csv", "sql/model_sizes.sql",
                                    "python_models/split.py", "sql/big_count.sql"]
    table = invoke(built, "ls", "-s", "not_null_big_models_model_id")  # a test named by a selector
    assert table.output.split() == ["test", "not_null_big_models_model_id", "<-", "split"]


def test_selectors_that_match_nothing(built):
    typo = invoke(built, "ls", "-s", "tag:cor")
    assert typo.exit_code == 2 and "no node or test has tag 'cor'; did you mean core?" in typo.output
    empty = invoke(built, "ls", "-s", "tag:core,tag:geo")  # an empty intersection is no error
    assert empty.exit_code == 0 and "Nothing selected." in empty.output


def test_build_by_tag_runs_only_the_tagged_nodes_and_their_tests(built):
    result = invoke(built, "build", "--select", "+tag:geo")
    assert result.exit_code == 0, result.output
    assert ran(built) == {"regions", "region_count"}
    result = invoke(built, "build", "--select", "tag:core")
    assert result.exit_code == 0, result.output
    assert ran(built) == {"model_sizes", "unique_model_sizes_model_id", "assert_every_family_has_models"}


def test_state_modified_plus_rebuilds_the_edited_node_and_its_children(built):
    # Nothing edited: only the Python model, which always runs, counts as modified.
    assert names(built, "-s", "state:modified") == ["split"]
    assert len(names(built, "-s", "state:new", "--target", "other")) == 9  # state is per warehouse
    sql = built / "sql" / "model_sizes.sql"
    sql.write_text(sql.read_text().replace("select m.model_id", "select distinct m.model_id"))
    assert names(built, "-s", "state:modified") == ["model_sizes", "split"]
    result = invoke(built, "build", "--select", "state:modified+")
    assert result.exit_code == 0, result.output
    nodes = {n for n, r in run_results(built).items() if n != "__all__" and r["resource_type"] != "test"}
    assert nodes == DOWNSTREAM_OF_MODEL_SIZES  # no seed, source or region_count
    assert run_results(built)["model_sizes"]["message"] != "up to date"  # rebuilt, not skipped
    assert "unique_model_sizes_model_id" in ran(built)  # and their tests came along
    assert names(built, "-s", "state:modified") == ["split"]
