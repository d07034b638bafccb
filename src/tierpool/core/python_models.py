"""Read a Python model's inputs and outputs from its syntax tree, never importing it.

A Python model is ``python_models/<name>.py`` with a module-level ``def model(ctx)``.
Its inputs are the string literals passed to ``ctx.ref("...")`` anywhere in the
file; its outputs are a module-level ``outputs = ("a", "b")`` of string literals
(default: the file stem). Importing the file would run arbitrary code (and PyMC's
import time) just to build the graph, so we only parse it.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

from tierpool.core.sql import normalize_name
from tierpool.errors import ProjectError


@dataclass(frozen=True)
class PythonModelInfo:
    """What the syntax tree of a Python model file declares.

    Attributes:
        name: The model's name (the file stem, lower case).
        inputs: Relation names read through ``ctx.ref``, in order of first use.
        outputs: Declared output relation names.
        ref_lines: Input name -> line of its first ``ctx.ref`` call.
    """

    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    ref_lines: tuple[tuple[str, int], ...] = ()


def read_python_model(path: Path, display: str | None = None) -> PythonModelInfo:
    """Parse a Python model file and return its declared inputs and outputs.

    Args:
        path: The ``.py`` file.
        display: How to name the file in errors (default: ``path``).

    Returns:
        The model's name, inputs and outputs.

    Raises:
        ProjectError: Syntax error, no module-level ``def model(ctx)``, a
            ``ctx.ref`` argument that is not a string literal, or a malformed
            ``outputs`` assignment; each names the file and line.
    """
    where = display or str(path)
    try:
        from tierpool.core.strict_files import read_text

        tree = ast.parse(read_text(path, where), filename=where)
    except SyntaxError as err:
        raise ProjectError(f"{where}:{err.lineno}: Python syntax error: {err.msg}") from err
    model_fn = _find_model_function(tree)
    if model_fn is None:
        raise ProjectError(
            f"{where}: a Python model needs a module-level 'def model(ctx):' "
            "that returns its output DataFrame(s)"
        )
    stem = normalize_name(path.stem)
    outputs = _read_outputs(tree, where) or (stem,)
    receivers = {"ctx"} | {a.arg for a in model_fn.args.args[:1]}
    refs = _read_refs(tree, where, receivers)
    return PythonModelInfo(stem, tuple(name for name, _ in refs), outputs, refs)


def _find_model_function(tree: ast.Module) -> ast.FunctionDef | None:
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "model":
            return node
    return None


def _read_refs(
    tree: ast.Module, where: str, receivers: set[str]
) -> tuple[tuple[str, int], ...]:
    refs: dict[str, int] = {}
    calls = [n for n in ast.walk(tree) if _is_ref_call(n, receivers)]
    for node in sorted(calls, key=lambda n: (n.lineno, n.col_offset)):
        assert isinstance(node, ast.Call)
        arg = node.args[0] if node.args else None
        if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
            raise ProjectError(
                f"{where}:{node.lineno}: ctx.ref() needs a string literal such as "
                "ctx.ref(\"residual_cells\"), so dependencies can be read without running "
                "the file"
            )
        refs.setdefault(normalize_name(arg.value), node.lineno)
    return tuple(refs.items())


def _is_ref_call(node: ast.AST, receivers: set[str]) -> bool:
    # ``ctx.ref`` or ``<model's first parameter>.ref``: other ``.ref`` calls
    # (weakref.ref, ...) are not dependencies.
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "ref"
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id in receivers
    )


def _read_outputs(tree: ast.Module, where: str) -> tuple[str, ...]:
    for node in tree.body:
        value = _outputs_value(node)
        if value is None:
            continue
        items = value.elts if isinstance(value, (ast.Tuple, ast.List)) else [value]
        names: list[str] = []
        for item in items:
            if not (isinstance(item, ast.Constant) and isinstance(item.value, str)):
                raise ProjectError(
                    f"{where}:{node.lineno}: 'outputs' must be a tuple of string literals, "
                    "e.g. outputs = (\"posterior_models\", \"posterior_regions\")"
                )
            names.append(normalize_name(item.value))
        if len(set(names)) != len(names):
            raise ProjectError(f"{where}:{node.lineno}: 'outputs' names a table twice")
        if not names:
            raise ProjectError(f"{where}:{node.lineno}: 'outputs' is empty")
        return tuple(names)
    return ()


def _outputs_value(node: ast.stmt) -> ast.expr | None:
    if isinstance(node, ast.Assign):
        if any(isinstance(t, ast.Name) and t.id == "outputs" for t in node.targets):
            return node.value
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        if node.target.id == "outputs" and node.value is not None:
            return node.value
    return None
