"""The outbox: what is to be said, one row per target, sent and marked sent one by one.

:func:`queue` records a notification (its text, Markdown and HTML renderings, its
tags, the time before which it must wait). :func:`expand` writes one outbox row per
target (and per part of a long chat body) before anything is sent, and
:func:`send_outbox` marks a row sent only when Apprise reports success, committing
each row at once (a crash repeats at most the one row in flight). A target that is
down is retried with exponential backoff, kept per target: when it comes back, its
queue goes out oldest first in the same round. A target that succeeded is never sent
the same thing again.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from triage import chat, logs, metrics
from triage.document import Document, clean, render
from triage.errors import NotifyError
from triage.notifypolicy import NotifyPolicy
from triage.state import Database, register_schema
from triage.targets import Target, route, send

log = logging.getLogger(__name__)

# The outbox serves every account of the daemon, so its metrics carry this label.
ALL_ACCOUNTS = "all"

BACKOFF_FIRST = timedelta(seconds=30)
BACKOFF_MAX = timedelta(hours=1)

# ``notifications`` holds what to say; ``outbox`` one row per target (and part),
# written before sending and marked sent only on success.
SCHEMA = """
    CREATE TABLE IF NOT EXISTS notifications (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,
        key TEXT NOT NULL UNIQUE,
        severity TEXT NOT NULL,
        tags TEXT NOT NULL,
        title TEXT NOT NULL,
        body_text TEXT NOT NULL,
        body_markdown TEXT NOT NULL,
        body_html TEXT NOT NULL,
        created_at TEXT NOT NULL,
        not_before TEXT NOT NULL,
        expanded INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE IF NOT EXISTS outbox (
        id INTEGER PRIMARY KEY,
        notification_id INTEGER NOT NULL REFERENCES notifications (id),
        target TEXT NOT NULL,
        target_label TEXT NOT NULL,
        part INTEGER NOT NULL DEFAULT 1,
        title TEXT NOT NULL,
        body TEXT NOT NULL,
        body_format TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at TEXT NOT NULL,
        sent_at TEXT,
        last_error TEXT,
        UNIQUE (notification_id, target, part)
    );
    CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (sent_at, next_attempt_at);
    CREATE TABLE IF NOT EXISTS target_backoff (
        target TEXT PRIMARY KEY,
        failures INTEGER NOT NULL,
        retry_at TEXT NOT NULL
    );
    """
register_schema(SCHEMA)

# One delivery at a time in this process: every account's loop and the rules watcher
# may call deliver_due, and two rounds reading the same unsent row would send it twice.
SENDING = threading.Lock()


def queue(
    conn: sqlite3.Connection,
    kind: str,
    key: str,
    severity: str,
    tags: Sequence[str],
    doc: Document,
    now: datetime,
    not_before: datetime | None = None,
) -> bool:
    """Record a notification to send; False if one with this key was queued before."""
    cursor = conn.execute(
        """
        INSERT OR IGNORE INTO notifications (kind, key, severity, tags, title, body_text,
            body_markdown, body_html, created_at, not_before)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        """,
        (
            kind,
            key,
            severity,
            json.dumps(list(tags)),
            clean(doc.title, 250).strip(),
            render(doc, "text"),
            render(doc, "markdown"),
            render(doc, "html"),
            now.isoformat(),
            (not_before or now).isoformat(),
        ),
    )
    return cursor.rowcount > 0


@dataclass(frozen=True)
class DeliveryReport:
    sent: int = 0
    failed: int = 0
    failures: tuple[str, ...] = ()


def oldest_waiting_critical(conn: sqlite3.Connection, now: datetime) -> timedelta | None:
    """How long the oldest critical notification not yet taken by any target has waited."""
    row = conn.execute(
        """
        SELECT MIN(n.created_at) FROM notifications n
        WHERE n.severity = 'critical' AND n.not_before <= ? AND NOT EXISTS (
            SELECT 1 FROM outbox o WHERE o.notification_id = n.id AND o.sent_at IS NOT NULL)
        """,
        (now.isoformat(),),
    ).fetchone()
    return now - datetime.fromisoformat(row[0]) if row and row[0] else None


def expand(
    conn: sqlite3.Connection, targets: Sequence[Target], policy: NotifyPolicy, now: datetime
) -> None:
    """Write one outbox row per target (and per part of a long body) for what is ready."""
    if not targets:
        return  # kept until a target is configured: nothing is lost
    rows = conn.execute(
        "SELECT * FROM notifications WHERE expanded = 0 AND not_before <= ? ORDER BY id",
        (now.isoformat(),),
    ).fetchall()
    for row in rows:
        for target in route(targets, json.loads(row["tags"]), row["title"]):
            _expand_one(conn, row, target, policy, now)
        conn.execute("UPDATE notifications SET expanded = 1 WHERE id = ?", (row["id"],))


def _expand_one(
    conn: sqlite3.Connection, row: sqlite3.Row, target: Target, policy: NotifyPolicy, now: datetime
) -> None:
    body = row[f"body_{target.body_format}"]
    parts = (
        [body]
        if target.body_format == "html"
        else chat.parts(body, min(policy.max_chars, target.max_chars), target.service)
    )
    for index, part in enumerate(parts, start=1):
        title = row["title"] if len(parts) == 1 else f"{row['title']} ({index}/{len(parts)})"
        conn.execute(
            """
            INSERT OR IGNORE INTO outbox (notification_id, target, target_label, part, title,
                body, body_format, next_attempt_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?)
            """,
            (
                row["id"],
                target.key,
                target.label,
                index,
                title,
                part,
                target.body_format,
                now.isoformat(),
            ),
        )


def send_outbox(db: Database, targets: Sequence[Target], now: datetime) -> DeliveryReport:
    """Send every outbox row whose time has come, oldest first; a failed target waits.

    The backoff belongs to the target, not to a row: while a target is down its whole
    queue waits, and the first try that succeeds sends the rest, oldest first.
    """
    by_key = {t.key: t for t in targets}
    _relabel(db, targets)
    rows = db.conn.execute(
        "SELECT * FROM outbox WHERE sent_at IS NULL AND next_attempt_at <= ? ORDER BY id",
        (now.isoformat(),),
    ).fetchall()
    backoff = {
        r["target"]: (r["failures"], datetime.fromisoformat(r["retry_at"]))
        for r in db.conn.execute("SELECT * FROM target_backoff")
    }
    down: set[str] = set()
    sent = failed = 0
    failures = []
    for row in rows:
        target = by_key.get(row["target"])
        if target is None or target.key in down:
            continue
        if target.key in backoff and backoff[target.key][1] > now:
            continue
        try:
            send(target, row["title"], row["body"], row["body_format"])
        except NotifyError as exc:
            down.add(target.key)
            failed += 1
            metrics.count_alert(ALL_ACCOUNTS, ok=False)
            failures.append(str(exc))
            _record_failure(db, row, target, backoff.get(target.key, (0, now))[0], str(exc), now)
            continue
        # Committed at once: a crash after this point cannot send this row again.
        with db.transaction() as conn:
            conn.execute(
                "UPDATE outbox SET sent_at = ?, attempts = attempts + 1 WHERE id = ?",
                (now.isoformat(), row["id"]),
            )
            if backoff.pop(target.key, None) is not None:
                conn.execute("DELETE FROM target_backoff WHERE target = ?", (target.key,))
                log.info("%s takes notifications again; sending its queue", target.label)
        sent += 1
        metrics.count_alert(ALL_ACCOUNTS, ok=True)
    return DeliveryReport(sent, failed, tuple(failures))


def _relabel(db: Database, targets: Sequence[Target]) -> None:
    """Rows written by an older version may hold a less masked label: mask them now."""
    stale = [
        (t.label, t.key, t.label)
        for t in targets
        if db.conn.execute(
            "SELECT 1 FROM outbox WHERE target = ? AND target_label != ? LIMIT 1",
            (t.key, t.label),
        ).fetchone()
    ]
    if stale:
        with db.transaction() as conn:
            conn.executemany(
                "UPDATE outbox SET target_label = ? WHERE target = ? AND target_label != ?", stale
            )


def _record_failure(
    db: Database, row: sqlite3.Row, target: Target, failures: int, error: str, now: datetime
) -> None:
    failures += 1
    delay = min(BACKOFF_FIRST * 2 ** (failures - 1), BACKOFF_MAX)
    log.warning(
        "notification to %s failed (%d in a row), retrying in %s",
        target.label,
        failures,
        delay,
    )
    with db.transaction() as conn:
        conn.execute(
            "UPDATE outbox SET attempts = attempts + 1, last_error = ? WHERE id = ?",
            (logs.mask(error), row["id"]),
        )
        conn.execute(
            "INSERT INTO target_backoff (target, failures, retry_at) VALUES (?, ?, ?) "
            "ON CONFLICT (target) DO UPDATE SET failures = excluded.failures, "
            "retry_at = excluded.retry_at",
            (target.key, failures, (now + delay).isoformat()),
        )


def pending(db: Database) -> list[sqlite3.Row]:
    """Outbox rows not yet delivered (for the operator and the tests)."""
    return db.conn.execute("SELECT * FROM outbox WHERE sent_at IS NULL ORDER BY id").fetchall()

