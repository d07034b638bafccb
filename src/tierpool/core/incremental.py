"""Incremental models (``materialized: incremental``): rebuild only what is new.

A model with ``materialized: incremental``, a ``unique_key`` and an ``event_time`` column
(dbt 1.9's name for it) is built in one of two ways:

* **full rebuild** — the whole SELECT, as a ``table`` model: on the first build, with
  ``--full-refresh``, when the target is empty or its columns would change, and whenever
  what the existing rows were computed *with* changed since the last build (the **basis**:
  the contents of its lookup parents, its own SQL and the SQL its event parents are made
  from); the message says why (``full rebuild: priors changed``);
* **incremental** — the high-water mark ``max(event_time)`` is read from the target first,
  then every read of an **event parent** (a parent relation that has the ``event_time``
  column) in the model's SQL becomes ``(SELECT * FROM parent WHERE event_time >= <mark>)``
  with the mark as a literal, so DuckDB and Spark push the filter down to the big table's
  scan (a filter against a ``max()`` subquery would not be pushed down). Rows equal to a
  row the target already holds at or after the mark are not new (``EXCEPT ALL``), so a rerun
  with nothing new writes 0 rows; the rows of every key with a new row replace the target's
  rows of that ``unique_key`` (delete + insert, as ``append``; ``Adapter.merge``: Spark adds
  rows whose keys are new as new files instead of rewriting the table). ``>=`` rather than
  ``>`` picks up rows that arrived late with the same timestamp as the mark.

Parents without the ``event_time`` column are **lookups** (priors, configuration,
reference seeds). They are read whole on every build; a change of their contents (a
digest of their rows, computed by the engine) forces a full rebuild, since existing rows
were computed against the old values. Contents, not the build state's input fingerprints,
because those change whenever anything upstream is rebuilt: a new day of tier-2 rows
flows through tier3_checked, residuals and the conformal tables and would give
``conformal_assignment`` a new fingerprint with the same rows.

The model must be row-wise in its event parents (each output row computed from one row of
each event parent and the lookups; no aggregate or window over event rows), and the output's
``event_time`` is the event parents' column: that is what makes the incremental result equal
a full rebuild's. Rows whose event_time is NULL are only read by a full rebuild.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tierpool.core.sql import DIALECT, _is_named_table, normalize_name, statement_text

# Relation name -> type name per column (Adapter.query_schema).
Schema = Mapping[str, str]


@dataclass(frozen=True)
class Basis:
    """What an incremental model's rows were computed with (kept in the build state).

    Attributes:
        code: node name -> digest of its SQL (the model itself, and the SQL models and
            sources its event parents are made from).
        lookups: lookup parent -> digest of its contents (and columns).
    """

    code: dict[str, str] = field(default_factory=dict)
    lookups: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"code": dict(self.code), "lookups": dict(self.lookups)}

    @classmethod
    def from_dict(cls, data: Any) -> Basis | None:
        if not isinstance(data, dict):
            return None
        code, lookups = data.get("code"), data.get("lookups")
        if not isinstance(code, dict) or not isinstance(lookups, dict):
            return None
        return cls({str(k): str(v) for k, v in code.items()}, {str(k): str(v) for k, v in lookups.items()})


def digest(*parts: Any) -> str:
    """A short stable digest of JSON-able parts."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def event_parents(parents: Iterable[str], schemas: Mapping[str, Schema], column: str) -> list[str]:
    """The parents that carry the ``event_time`` column (compared case-insensitively).

    >>> event_parents(["priors", "stg"], {"priors": {"x": "DOUBLE"},
    ...               "stg": {"requested_at": "TIMESTAMP"}}, "Requested_At")
    ['stg']
    """
    wanted = normalize_name(column)
    return sorted(p for p in parents if wanted in {normalize_name(c) for c in schemas.get(p, {})})


def why_full(stored: Basis | None, current: Basis) -> str | None:
    """Why the existing rows cannot be kept (None: they can).

    >>> why_full(Basis({"m": "1"}, {"priors": "a", "cfg": "b"}),
    ...          Basis({"m": "1"}, {"priors": "z", "cfg": "b"}))
    'priors changed'
    >>> why_full(Basis({"m": "1", "stg": "2"}, {}), Basis({"m": "9", "stg": "2"}, {}))
    'SQL of m changed'
    """
    if stored is None:
        return "no record of its last successful build"
    changed_code = sorted(n for n in set(stored.code) | set(current.code)
                          if stored.code.get(n) != current.code.get(n))
    if changed_code:
        return f"SQL of {', '.join(changed_code)} changed"
    changed = sorted(n for n in set(stored.lookups) | set(current.lookups)
                     if stored.lookups.get(n) != current.lookups.get(n))
    if changed:
        return f"{', '.join(changed)} changed"
    return None


def filter_reads(sql: str, relations: Iterable[str], predicate: str) -> str:
    """``sql`` with every read of one of ``relations`` filtered by ``predicate``.

    A read ``FROM stg AS t`` becomes ``FROM (SELECT * FROM stg WHERE <predicate>) AS t``
    (an unaliased read keeps its name as alias, so ``stg.column`` still resolves). Scope
    analysis leaves CTEs of the same name alone. The predicate is DuckDB SQL over the
    relation's own columns; a literal in it lets the engine push it to the scan.

    >>> filter_reads("select t.a from stg as t join lk on lk.k = t.k", ["stg"],
    ...              "ts >= CAST('2026-01-01' AS TIMESTAMP)")
    "SELECT t.a FROM (SELECT * FROM stg WHERE ts >= CAST('2026-01-01' AS TIMESTAMP)) AS t JOIN lk ON lk.k = t.k"
    >>> filter_reads("with stg as (select 1 as a) select a from stg", ["stg"], "x > 1")
    'WITH stg AS (SELECT 1 AS a) SELECT a FROM stg'
    """
    import sqlglot
    from sqlglot import exp
    from sqlglot.optimizer.scope import traverse_scope

    wanted = {normalize_name(r) for r in relations}
    tree = sqlglot.parse_one(statement_text(sql), read=DIALECT)
    condition = sqlglot.parse_one(predicate, read=DIALECT)
    reads = []
    for scope in traverse_scope(tree):
        for source in scope.sources.values():
            if _is_named_table(source) and not source.db and normalize_name(source.name) in wanted:
                reads.append(source)
    for source in {id(s): s for s in reads}.values():
        alias = source.alias or source.name
        inner = exp.select("*").from_(exp.Table(this=exp.to_identifier(source.name))).where(condition.copy())
        source.replace(exp.Subquery(this=inner, alias=exp.TableAlias(this=exp.to_identifier(alias))))
    return tree.sql(dialect=DIALECT)


def quote(name: str) -> str:
    """An identifier quoted for the project dialect (DuckDB)."""
    return '"' + name.replace('"', '""') + '"'


def new_rows_sql(filtered_sql: str, target: str, column: str, since: str, unique_key: Iterable[str]) -> str:
    """The rows to merge: every filtered row of a key that has a row the target does not hold.

    A filtered row equal to one the target holds at or after the mark is not new (``EXCEPT
    ALL``, whole rows; column order and types are the target's, checked before); a key with
    any new row brings all its filtered rows, so the merge (delete the key's rows, insert
    these) gives what a full rebuild would, duplicates included. Nothing new: no row.
    """
    match = " AND ".join(f"d.{quote(k)} IS NOT DISTINCT FROM c.{quote(k)}" for k in unique_key)
    return (
        f"WITH c AS (\n{statement_text(filtered_sql)}\n),\n"
        f"d AS (SELECT * FROM c EXCEPT ALL SELECT * FROM {quote(target)} "
        f"WHERE {quote(column)} >= {since})\n"
        f"SELECT c.* FROM c WHERE EXISTS (SELECT 1 FROM d WHERE {match})"
    )


def predicate(column: str, since: str) -> str:
    """``"column" >= <since literal>`` (project dialect)."""
    return f"{quote(column)} >= {since}"
