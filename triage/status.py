"""``triage status``: what the state database says, for a seller or an operator.

The last sync of every folder, the reply clocks still running and the time each
has left, the outbox (pending, failed, sent, oldest pending), and how many
messages of each type and severity arrived in the last 24 hours.

The tables come from several modules (``folders`` from the sync, ``outbox`` and
``reply_clocks`` from the notifier), so each is read defensively: a table that is
not there yet, or lacks a column, shows as "none" rather than failing.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from triage import settings
from triage.errors import TriageError
from triage.logs import mask
from triage.state import Database
from triage.taxonomy import SEVERITIES, TYPES

RECENT = timedelta(hours=24)

# Column names the other modules might choose, most likely first.
SYNCED_AT = ("last_sync_at", "synced_at", "last_sync", "updated_at")
DEADLINE = ("deadline", "due_at", "deadline_at", "expires_at")
CLOSED_AT = ("stopped_at", "closed_at", "answered_at", "replied_at", "resolved_at")
STATE = ("status", "state")
QUEUED_AT = ("created_at", "queued_at", "enqueued_at")
OPEN_STATES = ("open", "running", "pending", "warned")


@dataclass(frozen=True)
class FolderSync:
    account: str
    folder: str
    last_sync_at: str | None
    last_uid: int | None


@dataclass(frozen=True)
class ReplyClock:
    account: str
    deadline: str | None
    seconds_left: float | None
    order_id: str | None
    buyer_name: str | None
    subject: str | None


@dataclass(frozen=True)
class Outbox:
    pending: int = 0
    failed: int = 0
    sent: int = 0
    oldest_unsent: str | None = None
    last_error: str | None = None


@dataclass(frozen=True)
class Status:
    now: str
    database: str
    folders: tuple[FolderSync, ...] | None
    reply_clocks: tuple[ReplyClock, ...] | None
    outbox: Outbox | None
    recent: Mapping[str, Mapping[str, int]]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_time(value: object) -> datetime | None:
    """An aware datetime from an ISO 8601 text or Unix seconds; naive means UTC."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    try:
        when = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def columns(conn: sqlite3.Connection, table: str) -> set[str]:
    """The table's columns; empty when the table does not exist."""
    return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}


def _rows(conn: sqlite3.Connection, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
    cursor = conn.cursor()
    cursor.row_factory = sqlite3.Row  # by column name, whatever the connection's factory
    return cursor.execute(sql, params).fetchall()


def first(present: set[str], candidates: Iterable[str]) -> str | None:
    return next((name for name in candidates if name in present), None)


def _get(row: sqlite3.Row, name: str | None) -> Any:
    return row[name] if name and name in row.keys() else None  # noqa: SIM118 (Row iterates values)


def read_folders(conn: sqlite3.Connection) -> tuple[FolderSync, ...] | None:
    present = columns(conn, "folders")
    if not {"account", "folder"} <= present:
        return None
    synced = first(present, SYNCED_AT)
    rows = _rows(conn, "SELECT * FROM folders ORDER BY account, folder")
    return tuple(
        FolderSync(row["account"], row["folder"], _iso(_get(row, synced)), _get(row, "last_uid"))
        for row in rows
    )


def read_reply_clocks(conn: sqlite3.Connection, now: datetime) -> tuple[ReplyClock, ...] | None:
    present = columns(conn, "reply_clocks")
    if not present:
        return None
    deadline = first(present, DEADLINE)
    clocks = [
        _clock(row, deadline, now)
        for row in _rows(conn, *_open_clocks_query(present))
    ]
    # Least time left first; clocks without a deadline last.
    clocks.sort(key=lambda c: (c.seconds_left is None, c.seconds_left or 0.0))
    return tuple(clocks)


def _open_clocks_query(present: set[str]) -> tuple[str, Sequence[str]]:
    select = "SELECT c.* FROM reply_clocks c"
    if "account" not in present and "message_row" in present:
        # The clock belongs to the account of the buyer message that opened it.
        select = (
            "SELECT c.*, m.account AS account FROM reply_clocks c "
            "LEFT JOIN messages m ON m.id = c.message_row"
        )
    state = first(present, STATE)
    if state:
        marks = ", ".join("?" for _ in OPEN_STATES)
        return f"{select} WHERE c.{state} IN ({marks})", OPEN_STATES
    closed = first(present, CLOSED_AT)
    if closed:
        return f"{select} WHERE c.{closed} IS NULL", ()
    return select, ()


def _clock(row: sqlite3.Row, deadline_column: str | None, now: datetime) -> ReplyClock:
    deadline = parse_time(_get(row, deadline_column))
    return ReplyClock(
        account=_get(row, "account") or "default",
        deadline=deadline.isoformat() if deadline else None,
        seconds_left=(deadline - now).total_seconds() if deadline else None,
        order_id=_get(row, "order_id"),
        buyer_name=_get(row, "buyer_name"),
        subject=_get(row, "subject"),
    )


def read_outbox(conn: sqlite3.Connection) -> Outbox | None:
    """Unsent rows are pending, or failed when their last attempt failed (and will retry)."""
    present = columns(conn, "outbox")
    if not {"sent_at"} <= present:
        return None
    failing = "last_error IS NOT NULL" if "last_error" in present else "0"
    pending, failed, sent = conn.execute(
        f"SELECT COALESCE(SUM(sent_at IS NULL AND NOT ({failing})), 0),"
        f" COALESCE(SUM(sent_at IS NULL AND ({failing})), 0),"
        f" COALESCE(SUM(sent_at IS NOT NULL), 0) FROM outbox"
    ).fetchone()
    last_error = None
    if "last_error" in present:
        row = conn.execute(
            "SELECT last_error FROM outbox WHERE sent_at IS NULL AND last_error IS NOT NULL"
            " ORDER BY id DESC LIMIT 1"
        ).fetchone()
        last_error = mask(row[0]) if row else None
    return Outbox(pending, failed, sent, _iso(_oldest_unsent(conn, present)), last_error)


def _oldest_unsent(conn: sqlite3.Connection, present: set[str]) -> object:
    """When the oldest unsent row was queued: its own column, else its notification's."""
    queued = first(present, QUEUED_AT)
    if queued:
        sql = f"SELECT MIN({queued}) FROM outbox WHERE sent_at IS NULL"
    elif "notification_id" in present and "created_at" in columns(conn, "notifications"):
        sql = (
            "SELECT MIN(n.created_at) FROM outbox o JOIN notifications n"
            " ON n.id = o.notification_id WHERE o.sent_at IS NULL"
        )
    else:
        return None
    return conn.execute(sql).fetchone()[0]


def read_recent(conn: sqlite3.Connection, now: datetime) -> dict[str, dict[str, int]]:
    """Messages received in the last 24 hours: type -> severity -> count."""
    since = now - RECENT
    # A coarse filter on the date prefix works whatever ISO spelling was stored;
    # the exact cut is made after parsing.
    day_before = (since - timedelta(days=1)).date().isoformat()
    rows = conn.execute(
        "SELECT received_at, type, severity FROM messages WHERE received_at >= ?",
        (day_before,),
    )
    counts: dict[str, dict[str, int]] = {}
    for received_at, type_, severity in rows:
        when = parse_time(received_at)
        if when is not None and since <= when <= now + timedelta(minutes=5):
            by_severity = counts.setdefault(type_, {})
            by_severity[severity] = by_severity.get(severity, 0) + 1
    return counts


def collect(conn: sqlite3.Connection, now: datetime | None = None, database: str = "") -> Status:
    """Everything ``triage status`` shows, read from the state database ``conn``."""
    now = now or datetime.now(UTC)
    return Status(
        now=now.isoformat(timespec="seconds"),
        database=database,
        folders=read_folders(conn),
        reply_clocks=read_reply_clocks(conn, now),
        outbox=read_outbox(conn),
        recent=read_recent(conn, now),
    )


def _iso(value: object) -> str | None:
    when = parse_time(value)
    return when.isoformat(timespec="seconds") if when else None


def _ago(iso: str | None, now: datetime) -> str:
    when = parse_time(iso)
    if when is None:
        return "never"
    return f"{iso} ({duration((now - when).total_seconds())} ago)"


def duration(seconds: float) -> str:
    """``2d 3h``, ``5h 20m``, ``12m``, ``40s``: two units at most."""
    seconds = abs(int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m"
    return f"{secs}s"


def render(status: Status) -> str:
    now = parse_time(status.now) or datetime.now(UTC)
    where = f" ({status.database})" if status.database else ""
    lines = [f"triage status at {status.now}{where}", ""]
    lines += _render_folders(status.folders, now)
    lines += _render_clocks(status.reply_clocks)
    lines += _render_outbox(status.outbox, now)
    lines += _render_recent(status.recent)
    return "\n".join(lines).rstrip() + "\n"


def _render_folders(folders: Sequence[FolderSync] | None, now: datetime) -> list[str]:
    if not folders:
        return ["Last sync: none", ""]
    lines = ["Last sync:"]
    for f in folders:
        uid = f", last UID {f.last_uid}" if f.last_uid is not None else ""
        lines.append(f"  {f.account} / {f.folder}: {_ago(f.last_sync_at, now)}{uid}")
    return [*lines, ""]


def _render_clocks(clocks: Sequence[ReplyClock] | None) -> list[str]:
    if not clocks:
        return ["Open reply clocks: none", ""]
    lines = [f"Open reply clocks: {len(clocks)}"]
    for c in clocks:
        lines.append(f"  {_time_left(c.seconds_left)}  {_clock_label(c)}")
    return [*lines, ""]


def _time_left(seconds: float | None) -> str:
    if seconds is None:
        return "no deadline"
    if seconds < 0:
        return f"OVERDUE by {duration(seconds)}"
    return f"{duration(seconds)} left"


def _clock_label(clock: ReplyClock) -> str:
    parts = [clock.account]
    if clock.order_id:
        parts.append(f"order {clock.order_id}")
    if clock.buyer_name:
        parts.append(clock.buyer_name)
    if clock.subject:
        parts.append(repr(clock.subject))
    return ", ".join(parts)


def _render_outbox(outbox: Outbox | None, now: datetime) -> list[str]:
    if outbox is None:
        return ["Outbox: none", ""]
    lines = [f"Outbox: {outbox.pending} pending, {outbox.failed} failed, {outbox.sent} sent"]
    if outbox.oldest_unsent:
        lines.append(f"  oldest unsent: {_ago(outbox.oldest_unsent, now)}")
    if outbox.last_error:
        lines.append(f"  last error: {outbox.last_error}")
    return [*lines, ""]


def _render_recent(recent: Mapping[str, Mapping[str, int]]) -> list[str]:
    total = sum(n for by_severity in recent.values() for n in by_severity.values())
    if not total:
        return ["Messages in the last 24 h: none"]
    lines = [f"Messages in the last 24 h: {total}"]
    for type_ in _ordered(recent, TYPES):
        for severity in _ordered(recent[type_], SEVERITIES):
            lines.append(f"  {type_:<16} {severity:<9} {recent[type_][severity]:>5}")
    return lines


def _ordered(keys: Iterable[str], order: Sequence[str]) -> list[str]:
    """Taxonomy order first (most urgent severity first), unknown names after."""
    return sorted(keys, key=lambda k: (order.index(k) if k in order else len(order), k))


def status_command(args: argparse.Namespace) -> int:
    """``triage status [--json]``; an error when there is no state database yet."""
    path = settings.from_env().database_path
    if not path.exists():
        raise TriageError(f"no state database at {path}: has `triage run` been started?")
    try:
        db = Database(path)
    except sqlite3.Error as exc:
        raise TriageError(f"cannot open {path}: {exc}") from exc
    try:
        status = collect(db.conn, database=db.path)
    except sqlite3.Error as exc:
        raise TriageError(f"cannot read {path}: {exc}") from exc
    finally:
        db.close()
    if getattr(args, "json", False):
        print(json.dumps(status.as_dict(), indent=2))
    else:
        print(render(status), end="")
    return 0

