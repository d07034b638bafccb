"""project.py / properties.py: loading a project folder into nodes and tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tierpool.core.nodes import PythonModel, Seed, Source, SqlModel
from tierpool.core.project import Project, load_project, resolve_source_paths
from tierpool.errors import CompileErrors, ConfigError

BASIC = Path(__file__).parents[1] / "fixtures" / "projects" / "basic"
Factory = Callable[..., Path]


@pytest.fixture(scope="module")
def basic() -> Project:
    return load_project(BASIC)


def problems_of(root: Path) -> list[str]:
    with pytest.raises(CompileErrors) as info:
        load_project(root)
    return [str(e) for e in info.value.errors]


def test_nodes_by_kind(basic: Project) -> None:
    kinds = {name: node.kind for name, node in basic.nodes.items()}
    assert kinds == {
        "families": "seed", "models": "seed",
        "tier2_estimates": "source", "tier3_measurements": "source",
        "model_catalog": "sql", "residuals": "sql", "priors": "sql",
        "fit_cells": "python",
    }
    assert basic.root == BASIC.resolve()
    assert basic.target.name == "dev"
    assert basic.target_dir == BASIC.resolve() / "target"
    assert basic.vars == {"fit": {"draws": 200, "chains": 2}}


def test_sql_model_config_and_dependencies(basic: Project) -> None:
    residuals = basic.nodes["residuals"]
    assert isinstance(residuals, SqlModel)
    assert residuals.materialized == "table"
    assert residuals.depends_on == ("models", "tier2_estimates", "tier3_measurements")
    assert residuals.sql.startswith("-- the CTE") and not residuals.sql.endswith(";")
    assert basic.nodes["model_catalog"].materialized == "view"  # default
    assert basic.parsed["residuals"] is not None  # parsed once, kept for compile checks


def test_python_model_outputs(basic: Project) -> None:
    fit = basic.nodes["fit_cells"]
    assert isinstance(fit, PythonModel)
    assert fit.depends_on == ("residuals",)
    assert fit.relations == ("cell_means", "cell_counts")
    counts = fit.outputs[1]
    assert (counts.materialized, counts.unique_key) == ("append", ("model_id",))
    assert [(c.name, c.type) for c in counts.columns] == [("model_id", "VARCHAR"), ("n_obs", "BIGINT")]
    assert basic.relation_owner["cell_counts"] == "fit_cells"
    assert basic.node_for("CELL_MEANS") is fit


def test_seed_column_types(basic: Project) -> None:
    families, models = basic.nodes["families"], basic.nodes["models"]
    assert isinstance(families, Seed)
    assert families.config["column_types"] == {
        "family_id": "VARCHAR", "display_name": "VARCHAR", "vendor": "VARCHAR"}
    assert models.config["column_types"]["total_params_b"] == "DOUBLE"
    assert models.materialized == "table"


def test_sources_resolve_paths_against_project(basic: Project) -> None:
    t2, t3 = basic.nodes["tier2_estimates"], basic.nodes["tier3_measurements"]
    assert isinstance(t2, Source) and isinstance(t3, Source)
    root = BASIC.resolve().as_posix()
    assert t2.expression == f"read_csv('{root}/data/tier2.csv')"
    assert t2.config["raw_expression"] == "read_csv('data/tier2.csv')"
    assert t3.expression == f"'{root}/data/tier3.csv'"  # dbt nested form, identifier


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("read_parquet('d/*.parquet')", "read_parquet('/p/d/*.parquet')"),
        ("read_parquet(['a.parquet', 'b/c.parquet'], union_by_name = true)",
         "read_parquet(['/p/a.parquet', '/p/b/c.parquet'], union_by_name = true)"),
        ("read_csv('/abs/x.csv', delim = ',')", "read_csv('/abs/x.csv', delim = ',')"),
        ("read_parquet('s3://bucket/x.parquet')", "read_parquet('s3://bucket/x.parquet')"),
        ("existing_table", "existing_table"),
    ],
)
def test_resolve_source_paths(expression: str, expected: str) -> None:
    assert resolve_source_paths(expression, Path("/p")) == expected


def test_tests_loaded(basic: Project) -> None:
    assert "relationships_models_family_id__family_id__families" in basic.tests
    singular = basic.tests["assert_residuals_small"]
    assert (singular.severity, singular.attached_to) == ("warn", ("residuals",))
    expression = basic.tests["expression_priors"]
    assert expression.spec is not None and expression.spec.where == "family_id is not null"
    assert basic.tests["expression_residuals_residual"].severity == "warn"
    assert basic.tests["not_null_cell_means_model_id"].attached_to == ("cell_means",)


def test_missing_project_dir(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_project(tmp_path / "nope")


def test_empty_project_loads(tmp_path: Path) -> None:
    project = load_project(tmp_path)
    assert project.nodes == {} and project.tests == {}


def test_undeclared_python_output(project_factory: Factory) -> None:
    root = project_factory({"python_models/extra.py": """
        outputs = ("extra_a",)
        def model(ctx):
            return ctx.ref("residuals")
        """}, base="basic")
    (message,) = problems_of(root)
    assert message.startswith("python_models/extra.py: output 'extra_a' has no declared columns")
    assert "properties yml" in message


def test_python_output_column_without_type(project_factory: Factory) -> None:
    root = project_factory({"python_models/extra.py": """
        def model(ctx):
            return ctx.ref("residuals")
        """, "python_models/extra.yml": """
        models:
          - name: extra
            columns: [{name: a, data_type: INT}, {name: b}]
        """}, base="basic")
    assert problems_of(root) == [
        "python_models/extra.yml: output 'extra' of python_models/extra.py: "
        "columns without data_type: b"]


def test_yml_naming_unknown_node(project_factory: Factory) -> None:
    root = project_factory({"sql/more.yml": """
        models:
          - name: residual
        seeds:
          - name: residuals
        """}, base="basic")
    assert sorted(problems_of(root)) == [
        "'residuals' is described twice: sql/more.yml (seeds) and sql/schema.yml (models); "
        "keep one entry",
        "sql/more.yml: models: 'residual' does not name any node in the project; "
        "did you mean residuals?",
    ]


def test_unknown_test_kind_and_bad_materialization(project_factory: Factory) -> None:
    root = project_factory({"sql/m.sql": "select 1 as x", "sql/n.sql": "select 1 as y",
                            "sql/m.yml": """
        models:
          - name: m
            columns:
              - name: x
                data_tests: [not_nul]
          - name: n
            config: {materialized: ephemeral}
        """})
    problems = problems_of(root)
    assert len(problems) == 2
    assert problems[0].startswith("sql/m.yml:5: 'm.x': unknown data test 'not_nul'; valid kinds: not_null,")
    assert problems[1] == ("sql/m.yml:7: 'n': materialized 'ephemeral' is not one of "
                           "view, table, append, incremental")


def test_duplicate_names_name_both_files(project_factory: Factory) -> None:
    root = project_factory({"sql/families.sql": "select 1 as x",
                            "python_models/p.py": "outputs = ('residuals',)\n"
                                                  "def model(ctx):\n    pass\n"}, base="basic")
    problems = problems_of(root)
    assert "duplicate name 'families': seeds/families.csv and sql/families.sql" in problems[0]
    assert "duplicate name 'residuals': sql/residuals.sql and python_models/p.py" in problems[1]


def test_all_loading_problems_reported_together(project_factory: Factory) -> None:
    root = project_factory({
        "sql/bad.sql": "select a\nfrom\n  where",
        "sql/typo.sql": "select *\nfrom tier2_estimate",
        "python_models/dyn.py": "def model(ctx):\n    return ctx.ref(ctx.vars['x'])\n",
    }, base="basic")
    problems = problems_of(root)
    assert len(problems) == 3
    assert problems[0].startswith("sql/bad.sql:3:")
    assert problems[1].startswith("python_models/dyn.py:2: ctx.ref() needs a string literal")
    assert problems[2] == "sql/typo.sql:2: unknown table 'tier2_estimate'; closest: tier2_estimates"


def test_source_without_expression(project_factory: Factory) -> None:
    root = project_factory({"sql/s.yml": "sources:\n  - name: raw_things\n"})
    assert problems_of(root) == [
        "sql/s.yml: source 'raw_things' needs an 'expression' such as "
        "read_parquet('data/*.parquet')"]


def test_invalid_yml(project_factory: Factory) -> None:
    root = project_factory({"seeds/s.yml": "seeds: [\n"})
    (message,) = problems_of(root)
    assert message.startswith("seeds/s.yml: invalid yml")
