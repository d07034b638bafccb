"""config.py: profiles.yml targets, env-var expansion, tierpool_project.yml."""

from __future__ import annotations

from pathlib import Path

import pytest

from tierpool.core.config import load_project_config, load_target
from tierpool.errors import ConfigError

PROFILES = """
tierpool:
  target: dev
  outputs:
    dev:
      type: duckdb
      path: target/dev.duckdb
      threads: 2
    prod:
      type: duckdb
      path: ${TP_TEST_DB_DIR}/prod.duckdb
    ci:
      type: duckdb
      path: ${TP_TEST_CI_PATH:-ci/warehouse.duckdb}
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("TIERPOOL_TARGET", raising=False)
    monkeypatch.delenv("TP_TEST_DB_DIR", raising=False)
    monkeypatch.delenv("TP_TEST_CI_PATH", raising=False)
    (tmp_path / "profiles.yml").write_text(PROFILES)
    return tmp_path


def test_default_target_from_profile(project: Path) -> None:
    target = load_target(project)
    assert (target.name, target.type, target.threads) == ("dev", "duckdb", 2)
    assert target.path == project.resolve() / "target" / "dev.duckdb"


def test_target_argument_wins_over_env(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIERPOOL_TARGET", "prod")
    monkeypatch.setenv("TP_TEST_DB_DIR", "/data")
    assert load_target(project, "ci").name == "ci"
    assert load_target(project).path == Path("/data/prod.duckdb")


def test_env_default_used_when_unset(project: Path) -> None:
    assert load_target(project, "ci").path == project.resolve() / "ci" / "warehouse.duckdb"


def test_env_value_used_when_set(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TP_TEST_CI_PATH", "/tmp/x.duckdb")
    assert load_target(project, "ci").path == Path("/tmp/x.duckdb")


def test_unset_variable_names_variable_and_file(project: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_target(project, "prod")
    message = str(info.value)
    assert "TP_TEST_DB_DIR" in message
    assert "profiles.yml" in message


def test_unset_variable_in_other_target_is_ignored(project: Path) -> None:
    assert load_target(project, "dev").name == "dev"


def test_unknown_target_lists_valid_ones(project: Path) -> None:
    with pytest.raises(ConfigError, match=r"target 'staging' is not defined; valid targets: ci, dev, prod"):
        load_target(project, "staging")


def test_missing_profiles_gives_dev_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TIERPOOL_TARGET", raising=False)
    target = load_target(tmp_path)
    assert (target.name, target.threads) == ("dev", 1)
    assert target.path == tmp_path.resolve() / "target" / "warehouse.duckdb"


def test_missing_profiles_with_other_target_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_target(tmp_path, "prod")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("other: {}\n", "top-level 'tierpool:'"),
        ("tierpool: {target: dev}\n", "outputs"),
        ("tierpool:\n  outputs:\n    dev: {type: postgres}\n", "supported: duckdb"),
        ("tierpool:\n  outputs:\n    dev: {threads: many}\n", "threads must be an integer"),
        ("tierpool: [\n", "invalid yml"),
    ],
)
def test_malformed_profiles(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "profiles.yml").write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_target(tmp_path, "dev")


def test_project_config_vars(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TP_TEST_DRAWS", "500")
    (tmp_path / "tierpool_project.yml").write_text(
        "name: demo\nvars:\n  fit: {draws: '${TP_TEST_DRAWS}', chains: 4}\n"
    )
    config = load_project_config(tmp_path)
    assert config["name"] == "demo"
    assert config["vars"]["fit"] == {"draws": "500", "chains": 4}


def test_project_config_absent_is_empty(tmp_path: Path) -> None:
    assert load_project_config(tmp_path) == {}


def test_project_config_vars_must_be_mapping(tmp_path: Path) -> None:
    (tmp_path / "tierpool_project.yml").write_text("vars: [1, 2]\n")
    with pytest.raises(ConfigError, match="'vars' must be a mapping"):
        load_project_config(tmp_path)


def _duckdb_profile(tmp_path: Path, settings: object) -> Path:
    import yaml

    (tmp_path / "profiles.yml").write_text(yaml.safe_dump({"tierpool": {"target": "dev", "outputs": {
        "dev": {"type": "duckdb", "path": "w.duckdb", "settings": settings}}}}))
    return tmp_path


def test_duckdb_settings_reach_the_build_connection(tmp_path: Path) -> None:
    from tierpool.adapters import adapter_for

    root = _duckdb_profile(tmp_path, {"preserve_insertion_order": False, "threads": 1})
    adapter = adapter_for(load_target(root, None), root)
    try:
        got = adapter.fetch("select current_setting('preserve_insertion_order'), "
                            "current_setting('threads')").rows
    finally:
        adapter.close()
    assert got == [(False, 1)]


def test_duckdb_setting_refused_names_it_and_the_output(tmp_path: Path) -> None:
    from tierpool.adapters import adapter_for

    root = _duckdb_profile(tmp_path, {"preserve_insertion_orders": False})
    adapter = adapter_for(load_target(root, None), root)
    with pytest.raises(ConfigError, match=r"output 'dev': DuckDB setting preserve_insertion_orders"):
        adapter.open()


def test_duckdb_settings_must_be_scalars(tmp_path: Path) -> None:
    root = _duckdb_profile(tmp_path, {"threads": [1, 2]})
    with pytest.raises(ConfigError, match=r"profiles.yml: output 'dev' \(duckdb\): settings.threads"):
        load_target(root, None)
