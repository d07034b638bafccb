"""selection.py / selector_methods.py: dbt's selector language on a small project.

Graph of the project below (data flows down):

    families  models     events(raw)  clicks
         \\     /             |           |
        stg_models       stg_events   clicks_count
                 \\        /
                   daily
                   /   \\
                 fit    |       (Python: outputs fit_a, fit_b)
                   \\   /
                   report
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tierpool.core.project import Project, load_project
from tierpool.core.selection import parse_selector, resolve_selection, select_nodes, split_selectors
from tierpool.core.state import BuildState
from tierpool.errors import ConfigError

FILES = {
    "profiles.yml": "tierpool: {target: dev, outputs: {dev: {type: duckdb, path: target/w.duckdb}}}\n",
    "tierpool_project.yml": "name: selectors\n",
    "seeds/families.csv": "family_id\nf1\n",
    "seeds/models.csv": "model_id,family_id\nm1,f1\n",
    "seeds/seeds.yml": """
        seeds:
          - name: families
            tags: [reference]
            columns:
              - {name: family_id, data_type: VARCHAR, data_tests: [unique]}
          - name: models
            config: {tags: [reference, pii]}
            columns:
              - name: model_id
                data_type: VARCHAR
                config: {tags: [critical]}
                data_tests: [not_null]
              - name: family_id
                data_type: VARCHAR
                data_tests:
                  - relationships: {to: ref('families'), field: family_id}
        """,
    "data/events.csv": "model_id,n\nm1,1\n",
    "data/clicks.csv": "model_id\nm1\n",
    "sql/sources.yml": """
        sources:
          - name: raw
            config: {tags: [raw]}
            tables:
              - {name: events, expression: "read_csv('data/events.csv')", tags: [hourly]}
          - name: clicks
            expression: "read_csv('data/clicks.csv')"
        """,
    "sql/staging/stg_events.sql": "select model_id, n from events\n",
    "sql/staging/stg_models.sql":
        "select m.model_id, f.family_id from models as m join families as f on f.family_id = m.family_id\n",
    "sql/staging/staging.yml": """
        models:
          - name: stg_events
            tags: staging
            data_tests:
              - expression: {expression: "n >= 0", config: {tags: [sanity]}}
          - name: stg_models
            config: {tags: [staging]}
        """,
    "sql/marts/daily.sql":
        "select e.model_id, sum(e.n) as n from stg_events as e join stg_models as m using (model_id) group by 1\n",
    "sql/marts/report.sql": "select d.model_id, d.n, f.score from daily as d join fit_a as f using (model_id)\n",
    "sql/marts/clicks_count.sql": "select count(*) as n from clicks\n",
    "sql/marts/marts.yml": """
        models:
          - name: daily
            config: {materialized: table, tags: [nightly]}
            columns:
              - {name: model_id, data_tests: [unique]}
          - name: clicks_count
            config: {materialized: append, unique_key: n}
        """,
    "python_models/fit.py": """
        outputs = ("fit_a", "fit_b")


        def model(ctx):
            frame = ctx.ref("daily")
            return {"fit_a": frame.assign(score=1.0)[["model_id", "score"]], "fit_b": frame[["model_id"]]}
        """,
    "python_models/fit.yml": """
        models:
          - name: fit_a
            config: {materialized: append, unique_key: model_id, tags: [fit]}
            columns: [{name: model_id, data_type: VARCHAR}, {name: score, data_type: DOUBLE}]
          - name: fit_b
            columns: [{name: model_id, data_type: VARCHAR}]
        """,
    "tests/data/assert_report_small.sql": "select * from report where n > 1000\n",
}
REL = "relationships_models_family_id__family_id__families"
SEEDS = ["families", "models"]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import textwrap

    base = tmp_path_factory.mktemp("selectors") / "project"
    for rel, text in FILES.items():
        path = base / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
    return base


@pytest.fixture(scope="module")
def project(root: Path) -> Project:
    return load_project(root)


Pick = Callable[..., list[str]]


@pytest.fixture(scope="module")
def nodes(project: Project) -> Pick:
    """Selected node names, sorted (the order is checked separately)."""
    graph = project.graph()

    def pick(*select: str, exclude: tuple[str, ...] = (), types: tuple[str, ...] = ()) -> list[str]:
        return sorted(select_nodes(project, graph, list(select), list(exclude), resource_types=types))

    return pick


@pytest.fixture(scope="module")
def tests(project: Project) -> Pick:
    graph = project.graph()

    def pick(*select: str, exclude: tuple[str, ...] = (), types: tuple[str, ...] = ()) -> list[str]:
        return resolve_selection(project, graph, select, exclude, types).tests

    return pick


def test_project_tests_have_the_expected_names(project: Project) -> None:
    assert sorted(project.tests) == ["assert_report_small", "expression_stg_events", "not_null_models_model_id",
                                     REL, "unique_daily_model_id", "unique_families_family_id"]


# -- set operators ------------------------------------------------------------------------


def test_space_and_repeated_select_are_unions_comma_is_intersection(nodes: Pick) -> None:
    assert nodes("tag:pii tag:raw") == nodes("tag:pii", "tag:raw") == ["events", "models"]
    assert nodes("tag:reference,tag:pii") == ["models"]
    assert nodes("tag:staging+,config.materialized:table") == ["daily", "fit"]
    assert nodes("tag:reference,tag:raw") == []  # an empty intersection is not an error
    assert nodes("+daily,stg_events+") == ["daily", "stg_events"]  # common to both


def test_split_selectors_keeps_commas_within_a_term() -> None:
    assert split_selectors(["a+ +b", "c,d", "  "]) == ["a+", "+b", "c,d"]


def test_exclude_uses_the_same_syntax_after_select(nodes: Pick) -> None:
    assert nodes("tag:staging+", exclude=("report fit",)) == ["daily", "stg_events", "stg_models"]
    assert nodes("tag:staging+", exclude=("tag:staging,stg_models",)) == ["daily", "fit", "report", "stg_events"]
    everything = nodes()
    assert len(everything) == 10
    assert nodes(exclude=("tag:reference",)) == sorted(set(everything) - set(SEEDS))


def test_build_order_and_no_selector_selects_everything(project: Project) -> None:
    graph = project.graph()
    assert select_nodes(project, graph, None, None) == graph.topological_order()
    picked = select_nodes(project, graph, ["report daily stg_events"], None)
    assert picked == [n for n in graph.topological_order() if n in {"report", "daily", "stg_events"}]


# -- methods ------------------------------------------------------------------------------


def test_tag_from_top_level_config_source_group_and_python_outputs(nodes: Pick, project: Project) -> None:
    assert nodes("tag:reference") == SEEDS  # top-level tags and config: {tags}
    assert nodes("tag:staging") == ["stg_events", "stg_models"]  # a string and a list
    assert nodes("tag:raw") == nodes("tag:hourly") == ["events"]  # a source table gets its group's
    assert nodes("tag:fit") == ["fit"]  # an output's tags tag its Python model
    assert nodes("tag:stag*") == nodes("tag:staging")  # wildcards
    assert project.nodes["events"].tags == ("raw", "hourly")


def test_tag_selects_tests_of_tagged_nodes_and_tests_tagged_themselves(tests: Pick, project: Project) -> None:
    graph = project.graph()
    assert tests("tag:reference") == ["not_null_models_model_id", REL, "unique_families_family_id"]
    chosen = resolve_selection(project, graph, ["tag:critical"])  # a column's tags tag its tests
    assert (chosen.nodes, chosen.tests, chosen.named_tests) == ([], ["not_null_models_model_id"],
                                                                ["not_null_models_model_id"])
    assert tests("tag:sanity") == ["expression_stg_events"]
    assert resolve_selection(project, graph, ["tag:reference"]).named_tests == []
    both = resolve_selection(project, graph, ["path:seeds,resource_type:seed"])  # path matches seeds.yml's tests
    assert both.tests == ["not_null_models_model_id", REL, "unique_families_family_id"]
    assert both.named_tests == []  # resource_type:seed does not name them
    assert resolve_selection(project, graph, ["path:seeds,unique_*"]).named_tests == ["unique_families_family_id"]


def test_unknown_tag_is_an_error_with_the_closest_tags(nodes: Pick) -> None:
    with pytest.raises(ConfigError, match=r"selector 'tag:nightley': no node or test has tag 'nightley'; "
                                          r"did you mean nightly"):
        nodes("tag:nightley")


def test_path_directory_file_bare_path_and_glob(nodes: Pick, tests: Pick, root: Path) -> None:
    assert nodes("path:sql/staging") == nodes("path:sql/staging/") == ["stg_events", "stg_models"]
    assert nodes("sql/marts/daily.sql") == nodes("path:./sql/marts/daily.sql") == ["daily"]
    assert nodes(f"path:{root / 'sql' / 'marts'}") == ["clicks_count", "daily", "report"]  # absolute
    assert nodes("path:sql/marts/*.sql") == ["clicks_count", "daily", "report"]
    assert nodes("path:python_models") == ["fit"]
    assert nodes("path:sql/sources.yml") == ["clicks", "events"]  # a source's file is its yml
    assert tests("path:sql/staging") == ["expression_stg_events"]  # declared in staging.yml
    assert tests("path:tests/data") == ["assert_report_small"]
    with pytest.raises(ConfigError, match=r"no node or test is defined in 'sql/stagin'.*did you mean sql/staging"):
        nodes("path:sql/stagin")


def test_config_materialized(nodes: Pick) -> None:
    assert nodes("config.materialized:view") == ["report", "stg_events", "stg_models"]
    assert nodes("config.materialized:table") == ["daily", "fit"]  # fit_b is a table
    assert nodes("config.materialized:append") == ["clicks_count", "fit"]  # fit_a appends
    assert nodes("config.materialized:seed") == SEEDS  # as in dbt, seeds are not "table"
    assert nodes("config.materialized:incremental") == []
    assert nodes("config.unique_key:n") == ["clicks_count"]
    with pytest.raises(ConfigError, match=r"unknown materialization 'ephemeral'; valid: view, table"):
        nodes("config.materialized:ephemeral")


def test_resource_type_method_and_option(nodes: Pick, tests: Pick) -> None:
    assert nodes("resource_type:source") == ["clicks", "events"]
    assert nodes("resource_type:model") == ["clicks_count", "daily", "fit", "report", "stg_events", "stg_models"]
    assert nodes("resource_type:python") == ["fit"]
    assert nodes("tag:staging+", types=("model",)) == ["daily", "fit", "report", "stg_events", "stg_models"]
    assert nodes("+daily", types=("seed", "source")) == ["events", "families", "models"]
    assert tests("+daily", types=("seed",)) == []  # tests are a resource type too
    assert nodes("tag:reference", types=("test",)) == []
    assert tests("tag:reference", types=("test",)) == \
        ["not_null_models_model_id", REL, "unique_families_family_id"]
    assert tests("resource_type:test") == tests()
    with pytest.raises(ConfigError, match=r"unknown resource type 'modle'.*did you mean model"):
        nodes("resource_type:modle")
    with pytest.raises(ConfigError, match=r"--resource-type 'snapshot' is not one of model, seed"):
        nodes("daily", types=("snapshot",))


def test_source_method(nodes: Pick) -> None:
    assert nodes("source:events") == nodes("source:raw.events") == ["events"]
    assert nodes("source:*") == ["clicks", "events"]
    assert nodes("source:events+") == ["daily", "events", "fit", "report", "stg_events"]
    with pytest.raises(ConfigError, match=r"no source named 'evnts'; did you mean events"):
        nodes("source:evnts")


def test_names_wildcards_python_outputs_and_tests(nodes: Pick, tests: Pick) -> None:
    assert nodes("stg_*") == ["stg_events", "stg_models"]
    assert nodes("?aily") == ["daily"]
    assert nodes("fit_b") == nodes("FIT") == ["fit"]  # an output selects its Python model
    assert nodes("*") == nodes()
    assert tests("unique_*", types=("test",)) == ["unique_daily_model_id", "unique_families_family_id"]
    assert tests("test_name:unique") == ["unique_daily_model_id", "unique_families_family_id"]
    assert tests("test_type:singular") == ["assert_report_small"]
    assert nodes("file:daily.sql") == nodes("file:daily") == ["daily"]
    with pytest.raises(ConfigError, match=r"no node or table named 'dialy'; did you mean daily"):
        nodes("dialy+")
    with pytest.raises(ConfigError, match=r"selector 'xyz\*': no node, table or test matches 'xyz\*'"):
        nodes("xyz*")


# -- graph operators ----------------------------------------------------------------------


def test_parents_children_and_depth(nodes: Pick) -> None:
    assert nodes("+daily") == ["daily", "events", "families", "models", "stg_events", "stg_models"]
    assert nodes("1+daily") == ["daily", "stg_events", "stg_models"]
    assert nodes("2+fit") == ["daily", "fit", "stg_events", "stg_models"]
    assert nodes("daily+") == ["daily", "fit", "report"]
    assert nodes("stg_events+1") == ["daily", "stg_events"]
    assert nodes("stg_events+2") == ["daily", "fit", "report", "stg_events"]
    assert nodes("1+stg_events+1") == ["daily", "events", "stg_events"]
    assert nodes("0+daily+0") == ["daily"]


def test_at_operator_adds_descendants_and_their_ancestors(nodes: Pick) -> None:
    assert nodes("@stg_events") == ["daily", "events", "families", "fit", "models", "report",
                                    "stg_events", "stg_models"]
    assert nodes("@clicks") == ["clicks", "clicks_count"]


def test_graph_operators_on_a_test_and_on_methods(nodes: Pick, tests: Pick) -> None:
    assert nodes("1+assert_report_small") == ["report"]  # a test's parents are one generation up
    assert nodes("2+assert_report_small") == ["daily", "fit", "report"]
    assert nodes("tag:nightly+") == ["daily", "fit", "report"]
    assert tests("tag:nightly+") == ["assert_report_small", "unique_daily_model_id"]


# -- tests: eager indirect selection ------------------------------------------------------


def test_tests_of_selected_nodes_come_along_and_leave_with_an_excluded_parent(tests: Pick) -> None:
    assert tests("families") == [REL, "unique_families_family_id"]  # the relationship reads families
    assert tests("models") == ["not_null_models_model_id", REL]
    assert tests("models", exclude=("families",)) == ["not_null_models_model_id"]  # as dbt's eager exclude
    assert tests(exclude=("not_null_models_model_id",)) == [t for t in tests() if t != "not_null_models_model_id"]
    assert tests("stg_models") == []


# -- state: -------------------------------------------------------------------------------


def _record_build(project: Project, key: str) -> None:
    """What a successful build records: every node's fingerprint in build order."""
    state = BuildState(project, use_stored=False, key=key)
    for name in project.graph().topological_order():
        node = project.nodes[name]
        if node.kind == "python":
            state.record_python(node, {}, {r: 1 for r in node.relations}, {})
        else:
            state.record_node(node, state.node_fingerprint(node))
    state.save()


def test_state_modified_new_and_per_target(project_factory: Callable[..., Path]) -> None:
    root = project_factory(FILES, name="stateful")
    project = load_project(root)
    graph = project.graph()

    def state(selector: str, key: str = "dev") -> list[str]:
        return sorted(select_nodes(project, graph, [selector], None, state_key=key))

    assert state("state:new") == state("state:modified") == sorted(project.nodes)  # never built
    _record_build(project, "dev")
    assert state("state:new") == []
    assert state("state:modified") == ["fit"]  # Python models always run: never "unmodified"
    (root / "sql" / "staging" / "stg_events.sql").write_text("select model_id, n + 0 as n from events\n")
    (root / "seeds" / "families.csv").write_text("family_id\nf1\nf2\n")
    project = load_project(root)
    graph = project.graph()
    assert state("state:modified") == ["families", "fit", "stg_events"]
    assert state("state:modified+") == ["daily", "families", "fit", "report", "stg_events", "stg_models"]
    assert state("state:modified,resource_type:model") == ["fit", "stg_events"]
    assert state("state:unmodified") == sorted(set(project.nodes) - {"families", "fit", "stg_events"})
    assert state("state:old") == sorted(project.nodes)
    assert state("state:new", key="other target") == sorted(project.nodes)  # state is per warehouse
    with pytest.raises(ConfigError, match=r"unknown state 'modified.body'; valid: modified, new"):
        state("state:modified.body")


def test_state_key_defaults_to_the_targets_adapter(project_factory: Callable[..., Path]) -> None:
    root = project_factory(FILES, name="default_key")
    project = load_project(root)
    _record_build(project, str((root / "target" / "w.duckdb").resolve()))  # DuckDB's state_key
    assert select_nodes(project, project.graph(), ["state:modified"], None) == ["fit"]


def test_state_of_a_spark_target_is_its_own_entry(project_factory: Callable[..., Path], tmp_path: Path) -> None:
    from tierpool.adapters import adapter_for

    spark = (f"{{type: spark, method: session, master: 'local[1]', schema: sel, "
             f"warehouse_dir: '{tmp_path / 'wh'}', metastore_dir: '{tmp_path / 'ms'}'}}")
    files = {**FILES, "profiles.yml": "tierpool: {target: dev, outputs: {dev: {type: duckdb, path: "
                                      f"target/w.duckdb}}, spark: {spark}}}}}\n"}
    root = project_factory(files, name="two_targets")
    duck, spark_project = load_project(root), load_project(root, "spark")
    _record_build(duck, str((root / "target" / "w.duckdb").resolve()))
    assert sorted(select_nodes(spark_project, spark_project.graph(), ["state:new"], None)) == \
        sorted(spark_project.nodes)  # built on DuckDB only: new on Spark
    key = adapter_for(spark_project.target, root).state_key  # no Spark session is started
    assert key.startswith("spark:")
    _record_build(spark_project, key)
    assert select_nodes(spark_project, spark_project.graph(), ["state:modified"], None) == ["fit"]


# -- syntax errors ------------------------------------------------------------------------


def test_parse_selector() -> None:
    assert parse_selector("@tag:x") == parse_selector("@tag:x")
    sel = parse_selector("3+config.materialized:table+")
    assert (sel.method, sel.value, sel.parents, sel.at) == ("config.materialized", "table", 3, False)
    assert sel.children is not None and sel.children > 100
    assert parse_selector("name").parents is None and parse_selector("name").children is None


@pytest.mark.parametrize(
    ("selector", "message"),
    [
        ("tag:", r"nothing to select"),
        ("+", r"nothing to select"),
        ("@+daily", r"'@' already adds all ancestors"),
        ("daily,,report", r"empty selector around a comma"),
        ("daily,", r"empty selector around a comma"),
        ("colour:red", r"unknown method 'colour:'; tierpool knows tag:, path:"),
        ("test_type:unit", r"tierpool has no unit tests"),
    ],
)
def test_malformed_selectors_are_errors(nodes: Pick, selector: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        nodes(selector)
