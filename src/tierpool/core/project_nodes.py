"""Assemble nodes from discovered files and properties yml (a helper of project.py).

Kept apart from folder walking so each module stays small: this one decides what
a yml entry means for a node (SQL model, Python output, seed, source), checks that
names are unique, and that every Python output declares its columns.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from tierpool import constants as c
from tierpool.core.nodes import (
    Node,
    OutputSpec,
    PythonModel,
    Seed,
    Source,
    SqlModel,
    TestSpec,
)
from tierpool.core.properties import RelationProps
from tierpool.core.python_models import PythonModelInfo
from tierpool.errors import ProjectError, TierpoolError

Display = Callable[[Path | None], str]
PythonInfos = list[tuple[PythonModelInfo, Path]]


def check_duplicates(
    seeds: list[Seed],
    sql_models: list[SqlModel],
    python_infos: PythonInfos,
    sources: list[Source],
    display: Display,
) -> list[TierpoolError]:
    """Every node name and relation name must be unique across the project.

    Returns:
        One ProjectError per clash, naming both files.
    """
    owners: dict[str, tuple[str, str]] = {}  # name -> (owner id, file shown)
    problems: list[TierpoolError] = []

    def claim(name: str, owner: str, where: str) -> None:
        if name in owners and owners[name][0] != owner:
            problems.append(
                ProjectError(
                    f"duplicate name '{name}': {owners[name][1]} and {where}; "
                    "node and table names must be unique across the project"
                )
            )
        else:
            owners.setdefault(name, (owner, where))

    for node in [*seeds, *sql_models, *sources]:
        claim(node.name, f"{node.kind}:{node.path}:{node.name}", display(node.path))
    for info, path in python_infos:
        for name in (info.name, *info.outputs):
            claim(name, f"python:{path}", display(path))
    return problems


def _unique_key(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else list(value)
    return tuple(str(v).strip().lower() for v in items)


def _materialized(props: RelationProps, default: str, display: Display) -> str:
    value = str(props.config.get("materialized", default))
    if value not in c.MATERIALIZATIONS:
        raise ProjectError(
            f"{props.at or display(props.file)}: '{props.name}': materialized '{value}' is not one of "
            f"{', '.join(c.MATERIALIZATIONS)}"
        )
    return value


def _check_incremental(kind: str, props: RelationProps, materialized: str, display: Display) -> None:
    """``materialized: incremental`` is for SQL models, with a unique_key and an event_time."""
    where = f"{props.at or display(props.file)}: '{props.name}'"
    event_time = props.config.get("event_time")
    if materialized != "incremental":
        if event_time is not None:
            raise ProjectError(f"{where}: event_time is used by materialized: incremental only "
                               "(its new rows are those at or after max(event_time)); remove it")
        return
    if kind != "sql":
        raise ProjectError(f"{where}: materialized: incremental is for SQL models; use table "
                           "(a seed) or append with unique_key (a Python model output)")
    missing = [k for k, v in (("unique_key", _unique_key(props.config.get("unique_key"))),
                              ("event_time", str(event_time or "").strip())) if not v]
    if missing:
        raise ProjectError(
            f"{where}: materialized: incremental needs {' and '.join(missing)} under config: "
            "(unique_key: the columns a new row replaces an old one by; event_time: the "
            "timestamp column of the parent whose new rows are read, e.g. requested_at)"
        )


def _configure(node: Node, props: RelationProps, display: Display, default: str) -> Node:
    materialized = _materialized(props, default, display)
    _check_incremental(node.kind, props, materialized, display)
    return replace(
        node,
        description=props.description,
        materialized=materialized,  # type: ignore[arg-type]
        unique_key=_unique_key(props.config.get("unique_key")),
        columns=props.columns,
        tests=props.tests,
        config={**node.config, **props.config},
        tags=props.tags,
    )


def _output(name: str, props: RelationProps | None, display: Display) -> OutputSpec:
    if props is None:
        return OutputSpec(name=name)
    materialized = _materialized(props, c.DEFAULT_PYTHON_MATERIALIZATION, display)
    _check_incremental("python", props, materialized, display)
    return OutputSpec(
        name=name,
        materialized=materialized,  # type: ignore[arg-type]
        unique_key=_unique_key(props.config.get("unique_key")),
        columns=props.columns,
        description=props.description,
        tests=props.tests,
    )


def _python_model(
    info: PythonModelInfo, path: Path, by_name: dict[str, RelationProps], display: Display,
    problems: list[TierpoolError],
) -> PythonModel:
    outputs = []
    for name in info.outputs:
        try:
            output = _output(name, by_name.get(name), display)
        except TierpoolError as err:
            problems.append(err)
            output = OutputSpec(name=name)
        missing = [col.name for col in output.columns if not col.type]
        if not output.columns:
            problems.append(
                ProjectError(
                    f"{display(path)}: output '{name}' has no declared columns; add it to a "
                    f"properties yml under models: with columns: [{{name: ..., data_type: ...}}]"
                )
            )
        elif missing:
            problems.append(
                ProjectError(
                    f"{display(by_name[name].file)}: output '{name}' of {display(path)}: "
                    f"columns without data_type: {', '.join(missing)}"
                )
            )
        outputs.append(output)
    own = by_name.get(info.name) if info.name not in info.outputs else None
    tagged = [own] if own else []
    tagged += [by_name[name] for name in info.outputs if name in by_name]
    return PythonModel(
        name=info.name,
        path=path,
        depends_on=info.inputs,
        description=own.description if own else "",
        config=dict(own.config) if own else {},
        outputs=tuple(outputs),
        tests=tuple(t for o in outputs for t in o.tests),
        tags=tuple(dict.fromkeys(tag for p in tagged for tag in p.tags)),  # its own and its outputs'
    )


def _unknown_entry(props: RelationProps, kinds: dict[str, str], display: Display) -> ProjectError:
    where = f"{display(props.file)}: {props.section}: '{props.name}'"
    if props.name in kinds:
        section = {"seed": "seeds", "sql": "models", "python": "models"}.get(kinds[props.name])
        return ProjectError(f"{where} is a {kinds[props.name]}; describe it under {section}:")
    close = difflib.get_close_matches(props.name, sorted(kinds), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return ProjectError(f"{where} does not name any node in the project{hint}")


def apply_properties(
    seeds: list[Seed],
    sql_models: list[SqlModel],
    python_infos: PythonInfos,
    sources: list[Source],
    props: list[RelationProps],
    display: Display,
    problems: list[TierpoolError],
) -> tuple[dict[str, Node], dict[str, str], list[TestSpec]]:
    """Combine discovered nodes with their yml entries.

    Args:
        seeds, sql_models, python_infos, sources: What the folders declare.
        props: Every yml entry.
        display: Path formatter for messages.
        problems: Appended to (unknown names, bad config, undeclared outputs).

    Returns:
        Nodes by name, relation -> owning node name, and every generic test spec.
    """
    by_name = {p.name: p for p in props if p.section != "sources"}
    kinds: dict[str, str] = {}
    nodes: dict[str, Node] = {}
    for seed in seeds:
        kinds[seed.name] = "seed"
        nodes.setdefault(seed.name, seed)
    for model in sql_models:
        kinds[model.name] = "sql"
        nodes.setdefault(model.name, model)
    source_tags = {p.name: p.tags for p in props if p.section == "sources"}
    for source in sources:
        kinds[source.name] = "source"
        nodes.setdefault(source.name, replace(source, tags=source_tags.get(source.name, ())))
    python_outputs: set[str] = set()
    for info, path in python_infos:
        kinds.setdefault(info.name, "python")
        python_outputs.update(info.outputs)
        for out in info.outputs:
            kinds.setdefault(out, "python")
        nodes.setdefault(info.name, _python_model(info, path, by_name, display, problems))
    _configure_nodes(nodes, by_name, python_outputs, kinds, display, problems)
    owners = {r: node.name for node in nodes.values() for r in node.relations}
    specs = [t for p in props for t in p.tests if p.name in owners or p.name in nodes]
    return nodes, owners, specs


def _configure_nodes(
    nodes: dict[str, Node],
    by_name: dict[str, RelationProps],
    python_outputs: set[str],
    kinds: dict[str, str],
    display: Display,
    problems: list[TierpoolError],
) -> None:
    expected = {"seeds": ("seed",), "models": ("sql", "python")}
    for name, props in by_name.items():
        node = nodes.get(name)
        if name in python_outputs or (node is not None and node.kind == "python"):
            if props.section != "models":
                problems.append(_unknown_entry(props, kinds, display))
            continue  # handled when the Python model was built
        if node is None or node.kind not in expected[props.section]:
            problems.append(_unknown_entry(props, kinds, display))
            continue
        default = "table" if node.kind == "seed" else c.DEFAULT_SQL_MATERIALIZATION
        try:
            configured = _configure(node, props, display, default)
        except TierpoolError as err:
            problems.append(err)
            continue
        if node.kind == "seed":
            types = {col.name: col.type for col in props.columns if col.type}
            configured = replace(configured, config={**configured.config, "column_types": types})
        nodes[name] = configured
