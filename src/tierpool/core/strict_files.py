"""Strict reading of project files: UTF-8 only, no Jinja, yml with the line of every key.

Every .sql, .yml and .py file tierpool reads goes through :func:`read_text`, so a stray
non-UTF-8 byte names the file, line and byte instead of raising a bare UnicodeDecodeError.
:func:`load_yml` parses a yml file once into its data and its node tree, which gives the
line of any key path (``Yml.line``), the duplicate keys PyYAML would silently collapse,
and the string values that hold Jinja (tierpool does not render Jinja, so a
``{{ env_var('X') }}`` would otherwise become a literal folder name).
Schema errors (pydantic) become messages with file, line and did-you-mean via
:func:`schema_messages`; pydantic is imported only when a file has a problem.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from tierpool.errors import ProjectError, SqlError, TierpoolError

if TYPE_CHECKING:
    from pydantic import BaseModel, ValidationError

JINJA = re.compile(r"\{\{|\{%|\{#")
Loc = tuple[str | int, ...]


def read_text(path: Path, where: str, error: type[TierpoolError] = ProjectError) -> str:
    """A file's text, decoded as strict UTF-8 (a leading BOM is dropped).

    Raises:
        error: The file holds a byte sequence that is not UTF-8 (names byte, line, column).
    """
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        start = err.start + (3 if data.startswith(b"\xef\xbb\xbf") else 0)
        line = data.count(b"\n", 0, start) + 1
        column = start - (data.rfind(b"\n", 0, start) + 1) + 1
        raise error(
            f"{where}: file is not UTF-8 (byte 0x{data[start]:02x} at line {line}, "
            f"column {column}); save it as UTF-8"
        ) from None


def did_you_mean(word: str, choices: Any) -> str:
    """``"; did you mean 'x'?"`` for the closest choices, or ``""``."""
    close = difflib.get_close_matches(str(word), sorted(str(c) for c in choices), n=2, cutoff=0.6)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def jinja_advice(snippet: str, in_yml: bool = False) -> str:
    """What to write instead of a Jinja expression."""
    if "env_var" in snippet:
        return "write ${VAR} or ${VAR:-default} (expanded in profiles.yml and tierpool_project.yml)"
    if re.search(r"\b(ref|source)\s*\(", snippet):
        return ("refer to models, seeds and sources by name "
                "(e.g. `select * from residuals`, `to: residuals`)")
    if "config" in snippet:
        return "set materialized and unique_key under config: in a properties yml"
    if "doc(" in snippet:
        return "write the description text itself"
    return "write the value itself" if in_yml else "write plain DuckDB SQL"


def _jinja_message(where: str, line: int, snippet: str, in_yml: bool) -> str:
    shown = snippet.strip()
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return (f"{where}:{line}: tierpool does not use Jinja; {jinja_advice(snippet, in_yml)} "
            f"(found `{shown}`)")


def _blank_comments(sql: str) -> str:
    """The SQL with ``--`` and ``/* */`` comments blanked (newlines and strings kept)."""
    out, i, n, quote = list(sql), 0, len(sql), ""
    while i < n:
        ch = sql[i]
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif sql.startswith("--", i):
            end = sql.find("\n", i)
            end = n if end < 0 else end
            out[i:end] = " " * (end - i)
            i = end
            continue
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            end = n if end < 0 else end + 2
            out[i:end] = [c if c == "\n" else " " for c in sql[i:end]]
            i = end
            continue
        i += 1
    return "".join(out)


def check_sql_jinja(sql: str, where: str) -> None:
    """Raise SqlError at the first Jinja tag outside comments (in strings too: dbt renders those)."""
    match = JINJA.search(_blank_comments(sql))
    if match is None:
        return
    line = sql.count("\n", 0, match.start()) + 1
    snippet = sql.splitlines()[line - 1]
    raise SqlError(_jinja_message(where, line, snippet, in_yml=False))


@dataclass
class Yml:
    """A parsed yml file: its data and, for messages, its node tree."""

    data: Any
    node: yaml.Node | None
    where: str
    problems: list[str] = field(default_factory=list)  # duplicate keys, Jinja values

    def line(self, loc: Loc) -> int:
        """1-based line of the deepest key or item of ``loc`` found in the file."""
        node = self.node
        if node is None:
            return 1
        line = node.start_mark.line + 1
        for part in loc:
            child = _child(node, part)
            if child is None:
                break
            key_node, node = child
            line = key_node.start_mark.line + 1
        return line

    def at(self, loc: Loc) -> str:
        """``file:line`` of ``loc``."""
        return f"{self.where}:{self.line(loc)}"


def _child(node: yaml.Node, part: str | int) -> tuple[yaml.Node, yaml.Node] | None:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                return key, value
    elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
        item = node.value[part]
        return item, item
    return None


def load_yml(path: Path, where: str, error: type[TierpoolError] = ProjectError) -> Yml:
    """Parse a yml file once into data and node tree; raise ``error`` when it is not valid yml."""
    text = read_text(path, where, error)
    loader_cls = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    loader = loader_cls(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as err:
        raise error(f"{where}: invalid yml: {err}") from None
    finally:
        loader.dispose()
    yml = Yml(data, node, where)
    yml.problems += list(_node_problems(node, where))
    return yml


def _node_problems(node: yaml.Node | None, where: str) -> Iterator[str]:
    seen: set[int] = set()
    stack = [node] if node is not None else []
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, yaml.ScalarNode):
            if current.tag.endswith(":str") and JINJA.search(current.value):
                yield _jinja_message(where, current.start_mark.line + 1, current.value, True)
        elif isinstance(current, yaml.MappingNode):
            keys: dict[str, int] = {}
            for key, value in current.value:
                name = key.value if isinstance(key, yaml.ScalarNode) else None
                if name is not None and name != "<<" and name in keys:
                    yield (f"{where}:{key.start_mark.line + 1}: key '{name}' appears twice in "
                           f"one mapping (also line {keys[name]}); yml keeps only the last")
                if name is not None:
                    keys.setdefault(name, key.start_mark.line + 1)
                stack += [key, value]
        elif isinstance(current, yaml.SequenceNode):
            stack += current.value


def _model_at(root: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    """The pydantic model that validates the mapping at ``loc`` (None if not a model)."""
    import typing

    from pydantic import BaseModel

    model: type[BaseModel] | None = root
    for part in loc:
        if model is None:
            return None
        if isinstance(part, int):
            continue
        info = _field(model, str(part))
        if info is None:
            return None
        model = _unwrap(info.annotation, typing, BaseModel)
    return model


def _field(model: type[BaseModel], key: str) -> Any:
    for name, info in model.model_fields.items():
        if key in (name, info.alias):
            return info
    return None


def _unwrap(annotation: Any, typing: Any, base: type) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, base):
        return annotation
    for arg in typing.get_args(annotation):
        found = _unwrap(arg, typing, base)
        if found is not None:
            return found
    return None


def allowed_keys(model: type[BaseModel]) -> list[str]:
    return sorted(info.alias or name for name, info in model.model_fields.items())


def schema_messages(
    err: ValidationError,
    yml: Yml,
    root: type[BaseModel],
    prefix: Loc = (),
    unsupported: Callable[[str], str | None] = lambda key: None,
) -> list[str]:
    """One message per pydantic error: ``file:line: <where>: <problem>`` with did-you-mean.

    Args:
        err: The validation error of ``root`` on the data at ``prefix`` of ``yml``.
        unsupported: key -> why tierpool refuses it (dbt keys), or None for a plain unknown key.
    """
    messages: list[str] = []
    for item in err.errors():
        loc: Loc = tuple(p for p in item["loc"] if isinstance(p, int) or not _is_tag(str(p)))
        full = prefix + loc
        at, path = yml.at(full), describe(yml.data, full)
        if item["type"] == "extra_forbidden":
            key = str(loc[-1])
            why = unsupported(key)
            if why is not None:
                messages.append(f"{at}: '{key}' (in {describe(yml.data, full[:-1])}) is a dbt "
                                f"key tierpool does not support: {why}")
                continue
            model = _model_at(root, loc[:-1])
            keys = allowed_keys(model) if model is not None else []
            hint = did_you_mean(key, keys) or _comma_hint(key, item.get("input"))
            listed = f" (allowed: {', '.join(keys)})" if keys and not hint else ""
            messages.append(f"{at}: unknown key '{key}' in {describe(yml.data, full[:-1])}"
                            f"{hint}{listed}")
        elif item["type"] == "missing":
            messages.append(f"{at}: {describe(yml.data, full[:-1])} needs '{loc[-1]}'")
        else:
            messages.append(f"{at}: {path}: {item['msg']} (got {item.get('input')!r})")
    return messages


def _comma_hint(key: str, value: Any) -> str:
    if value is None and re.search(r"[^\w-]", key):
        return ("; it looks like the rest of a text cut at a comma: inside {...} quote "
                "a value that holds a comma (description: \"a, b\")")
    return ""


def _is_tag(part: str) -> bool:
    # pydantic inserts union member tags ("list[...]", "function-after[...]") into loc.
    return "[" in part or part in ("str", "int", "float", "bool", "dict", "list")


def describe(data: Any, loc: Loc) -> str:
    """A key path for messages, list items named by their name: ``models > residuals > config``."""
    parts: list[str] = []
    node = data
    for part in loc:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            node = None
        if isinstance(part, int):
            name = node.get("name") if isinstance(node, dict) else None
            in_tests = bool(parts) and "test" in str(parts[-1])
            if name is None and in_tests and isinstance(node, str | dict):
                name = node if isinstance(node, str) else next(iter(node), None)
            parts.append(str(name) if name is not None else f"[{part}]")
        elif not (parts and parts[-1] == str(part)):  # a test item is named by its kind
            parts.append(str(part))
    return " > ".join(parts) if parts else "the top level"
