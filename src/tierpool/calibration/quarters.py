"""Fit quarters: which quarter a fit belongs to, its data window and its fit_id.

A fit uses the residuals measured up to the end of its quarter. By default the quarter is the
last one that has fully ended on the build date (so a build on 2026-11-21 fits 2026Q3 and rows
measured in 2026Q4 wait for the next quarter's fit).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timezone

from tierpool.errors import ConfigError

_QUARTER_ID = re.compile(r"^(\d{4})Q([1-4])$")


@dataclass(frozen=True, order=True)
class Quarter:
    """A calendar quarter, e.g. ``Quarter(2026, 3)`` is 2026Q3."""

    year: int
    number: int

    def __str__(self) -> str:
        return f"{self.year}Q{self.number}"

    @property
    def start(self) -> date:
        return date(self.year, 3 * self.number - 2, 1)

    @property
    def window_end(self) -> date:
        """First day after the quarter: the data window is ``measured_at < window_end``."""
        return self.next().start

    def next(self) -> Quarter:
        return Quarter(self.year + 1, 1) if self.number == 4 else Quarter(self.year, self.number + 1)

    def previous(self) -> Quarter:
        return Quarter(self.year - 1, 4) if self.number == 1 else Quarter(self.year, self.number - 1)

    @classmethod
    def containing(cls, day: date) -> Quarter:
        return cls(day.year, (day.month - 1) // 3 + 1)

    @classmethod
    def parse(cls, text: str) -> Quarter:
        """Parse ``2026Q3``.

        >>> Quarter.parse("2026Q3").window_end
        datetime.date(2026, 10, 1)
        """
        match = _QUARTER_ID.match(text.strip().upper())
        if not match:
            raise ConfigError(f"'{text}' is not a quarter: write it like 2026Q3")
        return cls(int(match.group(1)), int(match.group(2)))


def last_complete_quarter(as_of: date | None = None) -> Quarter:
    """The latest quarter that ended on or before ``as_of`` (default: today, UTC).

    >>> str(last_complete_quarter(date(2026, 11, 21)))
    '2026Q3'
    >>> str(last_complete_quarter(date(2026, 10, 1)))
    '2026Q3'
    """
    day = as_of or datetime.now(timezone.utc).date()
    return Quarter.containing(day).previous()


def parse_as_of(value: object) -> date | None:
    """Read the optional ``fit.as_of`` setting (a date or ISO string)."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError as exc:
        raise ConfigError(f"fit.as_of '{value}' is not a date: write it like 2026-11-21") from exc


def next_fit_id(quarter: Quarter, existing_ids: set[str]) -> str:
    """``2026Q3`` for the quarter's first fit, then ``2026Q3-r2``, ``2026Q3-r3``...

    >>> next_fit_id(Quarter(2026, 3), {"2026Q2", "2026Q3"})
    '2026Q3-r2'
    """
    base = str(quarter)
    if base not in existing_ids:
        return base
    revision = 2
    while f"{base}-r{revision}" in existing_ids:
        revision += 1
    return f"{base}-r{revision}"
