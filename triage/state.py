"""The state database (SQLite, WAL): what was seen, decided, sent and still open.

Every module that keeps state declares its tables with :func:`register_schema`;
:class:`Database` creates them all on open. Writes go through
:meth:`Database.transaction` so a crash leaves either all of a step or none of it.
"""

from __future__ import annotations

import importlib
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from triage.errors import StateError

_SCHEMAS: list[str] = []

# Modules that declare tables. They are imported before the first open so every table
# exists whichever module happened to open the database first.
STATEFUL_MODULES = (
    "triage.sync", "triage.notify", "triage.outbox", "triage.schedule", "triage.replyclock",
    "triage.corrections",
)


def register_schema(ddl: str) -> None:
    """Add ``CREATE TABLE IF NOT EXISTS ...`` statements run on every open."""
    if ddl not in _SCHEMAS:
        _SCHEMAS.append(ddl)


class Database:
    """One SQLite file; ``":memory:"`` for tests that need no persistence."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self.conn.execute("PRAGMA journal_mode=WAL")
        except (OSError, sqlite3.Error) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise StateError(
                f"cannot open the state database {self.path}: {reason} "
                "(TRIAGE_STATE_DIR must name a folder triage may create and write)"
            ) from exc
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("PRAGMA busy_timeout=5000")
        for name in STATEFUL_MODULES:
            importlib.import_module(name)
        for ddl in _SCHEMAS:
            self.conn.executescript(ddl)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any exception."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()


# Every message triage has decided, one row per account and content fingerprint, so
# a UIDVALIDITY reset or a re-delivery is recognised and never notified twice.
register_schema(
    """
    CREATE TABLE IF NOT EXISTS messages (
        id INTEGER PRIMARY KEY,
        account TEXT NOT NULL DEFAULT 'default',
        folder TEXT NOT NULL,
        folder_role TEXT NOT NULL DEFAULT 'inbox',
        uidvalidity INTEGER,
        uid INTEGER,
        message_id TEXT NOT NULL DEFAULT '',
        fingerprint TEXT NOT NULL,
        received_at TEXT NOT NULL,
        processed_at TEXT NOT NULL,
        sender TEXT NOT NULL DEFAULT '',
        sender_name TEXT NOT NULL DEFAULT '',
        reply_to TEXT NOT NULL DEFAULT '',
        subject TEXT NOT NULL DEFAULT '',
        summary TEXT NOT NULL DEFAULT '',
        order_id TEXT,
        buyer_name TEXT NOT NULL DEFAULT '',
        link TEXT NOT NULL DEFAULT '',
        deadline TEXT,
        type TEXT NOT NULL,
        severity TEXT NOT NULL,
        confidence REAL NOT NULL DEFAULT 0,
        suspicious INTEGER NOT NULL DEFAULT 0,
        amazon INTEGER NOT NULL DEFAULT 0,
        decided_by TEXT NOT NULL DEFAULT 'model',
        tags TEXT NOT NULL DEFAULT '[]',
        actions TEXT NOT NULL DEFAULT '[]',
        rescued INTEGER NOT NULL DEFAULT 0,
        history INTEGER NOT NULL DEFAULT 0,
        error TEXT,
        UNIQUE (account, fingerprint)
    );
    CREATE INDEX IF NOT EXISTS messages_received ON messages (account, received_at);
    CREATE INDEX IF NOT EXISTS messages_uid ON messages (account, folder, uidvalidity, uid);
    CREATE INDEX IF NOT EXISTS messages_processed ON messages (processed_at);
    """
)
