"""Seeds: all rows or nothing, with file:line:column messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from tierpool import engine
from tierpool.errors import ModelError
from tierpool.nodes import Column, Seed
from tierpool.seeds import load_seed


@pytest.fixture()
def project(tmp_path):
    (tmp_path / "seeds").mkdir()
    return tmp_path


def _write(root: Path, name: str, text: str) -> Seed:
    (root / "seeds" / f"{name}.csv").write_text(text)
    return Seed(name=name, path=Path("seeds") / f"{name}.csv",
                columns=(Column("total_params_b", "DOUBLE"),))


def test_seed_loads_with_declared_types(project):
    seed = _write(project, "models", "model_id,total_params_b\na,1\nb,2.5\n")
    con = engine.connect(project / "w.duckdb")
    assert load_seed(con, seed, project) == 2
    assert con.execute("select typeof(total_params_b) from models limit 1").fetchall()[0][0] == "DOUBLE"


def test_malformed_row_fails_with_location_and_keeps_previous_table(project):
    con = engine.connect(project / "w.duckdb")
    seed = _write(project, "models", "model_id,total_params_b\na,1\nb,2\n")
    load_seed(con, seed, project)
    lines = ["model_id,total_params_b"] + [f"m{i},{i}" for i in range(12)] + ["bad,abc", "z,3"]
    _write(project, "models", "\n".join(lines) + "\n")
    with pytest.raises(ModelError) as info:
        load_seed(con, seed, project)
    assert str(info.value) == "seeds/models.csv:14: column total_params_b: could not convert 'abc' to DOUBLE"
    assert con.execute("select model_id from models order by 1").fetchall() == [("a",), ("b",)]


def test_row_with_too_many_fields_is_never_dropped(project):
    con = engine.connect(project / "w.duckdb")
    seed = _write(project, "models", "model_id,total_params_b\na,1\nb,2,3\n")
    with pytest.raises(ModelError, match=r"seeds/models.csv:3: .*too many columns"):
        load_seed(con, seed, project)
    assert engine.relation_kind(con, "models") is None
