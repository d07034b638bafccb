"""python_models.py: inputs and outputs from the syntax tree, without importing."""

from __future__ import annotations

from pathlib import Path

import pytest

from tierpool.core.python_models import read_python_model
from tierpool.errors import ProjectError


def write(tmp_path: Path, text: str, name: str = "fit.py") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_inputs_outputs_and_lines(tmp_path: Path) -> None:
    path = write(tmp_path, '''
import this_module_does_not_exist  # never imported: reading must not run it

outputs = ("Posterior_Models", "posterior_regions")


def helper(ctx):
    return ctx.ref("regions")


def model(ctx):
    cells = ctx.ref("Residual_Cells")
    again = ctx.ref("residual_cells")
    return {"posterior_models": cells, "posterior_regions": helper(ctx)}
''')
    info = read_python_model(path)
    assert info.name == "fit"
    assert info.inputs == ("regions", "residual_cells")
    assert info.outputs == ("posterior_models", "posterior_regions")
    assert dict(info.ref_lines) == {"regions": 8, "residual_cells": 12}


def test_default_output_is_file_stem(tmp_path: Path) -> None:
    info = read_python_model(write(tmp_path, "def model(context):\n    return context.ref('a')\n",
                                   "Cells.py"))
    assert (info.name, info.outputs, info.inputs) == ("cells", ("cells",), ("a",))


def test_other_ref_calls_are_not_inputs(tmp_path: Path) -> None:
    info = read_python_model(write(tmp_path, "import weakref\n\ndef model(ctx):\n"
                                             "    weakref.ref(ctx)\n    return ctx.ref('a')\n"))
    assert info.inputs == ("a",)


def test_non_literal_ref_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "NAME = 'x'\n\n\ndef model(ctx):\n    return ctx.ref(NAME)\n")
    with pytest.raises(ProjectError, match=r"^python_models/fit.py:5: ctx.ref\(\) needs a string"):
        read_python_model(path, "python_models/fit.py")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("def model(ctx)\n    pass\n", r"fit.py:1: Python syntax error"),
        ("def build(ctx):\n    pass\n", r"needs a module-level 'def model\(ctx\):'"),
        ("outputs = ('a', name)\ndef model(ctx):\n    pass\n", r"fit.py:1: 'outputs' must be a tuple"),
        ("outputs = ('a', 'A')\ndef model(ctx):\n    pass\n", r"names a table twice"),
    ],
)
def test_malformed_python_models(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ProjectError, match=message):
        read_python_model(write(tmp_path, text), "fit.py")
