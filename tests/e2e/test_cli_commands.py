"""The other commands (query, show, ls, compile), exit codes and help texts."""

from __future__ import annotations

import json

import pytest
from cli_helpers import copy_fixture, invoke
from click.testing import CliRunner

from tierpool.cli import cli


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    project = copy_fixture("run_basic", tmp_path_factory.mktemp("built"))
    result = invoke(project, "build")
    assert result.exit_code == 0, result.output
    return project


def test_query_formats(built):
    sql = "select model_id, total_params_b from models where total_params_b < 8 order by 1"
    csv_out = invoke(built, "query", sql, "--format", "csv")
    assert csv_out.exit_code == 0 and csv_out.output == "model_id,total_params_b\nmistral-7b,7.3\n"
    json_out = invoke(built, "query", sql, "--format", "json")
    assert json.loads(json_out.output) == [{"model_id": "mistral-7b", "total_params_b": 7.3}]
    table = invoke(built, "query", sql)
    assert table.output.splitlines() == ["model_id    total_params_b", "----------  --------------",
                                         "mistral-7b  7.3"]


def test_query_error_is_exit_2_without_traceback(built):
    result = invoke(built, "query", "select nope from models")
    assert result.exit_code == 2
    assert "Error:" in result.output and "nope" in result.output and "Traceback" not in result.output


def test_show_limits_rows_and_suggests_names(built):
    result = invoke(built, "show", "model_sizes", "--limit", "2")
    assert result.exit_code == 0
    assert result.output.splitlines()[0].split() == ["model_id", "family_id", "total_params_b", "display_name"]
    assert len(result.output.strip().splitlines()) == 4
    missing = invoke(built, "show", "model_size")
    assert missing.exit_code == 2 and "did you mean model_sizes" in missing.output


def test_ls_lists_nodes_in_build_order_with_parents(built):
    result = invoke(built, "ls", "--select", "+big_count")
    assert result.exit_code == 0
    rows = [line.split() for line in result.output.splitlines()]
    assert [r[1] for r in rows] == ["families", "models", "model_sizes", "split", "big_count"]
    assert rows[2] == ["sql", "model_sizes", "<-", "families,", "models"]


def test_compile_reports_counts(built):
    result = invoke(built, "compile")
    assert result.exit_code == 0
    assert result.output.strip() == "ok: 9 nodes, 10 tests"


def test_compile_error_exits_2_with_message(tmp_path):
    project = copy_fixture("run_basic", tmp_path)
    (project / "sql" / "family_sizes.sql").write_text("select * from model_size\n")
    for command in ("build", "compile"):
        result = invoke(project, command)
        assert result.exit_code == 2
        assert "model_size" in result.output and "Traceback" not in result.output
    assert not (project / "target" / "warehouse.duckdb").exists()  # nothing ran


def test_unknown_selector_exits_2(built):
    result = invoke(built, "build", "--select", "model_sizez")
    assert result.exit_code == 2 and "model_sizes" in result.output


def test_unexpected_error_is_one_line_with_debug_hint(built, monkeypatch):
    from tierpool.core import runner

    def boom(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(runner, "execute", boom)
    result = invoke(built, "build")
    assert result.exit_code == 2
    assert "Unexpected error: RuntimeError: disk on fire (rerun with --debug" in result.output
    assert "Traceback" not in result.output
    assert "Traceback" in invoke(built, "build", "--debug").output


@pytest.mark.parametrize("command", sorted(cli.commands))
def test_every_command_has_help_with_example(command):
    result = CliRunner().invoke(cli, [command, "--help"])
    assert result.exit_code == 0
    assert "Example:" in result.output
    assert cli.commands[command].help.strip()


def test_compile_checks_rerun_after_an_edit(tmp_path):
    project = copy_fixture("run_basic", tmp_path)
    assert invoke(project, "build").exit_code == 0
    assert (project / "target" / "compile_ok.json").exists()
    (project / "sql" / "family_sizes.sql").write_text("select * from model_size\n")
    result = invoke(project, "build")
    assert result.exit_code == 2 and "model_size" in result.output
