"""Strict configuration (issue 10, item 3): schemas for every yml, no Jinja, one relation per
source, UTF-8 only, and every compile problem reported together."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tierpool.core.config import load_project_config, load_target
from tierpool.core.config_checks import DUCKDB_KEYS, PROJECT_KEYS, SPARK_KEYS
from tierpool.core.project import load_project
from tierpool.errors import CompileErrors, ConfigError

Factory = Callable[..., Path]

SEEDS = {
    "seeds/models.csv": "model_id,family_id,total_params_b\na,f,1.0\nb,f,2.0\n",
    "sql/sizes.sql": "select model_id, total_params_b from models\n",
}


def problems_of(root: Path) -> list[str]:
    with pytest.raises(CompileErrors) as info:
        load_project(root)
    return [str(e) for e in info.value.errors]


def one_problem(root: Path) -> str:
    problems = problems_of(root)
    assert len(problems) == 1, problems
    return problems[0]


# -- properties yml --------------------------------------------------------------------------


def test_misspelt_materialized_is_an_error_with_line_and_suggestion(project_factory: Factory) -> None:
    root = project_factory({**SEEDS, "sql/m.yml": """
        models:
          - name: sizes
            config:
              materialised: table
        """})
    assert one_problem(root) == ("sql/m.yml:4: unknown key 'materialised' in models > sizes > "
                                 "config; did you mean 'materialized'?")


def test_column_and_data_test_typos_do_not_drop_tests(project_factory: Factory) -> None:
    root = project_factory({**SEEDS, "sql/m.yml": """
        models:
          - name: sizes
            column:
              - name: model_id
                data_tests: [unique]
        seeds:
          - name: models
            columns:
              - name: model_id
                data_test: [not_null]
        """})
    assert problems_of(root) == [
        "sql/m.yml:3: unknown key 'column' in models > sizes; did you mean 'columns'?",
        "sql/m.yml:10: unknown key 'data_test' in seeds > models > columns > model_id; "
        "did you mean 'data_tests' or 'data_type'?",
    ]


def test_unknown_test_argument_names_the_closest(project_factory: Factory) -> None:
    root = project_factory({**SEEDS, "sql/m.yml": """
        models:
          - name: sizes
            columns:
              - name: model_id
                data_tests:
                  - accepted_values: {value: [a, b]}
        """})
    assert one_problem(root) == ("sql/m.yml:6: unknown key 'value' in models > sizes > columns > "
                                 "model_id > data_tests > accepted_values; did you mean 'values'?")


@pytest.mark.parametrize(("yml", "key", "line"), [
    ("models:\n  - name: sizes\n    config: {post-hook: 'grant select on sizes to x'}\n",
     "post-hook", 3),
    ("models:\n  - name: sizes\n    config: {materialized: table, incremental_strategy: merge}\n",
     "incremental_strategy", 3),
    ("models:\n  - name: sizes\n    columns:\n      - name: model_id\n"
     "        constraints: [{type: not_null}]\n", "constraints", 5),
    ("sources:\n  - name: raw\n    freshness: {warn_after: {count: 1, period: day}}\n"
     "    expression: read_csv('x.csv')\n", "freshness", 3),
    ("version: 2\nmacros:\n  - name: cents\n", "macros", 2),
    ("models:\n  - name: sizes\n    data_tests:\n      - unique:\n"
     "          column_name: model_id\n          config: {store_failures: true}\n",
     "store_failures", 6),
])
def test_dbt_keys_tierpool_does_not_implement_are_refused(
    project_factory: Factory, yml: str, key: str, line: int
) -> None:
    root = project_factory({**SEEDS, "sql/m.yml": yml})
    message = one_problem(root)
    assert message.startswith(f"sql/m.yml:{line}: '{key}' ")
    assert "is a dbt key tierpool does not support: " in message


def test_documentation_keys_are_accepted(project_factory: Factory) -> None:
    root = project_factory({**SEEDS, "sql/m.yml": """
        version: 2
        models:
          - name: sizes
            description: Sizes.
            meta: {owner: calibration}
            tags: [daily]
            docs: {show: true}
            config: {materialized: table, tags: [x], meta: {a: 1}}
            columns:
              - name: model_id
                description: Id.
                meta: {pii: false}
                tags: [key]
                data_tests:
                  - unique: {config: {severity: warn, tags: [t]}, meta: {a: 1}}
        """})
    project = load_project(root)
    assert project.nodes["sizes"].materialized == "table"
    assert project.tests["unique_sizes_model_id"].severity == "warn"


def test_duplicate_key_in_a_mapping_is_an_error(project_factory: Factory) -> None:
    root = project_factory({**SEEDS, "sql/m.yml": """
        models:
          - name: sizes
            columns:
              - name: model_id
            columns:
              - name: total_params_b
        """})
    assert one_problem(root) == ("sql/m.yml:5: key 'columns' appears twice in one mapping "
                                 "(also line 3); yml keeps only the last")


def test_text_cut_at_a_comma_gets_a_quoting_hint(project_factory: Factory) -> None:
    root = project_factory({**SEEDS, "sql/m.yml": """
        models:
          - name: sizes
            columns:
              - {name: model_id, description: Of those, covered.}
        """})
    message = one_problem(root)
    assert message.startswith("sql/m.yml:4: unknown key 'covered.' in models > sizes > columns")
    assert "quote a value that holds a comma" in message


# -- Jinja -----------------------------------------------------------------------------------


def test_jinja_in_sql_names_file_line_and_what_to_write(project_factory: Factory) -> None:
    root = project_factory({**SEEDS, "sql/sizes.sql": "-- {{ in a comment is fine }}\n"
                            "select *\nfrom {{ ref('models') }}\n"})
    assert one_problem(root) == (
        "sql/sizes.sql:3: tierpool does not use Jinja; refer to models, seeds and sources by "
        "name (e.g. `select * from residuals`, `to: residuals`) (found `from {{ ref('models') }}`)")


def test_jinja_in_a_singular_test(project_factory: Factory) -> None:
    root = project_factory({**SEEDS, "tests/data/t.sql":
                            "select * from models where total_params_b > {{ var('max') }}\n"})
    assert one_problem(root).startswith("tests/data/t.sql:1: tierpool does not use Jinja; ")


def test_jinja_in_yml_value(project_factory: Factory) -> None:
    root = project_factory({**SEEDS, "sql/m.yml": """
        models:
          - name: sizes
            description: "{{ doc('sizes') }}"
        """})
    assert one_problem(root) == ("sql/m.yml:3: tierpool does not use Jinja; write the description "
                                 "text itself (found `{{ doc('sizes') }}`)")


def test_jinja_env_var_in_profiles_creates_nothing(tmp_path: Path) -> None:
    (tmp_path / "profiles.yml").write_text(
        "tierpool:\n  outputs:\n    dev:\n      path: \"{{ env_var('WH') }}/w.duckdb\"\n")
    with pytest.raises(ConfigError) as info:
        load_target(tmp_path)
    assert str(info.value) == (
        f"{tmp_path / 'profiles.yml'}:4: tierpool does not use Jinja; write ${{VAR}} or "
        "${VAR:-default} (expanded in profiles.yml and tierpool_project.yml) "
        "(found `{{ env_var('WH') }}/w.duckdb`)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["profiles.yml"]


# -- source expressions ------------------------------------------------------------------------


@pytest.mark.parametrize(("expression", "problem"), [
    ("read_csv('data/x.csv'); drop table fit_runs", "holds 2 statements"),
    ("read_csv('data/x.csv');", "holds a ';'"),
    ("read_csv('data/x.csv') join models using (model_id)", "not a single relation (found JOINS)"),
    ("read_csv('data/x.csv') where 1 = 1", "not a single relation (found WHERE)"),
])
def test_source_must_be_one_relation_expression(
    project_factory: Factory, expression: str, problem: str
) -> None:
    root = project_factory({**SEEDS, "sql/s.yml": f'sources:\n  - name: raw\n    expression: "{expression}"\n'})
    message = one_problem(root)
    assert message.startswith("sql/s.yml:3: source 'raw': ")
    assert problem in message and "read_parquet('data/*.parquet')" in message


def test_sound_source_expressions_load(project_factory: Factory) -> None:
    root = project_factory({**SEEDS, "data/x.csv": "a\n1\n", "sql/s.yml": """
        sources:
          - {name: one, expression: "read_csv('data/x.csv', header = true) as t"}
          - {name: two, expression: "'data/x.csv'"}
          - {name: three, expression: "(select 1 as a)"}
        """})
    assert {"one", "two", "three"} <= set(load_project(root).nodes)


# -- UTF-8 -------------------------------------------------------------------------------------


def test_non_utf8_sql_and_yml_name_the_file(project_factory: Factory) -> None:
    root = project_factory(SEEDS)
    (root / "sql" / "latin.sql").write_bytes(b"select 'caf\xe9' as x\n")
    (root / "sql" / "m.yml").write_bytes(b"models:\n  - name: sizes\n    description: caf\xe9\n")
    assert problems_of(root) == [
        "sql/latin.sql: file is not UTF-8 (byte 0xe9 at line 1, column 12); save it as UTF-8",
        "sql/m.yml: file is not UTF-8 (byte 0xe9 at line 3, column 21); save it as UTF-8",
    ]


# -- every stage together ------------------------------------------------------------------------


def test_syntax_error_does_not_hide_unknown_column_or_table(project_factory: Factory) -> None:
    root = project_factory({**SEEDS,
                            "sql/broken.sql": "select (\nfrom models\n",
                            "sql/typo.sql": "select nope from sizes\n",
                            "sql/lost.sql": "select * from size\n",
                            "sql/m.yml": "models:\n  - name: sizes\n    config: {materialised: view}\n"})
    problems = problems_of(root)
    assert problems[0].startswith("sql/broken.sql:2:")
    assert problems[1].startswith("sql/m.yml:3: unknown key 'materialised'")
    assert problems[2] == "sql/lost.sql:1: unknown table 'size'; closest: sizes"
    assert problems[3].startswith("sql/typo.sql:1: unknown column 'nope' in table 'sizes'")
    assert len(problems) == 4


def test_dbt_project_files_are_not_ignored(project_factory: Factory) -> None:
    root = project_factory({**SEEDS, "packages.yml": "packages: []\n",
                            "macros/cents.sql": "{% macro cents() %}1{% endmacro %}\n"})
    assert problems_of(root) == [
        "packages.yml: a dbt file tierpool does not support: packages are not supported; "
        "copy what you need into sql/",
        "macros: a dbt folder tierpool does not support: tierpool has no macros (and no "
        "Jinja); write the SQL into each model",
    ]


# -- profiles.yml and tierpool_project.yml ------------------------------------------------------------


def test_unknown_key_in_any_output_of_profiles(tmp_path: Path) -> None:
    (tmp_path / "profiles.yml").write_text(
        "tierpool:\n  target: dev\n  outputs:\n    dev: {type: duckdb, path: w.duckdb}\n"
        "    big:\n      type: duckdb\n      memory_limt: 4GB\n      extensions: [httpfs]\n")
    with pytest.raises(ConfigError) as info:
        load_target(tmp_path)
    path = tmp_path / "profiles.yml"
    assert str(info.value).splitlines() == [
        f"2 problems in {path}:",
        f"  - {path}:7: unknown key 'memory_limt' in tierpool > outputs > big; "
        "did you mean 'memory_limit'?",
        f"  - {path}:8: 'extensions' (in tierpool > outputs > big) is a dbt key tierpool does "
        "not support: DuckDB is configured by path, memory_limit, temp_directory, threads and "
        "settings (DuckDB settings) only",
    ]


def test_unknown_key_in_profile_body(tmp_path: Path) -> None:
    (tmp_path / "profiles.yml").write_text("tierpool:\n  targt: ci\n  outputs:\n    dev: {}\n")
    with pytest.raises(ConfigError, match=r"profiles.yml:2: unknown key 'targt' in tierpool; "
                                          r"did you mean 'target'\?"):
        load_target(tmp_path)


def test_plain_duckdb_output_still_loads_without_pydantic(tmp_path: Path) -> None:
    (tmp_path / "profiles.yml").write_text(
        "tierpool:\n  outputs:\n    dev: {type: duckdb, path: w.duckdb, threads: 2}\n")
    target = load_target(tmp_path)
    assert (target.path, target.threads) == (tmp_path.resolve() / "w.duckdb", 2)


def test_key_sets_match_the_schemas() -> None:
    from tierpool.core.profile_schema import DuckDBOutput, SparkOutput
    from tierpool.core.project_schema import TierpoolProject
    from tierpool.core.strict_files import allowed_keys

    assert set(allowed_keys(DuckDBOutput)) == DUCKDB_KEYS
    assert set(allowed_keys(SparkOutput)) == SPARK_KEYS
    assert set(allowed_keys(TierpoolProject)) == PROJECT_KEYS


def test_project_file_unknown_and_dbt_keys(tmp_path: Path) -> None:
    (tmp_path / "tierpool_project.yml").write_text(
        "name: demo\nvar:\n  fit: {draws: 10}\nmodels:\n  demo: {+materialized: table}\n")
    with pytest.raises(ConfigError) as info:
        load_project_config(tmp_path)
    lines = str(info.value).splitlines()
    assert lines[1].endswith("tierpool_project.yml:2: unknown key 'var' in the top level; "
                             "did you mean 'vars'?")
    assert lines[2].endswith("tierpool_project.yml:4: 'models' (in the top level) is a dbt key "
                             "tierpool does not support: configure each relation under config: "
                             "in the properties yml next to it")


def test_project_file_dbt_header_keys_are_accepted(tmp_path: Path) -> None:
    (tmp_path / "tierpool_project.yml").write_text(
        "name: demo\nversion: '1.0'\nconfig-version: 2\nprofile: tierpool\nvars: {a: 1}\n")
    assert load_project_config(tmp_path)["vars"] == {"a": 1}
