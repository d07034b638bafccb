"""Write, audit, publish on Spark: staged relations, published together or dropped.

Spark's session catalog has no multi-statement transactions. While a block of writes is
audited, each write stays under its staging name (``__tierpool_stage_<name>``), data tests
read it there, and only when the block ends cleanly are the staged relations swapped in,
one after the other. If the block raises, the staged relations are dropped and the
published ones were never touched.
"""

from __future__ import annotations

from collections.abc import Callable

STAGE_PREFIX = "__tierpool_stage_"
VIEW_STAGE_PREFIX = "__tierpool_vstage_"
SNAPSHOT_PREFIX = "__tierpool_tsnap_"  # a view's rows, while its tests run


class StagedPublish:
    """The writes of one audited block: what to publish, and what to drop on failure."""

    def __init__(self) -> None:
        self.visible: dict[str, str] = {}  # relation -> staged name its new version has
        self.steps: list[Callable[[], None]] = []  # run in order on publish
        self.staged: list[tuple[str, str]] = []  # (staged name, "table" | "view")

    def stage(self, name: str, staged: str, kind: str, publish: Callable[[], None]) -> None:
        """Record a relation written under ``staged`` and the step that publishes it."""
        self.visible[name] = staged
        self.staged.append((staged, kind))
        self.steps.append(publish)

    def later(self, step: Callable[[], None]) -> None:
        """A write that needs no staging (e.g. creating an empty table) waits for publish."""
        self.steps.append(step)
