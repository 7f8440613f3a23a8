"""The 24-hour reply clock Amazon runs on every buyer message.

Each buyer message opens a clock: 24 hours from receipt, weekends included. The
seller is reminded at set times left (12 h, 4 h, 1 h by default) and at breach.
The clock stops when the seller's answer is seen: Amazon's copy of a sent message,
a message in the Sent folder to the buyer's relay address, or the ``\\Answered``
flag on the buyer message. A new buyer message in the same thread opens a new
clock; one answer stops every open clock of the thread.

The seller can also stop a clock without answering, as Seller Central's "No response
needed" button does: by setting the IMAP keyword ``$NoResponseNeeded`` on the buyer
message in any mail client, or with ``triage reply-clock no-response ORDER-ID``.

Amazon's response-time metric is "answered within 24 hours / buyer messages
needing a reply"; :func:`reply_rate` computes it the same way, so a message marked
"no response needed" counts neither way.
"""

from __future__ import annotations

import argparse
import re
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from triage import metrics
from triage import settings as settings_module
from triage.errors import ConfigError
from triage.state import Database, register_schema

REPLY_WINDOW = timedelta(hours=24)
# The IMAP keyword a seller sets on a buyer message that needs no answer. Any client
# that can add a keyword (Thunderbird's tags, mutt, a server-side filter) sets it.
NO_RESPONSE_KEYWORD = "$NoResponseNeeded"
# ``answered_by`` of a clock the seller stopped without replying.
NO_RESPONSE = "no response needed"
ORDER_ID = re.compile(r"^\d{3}-\d{7}-\d{7}$")
DEFAULT_REMINDERS: tuple[timedelta, ...] = (
    timedelta(hours=12),
    timedelta(hours=4),
    timedelta(hours=1),
)

# One clock per buyer message. ``reminded_s`` is the smallest time-left threshold
# (in seconds) already reminded, so a restart never repeats a reminder.
SCHEMA = """
    CREATE TABLE IF NOT EXISTS reply_clocks (
        id INTEGER PRIMARY KEY,
        message_row INTEGER NOT NULL UNIQUE,
        order_id TEXT,
        thread TEXT NOT NULL DEFAULT '',
        relay TEXT NOT NULL DEFAULT '',
        buyer_name TEXT NOT NULL DEFAULT '',
        subject TEXT NOT NULL DEFAULT '',
        opened_at TEXT NOT NULL,
        due_at TEXT NOT NULL,
        reminded_s INTEGER,
        breach_notified INTEGER NOT NULL DEFAULT 0,
        answered_at TEXT,
        answered_by TEXT
    );
    CREATE INDEX IF NOT EXISTS reply_clocks_open ON reply_clocks (answered_at, due_at);
    """
register_schema(SCHEMA)


@dataclass(frozen=True)
class Clock:
    """One buyer message waiting for (or having had) the seller's answer."""

    id: int
    message_row: int
    order_id: str | None
    buyer_name: str
    subject: str
    opened_at: datetime
    due_at: datetime
    answered_at: datetime | None = None
    answered_by: str = ""

    def needs_reply(self) -> bool:
        return self.answered_by != NO_RESPONSE

    def left(self, now: datetime) -> timedelta:
        """Time left before the 24 hours are up; negative once breached."""
        return self.due_at - now

    def answered_in_time(self) -> bool:
        return self.answered_at is not None and self.answered_at <= self.due_at


@dataclass(frozen=True)
class ClockRow:
    """Where an open clock's buyer message lives, so the sync can poll its flags."""

    message_row: int
    folder: str
    uidvalidity: int | None
    uid: int | None


@dataclass(frozen=True)
class Reminder:
    """A reminder that is due: ``threshold`` is the time left it marks, zero at breach."""

    clock: Clock
    threshold: timedelta

    @property
    def breached(self) -> bool:
        return self.threshold <= timedelta(0)


@dataclass(frozen=True)
class ReplyRate:
    """Answered within 24 hours out of buyer messages that needed a reply."""

    days: int
    in_time: int
    needing: int

    @property
    def percent(self) -> float | None:
        return None if self.needing == 0 else 100.0 * self.in_time / self.needing

    def describe(self) -> str:
        if self.percent is None:
            return f"last {self.days} days: no buyer messages"
        return (
            f"last {self.days} days: {self.percent:.0f}% "
            f"({self.in_time} of {self.needing} answered within 24 h)"
        )


def open_clock(
    conn: sqlite3.Connection,
    message_row: int,
    *,
    received_at: datetime,
    order_id: str | None,
    thread: str,
    relay: str,
    buyer_name: str,
    subject: str,
) -> bool:
    """Start the 24 hours for one buyer message; False if it already has a clock."""
    cursor = conn.execute(
        """
        INSERT OR IGNORE INTO reply_clocks
            (message_row, order_id, thread, relay, buyer_name, subject, opened_at, due_at)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?)
        """,
        (
            message_row,
            order_id,
            thread,
            relay.lower(),
            buyer_name,
            subject,
            received_at.isoformat(),
            (received_at + REPLY_WINDOW).isoformat(),
        ),
    )
    return cursor.rowcount > 0


def stop_thread(
    conn: sqlite3.Connection,
    *,
    answered_at: datetime,
    by: str,
    order_ids: Iterable[str] = (),
    threads: Iterable[str] = (),
    relays: Iterable[str] = (),
) -> int:
    """Stop every open clock of the conversation the answer belongs to; returns how many."""
    keys = {
        "order_id": [o for o in order_ids if o],
        "thread": [t for t in threads if t],
        "relay": [r.lower() for r in relays if r],
    }
    stopped = 0
    for column, values in keys.items():
        for value in values:
            # Only clocks opened before the answer: it cannot answer a later message.
            cursor = conn.execute(
                f"UPDATE reply_clocks SET answered_at = ?, answered_by = ? "
                f"WHERE answered_at IS NULL AND {column} = ? AND opened_at <= ?",
                (answered_at.isoformat(), by, value, answered_at.isoformat()),
            )
            stopped += cursor.rowcount
    return stopped


def mark_answered(conn: sqlite3.Connection, row_ids: Sequence[int], now: datetime) -> int:
    """The seller answered these buyer messages (their ``\\Answered`` flag is set)."""
    return _stop(conn, row_ids, now, "flag")


def mark_no_response(conn: sqlite3.Connection, row_ids: Sequence[int], now: datetime) -> int:
    """The seller marked these buyer messages "no response needed": their clocks stop."""
    return _stop(conn, row_ids, now, NO_RESPONSE)


def _stop(conn: sqlite3.Connection, row_ids: Sequence[int], now: datetime, by: str) -> int:
    """Stop the open clocks of these messages, saying what stopped them; how many stopped."""
    stopped = 0
    for row_id in row_ids:
        cursor = conn.execute(
            "UPDATE reply_clocks SET answered_at = ?, answered_by = ? "
            "WHERE answered_at IS NULL AND message_row = ?",
            (now.isoformat(), by, row_id),
        )
        stopped += cursor.rowcount
    return stopped


def no_response(conn: sqlite3.Connection, which: str, now: datetime) -> list[Clock]:
    """Stop, without a reply, the open clocks of an order ID or of one clock number."""
    which = which.strip()
    if ORDER_ID.match(which):
        rows = conn.execute(
            "SELECT * FROM reply_clocks WHERE answered_at IS NULL AND order_id = ?", (which,)
        ).fetchall()
    elif which.isdigit():
        rows = conn.execute(
            "SELECT * FROM reply_clocks WHERE answered_at IS NULL AND id = ?", (int(which),)
        ).fetchall()
    else:
        raise ValueError(f"expected an order ID (123-1234567-1234567) or a clock number: {which!r}")
    clocks = [_clock(row) for row in rows]
    mark_no_response(conn, [c.message_row for c in clocks], now)
    return clocks


def open_clocks(conn: sqlite3.Connection) -> list[Clock]:
    """Every clock still waiting for an answer, the most urgent first."""
    rows = conn.execute(
        "SELECT * FROM reply_clocks WHERE answered_at IS NULL ORDER BY due_at, id"
    ).fetchall()
    return [_clock(row) for row in rows]


def open_clock_rows(conn: sqlite3.Connection) -> list[ClockRow]:
    """The buyer messages whose flags the sync should watch for ``\\Answered``."""
    rows = conn.execute(
        """
        SELECT m.id, m.folder, m.uidvalidity, m.uid FROM reply_clocks c
        JOIN messages m ON m.id = c.message_row
        WHERE c.answered_at IS NULL ORDER BY c.due_at
        """
    ).fetchall()
    return [ClockRow(r["id"], r["folder"], r["uidvalidity"], r["uid"]) for r in rows]


def due_reminders(
    conn: sqlite3.Connection, now: datetime, thresholds: Sequence[timedelta] = DEFAULT_REMINDERS
) -> list[Reminder]:
    """The reminders due now: at most one per clock, the most urgent one reached.

    After a long outage the skipped, less urgent reminders are not sent late.
    """
    reminders = []
    for row in conn.execute(
        "SELECT * FROM reply_clocks WHERE answered_at IS NULL AND breach_notified = 0"
    ).fetchall():
        clock = _clock(row)
        threshold = _reached(clock.left(now), thresholds, row["reminded_s"])
        if threshold is not None:
            reminders.append(Reminder(clock, threshold))
    return sorted(reminders, key=lambda r: r.clock.due_at)


def record_reminder(conn: sqlite3.Connection, reminder: Reminder) -> None:
    """Remember that a reminder was queued, so it is never queued again."""
    if reminder.breached:
        conn.execute(
            "UPDATE reply_clocks SET breach_notified = 1, reminded_s = 0 WHERE id = ?",
            (reminder.clock.id,),
        )
        metrics.count_breach("all")
        return
    conn.execute(
        "UPDATE reply_clocks SET reminded_s = ? WHERE id = ?",
        (int(reminder.threshold.total_seconds()), reminder.clock.id),
    )


def reply_rate(conn: sqlite3.Connection, now: datetime, days: int) -> ReplyRate:
    """Amazon's measure over buyer messages received in the last ``days`` days.

    A message still inside its 24 hours and not yet answered is not decided, so it
    counts neither way (as on Amazon's dashboard).
    """
    since = now - timedelta(days=days)
    decided = [c for c in _decided(conn, now) if since <= c.opened_at <= now]
    return ReplyRate(days=days, in_time=sum(c.answered_in_time() for c in decided),
                     needing=len(decided))


def daily_rates(
    conn: sqlite3.Connection, now: datetime, days: int, tz: ZoneInfo
) -> list[tuple[date, ReplyRate]]:
    """The reply rate of each of the last ``days`` local days, oldest first."""
    today = now.astimezone(tz).date()
    wanted = [today - timedelta(days=n) for n in range(days - 1, -1, -1)]
    per_day: dict[date, list[Clock]] = {d: [] for d in wanted}
    for clock in _decided(conn, now):
        opened = clock.opened_at.astimezone(tz).date()
        if opened in per_day:
            per_day[opened].append(clock)
    return [
        (d, ReplyRate(1, sum(c.answered_in_time() for c in cs), len(cs)))
        for d, cs in per_day.items()
    ]


def _decided(conn: sqlite3.Connection, now: datetime) -> list[Clock]:
    """Clocks that count for the rate: needing a reply, and answered or past their 24 h.

    A message still inside its 24 hours and not yet answered is not decided yet.
    """
    clocks = [_clock(row) for row in conn.execute("SELECT * FROM reply_clocks").fetchall()]
    return [
        c
        for c in clocks
        if c.needs_reply() and c.opened_at <= now and not (c.answered_at is None and c.due_at > now)
    ]


def no_response_command(args: argparse.Namespace) -> int:
    """``triage reply-clock no-response ORDER|CLOCK``: stop a clock without replying."""
    db = Database(settings_module.from_env().database_path)
    try:
        with db.transaction() as conn:
            try:
                clocks = no_response(conn, args.which, datetime.now(UTC))
            except ValueError as exc:
                raise ConfigError(str(exc)) from exc
    finally:
        db.close()
    if not clocks:
        print(f"No open reply clock for {args.which}.")
        return 1
    for clock in clocks:
        order = f" (order {clock.order_id})" if clock.order_id else ""
        print(f"Stopped: {clock.buyer_name or 'a buyer'}{order}: {clock.subject}")
    return 0


def _reached(
    left: timedelta, thresholds: Sequence[timedelta], reminded_s: int | None
) -> timedelta | None:
    if left <= timedelta(0):
        return timedelta(0)
    reached = [t for t in thresholds if left <= t]
    if not reached:
        return None
    most_urgent = min(reached)
    if reminded_s is not None and most_urgent.total_seconds() >= reminded_s:
        return None
    return most_urgent


def _clock(row: sqlite3.Row) -> Clock:
    return Clock(
        id=row["id"],
        message_row=row["message_row"],
        order_id=row["order_id"],
        buyer_name=row["buyer_name"],
        subject=row["subject"],
        opened_at=datetime.fromisoformat(row["opened_at"]),
        due_at=datetime.fromisoformat(row["due_at"]),
        answered_at=datetime.fromisoformat(row["answered_at"]) if row["answered_at"] else None,
        answered_by=row["answered_by"] or "",
    )
