"""Digest scheduling: which digest of rules.yaml's ``notify: digests:`` is due when.

Each schedule remembers (table ``digest_runs``) when it last ran and up to when its
digest covered the mail, so the next digest starts where the previous one ended,
across restarts.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from triage.state import register_schema
from triage.taxonomy import SEVERITIES

# When each digest schedule last ran and up to when it covered the mail.
SCHEMA = """
    CREATE TABLE IF NOT EXISTS digest_runs (
        name TEXT PRIMARY KEY,
        last_run_at TEXT NOT NULL,
        covered_until TEXT
    );
    """
register_schema(SCHEMA)


@dataclass(frozen=True)
class DigestSchedule:
    """One digest of rules.yaml's ``notify: digests:`` list.

    ``every`` sends on an interval (``every: 1h``); ``at`` sends daily at a local time
    (``at: "08:00"``), with ``weekday`` weekly (``weekday: monday``), and with
    ``monthday`` monthly (``monthday: 1``; a day past the month's end means its last day).
    """

    name: str
    severities: tuple[str, ...] = SEVERITIES
    tags: tuple[str, ...] = ("digest",)
    every: timedelta | None = None
    at: time | None = None
    weekday: int | None = None
    max_items: int = 25
    monthday: int | None = None

    def rolling(self) -> bool:
        """Daily or more often: what ``triage digest --now`` sums up."""
        return self.weekday is None and self.monthday is None

    def next_after(self, last: datetime, tz: ZoneInfo) -> datetime:
        """The first send time strictly after ``last``."""
        if self.every is not None:
            return last + self.every
        at = self.at or time(8, 0)
        day = last.astimezone(tz).date()
        while True:
            candidate = datetime.combine(day, at, tzinfo=tz)
            weekday_ok = self.weekday is None or candidate.weekday() == self.weekday
            if candidate > last and weekday_ok and self._monthday_ok(day):
                return candidate
            day += timedelta(days=1)

    def _monthday_ok(self, day: date) -> bool:
        if self.monthday is None:
            return True
        last = (day.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
        return day.day == min(self.monthday, last.day)


def due_schedules(
    conn: sqlite3.Connection, schedules: Sequence[DigestSchedule], now: datetime, tz: ZoneInfo
) -> list[tuple[DigestSchedule, datetime | None]]:
    """The schedules due now, each with the time its previous digest covered up to.

    A schedule seen for the first time starts counting from now; its first digest
    then covers everything triage has recorded so far.
    """
    due = []
    for schedule in schedules:
        row = conn.execute(
            "SELECT last_run_at, covered_until FROM digest_runs WHERE name = ?", (schedule.name,)
        ).fetchone()
        if row is None:
            conn.execute(
                "INSERT INTO digest_runs (name, last_run_at) VALUES (?, ?)",
                (schedule.name, now.isoformat()),
            )
            continue
        if schedule.next_after(datetime.fromisoformat(row["last_run_at"]), tz) <= now:
            due.append((schedule, _parse(row["covered_until"])))
    return due


def covered_until(conn: sqlite3.Connection, name: str) -> datetime | None:
    row = conn.execute("SELECT covered_until FROM digest_runs WHERE name = ?", (name,)).fetchone()
    return _parse(row["covered_until"]) if row else None


def record_run(conn: sqlite3.Connection, name: str, now: datetime) -> None:
    """The digest ``name`` now covers everything up to ``now``."""
    conn.execute(
        """
        INSERT INTO digest_runs (name, last_run_at, covered_until) VALUES (?, ?, ?)
        ON CONFLICT (name) DO UPDATE SET last_run_at = excluded.last_run_at,
                                         covered_until = excluded.covered_until
        """,
        (name, now.isoformat(), now.isoformat()),
    )


def _parse(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None
