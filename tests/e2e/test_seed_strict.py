"""Seeds keep their dialect, through the CLI (issue 10, item 2).

A tiny project (run_basic plus a tier2_estimates seed), `tierpool seed` only, no fit. A
seed broken by an unterminated quote, a misspelled header or a non-UTF-8 byte fails the
command with file and line and leaves the table built before exactly as it was; rows
appended with CRLF ends (Python's csv module) to an LF file load.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from cli_helpers import copy_fixture, invoke, query

SEED = "seeds/tier2_estimates.csv"
YML = """\
seeds:
  - name: tier2_estimates
    columns:
      - {name: request_id, data_type: BIGINT}
      - {name: indicator, data_type: VARCHAR}
      - {name: model_id, data_type: VARCHAR}
      - {name: estimate, data_type: DOUBLE}
"""
ROWS = [(i, "energy_wh" if i % 2 else "gco2e", "mistral-7b", i / 10) for i in range(1, 41)]
ALL = "select * from tier2_estimates order by request_id"


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    """run_basic plus a 40-row tier2_estimates seed (quoted strings, LF), seeded once."""
    path = copy_fixture("run_basic", tmp_path)
    (path / "seeds" / "tier2.yml").write_text(YML)
    lines = ['"request_id","indicator","model_id","estimate"']
    lines += [f'{i},"{ind}","{model}",{est}' for i, ind, model, est in ROWS]
    (path / SEED).write_text("\n".join(lines) + "\n", newline="")
    result = invoke(path, "seed")
    assert result.exit_code == 0, result.output
    assert query(path, ALL) == ROWS
    return path


def _replace_line(project: Path, number: int, text: str) -> None:
    lines = (project / SEED).read_text().splitlines()
    lines[number - 1] = text
    (project / SEED).write_text("\n".join(lines) + "\n", newline="")


def _fails_and_keeps_table(project: Path, *location: str) -> str:
    result = invoke(project, "seed", "--select", "tier2_estimates")
    assert result.exit_code == 1, result.output
    for text in location:
        assert text in result.output, result.output
    assert query(project, ALL) == ROWS
    assert [r[0] for r in query(project, "describe tier2_estimates")] == [
        "request_id", "indicator", "model_id", "estimate"]
    return result.output


def test_unterminated_quote_fails_with_file_and_line_and_keeps_table(project: Path):
    _replace_line(project, 12, '11,"energy_wh,"mistral-7b",1.1')  # energy_wh's closing quote lost
    output = _fails_and_keeps_table(project, f"{SEED}:12: malformed quote", "quoted field")
    assert "seed tier2_estimates" in output and "OK 40 rows" not in output


def test_quote_open_to_end_of_file(project: Path):
    with (project / SEED).open("a", newline="") as f:
        f.write('41,"gco2e,mistral-7b,4.1\n')
    _fails_and_keeps_table(project, f"{SEED}:42: unterminated quote")


def test_misspelled_header_fails_with_did_you_mean(project: Path):
    _replace_line(project, 1, '"request_id","indicatr","model_id","estimate"')
    _fails_and_keeps_table(
        project, f"{SEED}:1: header: declared column 'indicator' is not in the header",
        "did you mean 'indicatr'?")


def test_non_utf8_byte_fails_with_line(project: Path):
    with (project / SEED).open("ab") as f:
        f.write(b'41,"gco2e","caf\xe9",4.1\n')
    _fails_and_keeps_table(project, f"{SEED}:42: byte 0xe9", "not UTF-8")


def test_wrong_field_count_and_bad_value_fail_with_line(project: Path):
    _replace_line(project, 5, '4,"gco2e","mistral-7b"')
    _fails_and_keeps_table(project, f"{SEED}:5: too few columns: 3 field(s)")
    _replace_line(project, 5, '4,"gco2e","mistral-7b",abc')
    _fails_and_keeps_table(project, f"{SEED}:5: column estimate: could not convert 'abc' to DOUBLE")


def test_crlf_rows_appended_by_python_csv_load(project: Path):
    extra = [(41, "gco2e", "llama-3-8b", 4.1), (42, "energy_wh", "a, quoted \"model\"", 4.2)]
    with (project / SEED).open("a", newline="") as f:
        csv.writer(f).writerows(extra)  # lineterminator '\r\n' after LF rows
    result = invoke(project, "seed", "--select", "tier2_estimates")
    assert result.exit_code == 0, result.output
    assert query(project, ALL) == ROWS + extra
    assert query(project, "select count(*) from tier2_estimates") == [(42,)]
