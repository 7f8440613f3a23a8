"""Several mailboxes in one daemon, and live rules reloads while it runs."""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from test_daemon import make_daemon, wait_until
from test_sync import mail

from triage.daemon import Supervisor
from triage.errors import RulesError
from triage.liverules import RulesWatcher
from triage.rules import Rules
from triage.state import Database

GOOD = """version: 1
rules:
  - name: supplier-is-high
    match:
      sender: "@ningbo-kitchenware.example"
    severity: high
"""
BROKEN = """version: 1
rules:
  - name: supplier-is-high
    match:
      sendr: "@ningbo-kitchenware.example"
    severity: high
"""


def rows_of(db_path: Path, account: str) -> int:
    conn = sqlite3.connect(db_path)
    try:
        return int(conn.execute(
            "SELECT COUNT(*) FROM messages WHERE account = ?", (account,)).fetchone()[0])
    finally:
        conn.close()


def test_one_failing_account_does_not_stop_the_others(  # type: ignore[no-untyped-def]
    dovecot_servers, tmp_path: Path
) -> None:
    good, other = dovecot_servers.account(), dovecot_servers.account()
    good.append("INBOX", mail("buyer question", 1))
    good_imap = dataclasses.replace(good.imap_settings(), name="shop-eu")
    bad_imap = dataclasses.replace(other.imap_settings(), name="shop-us", password="wrong")
    db_path = tmp_path / "triage.db"
    daemons = [make_daemon(imap, Database(db_path)) for imap in (bad_imap, good_imap)]
    supervisor = Supervisor(daemons)
    thread = threading.Thread(target=supervisor.run, kwargs={"check_every": 0.1}, daemon=True)
    thread.start()
    try:
        assert wait_until(lambda: rows_of(db_path, "shop-eu") == 1)
        good.append("INBOX", mail("buyer second question", 2))
        assert wait_until(lambda: rows_of(db_path, "shop-eu") == 2)
        assert rows_of(db_path, "shop-us") == 0
    finally:
        supervisor.stop()
        thread.join(timeout=15)
    assert not thread.is_alive(), "the supervisor did not stop"


@pytest.fixture
def rules_file(tmp_path: Path) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(GOOD)
    return path


def rewrite(path: Path, text: str) -> None:
    """Write and move the modification time on, as a later edit would."""
    path.write_text(text)
    stamp = time.time() + 1
    os.utime(path, (stamp, stamp))


def watch(path: Path) -> tuple[RulesWatcher, list[Rules], list[RulesError]]:
    applied: list[Rules] = []
    refused: list[RulesError] = []
    watcher = RulesWatcher(path, applied.append, refused.append)
    return watcher, applied, refused


def test_an_edit_is_picked_up_without_a_restart(rules_file: Path) -> None:
    watcher, applied, refused = watch(rules_file)
    assert watcher.check() is False  # nothing changed yet
    rewrite(rules_file, GOOD.replace("severity: high", "severity: critical"))
    assert watcher.check() is True
    assert len(applied) == 1 and not refused
    assert [r.name for r in applied[0].rules] == ["supplier-is-high"]


def test_a_broken_edit_is_refused_and_the_last_good_rules_keep_running(rules_file: Path) -> None:
    watcher, applied, refused = watch(rules_file)
    rewrite(rules_file, BROKEN)
    assert watcher.check() is False
    assert applied == []
    assert len(refused) == 1
    error = refused[0]
    assert error.path == str(rules_file)
    assert error.line == 5
    assert "sendr" in error.reason
    # Fixed again: the new rules take over.
    rewrite(rules_file, GOOD)
    assert watcher.check() is True
    assert len(applied) == 1


def test_a_refused_edit_reaches_the_operator(rules_file: Path, tmp_path: Path) -> None:
    from triage.daemon import tell_operator_refused
    from triage.settings import NotifySettings, Settings

    settings = Settings(imap=None, notify=NotifySettings(), state_dir=tmp_path,
                        rules_path=rules_file)
    told: Callable[[RulesError], None] = tell_operator_refused(settings)
    watcher = RulesWatcher(rules_file, lambda rules: None, told)
    rewrite(rules_file, BROKEN)
    watcher.check()
    conn = sqlite3.connect(settings.database_path)
    texts = " ".join(str(row) for row in conn.execute("SELECT * FROM notifications"))
    assert "rules.yaml:5" in texts
    assert "last good rules keep running" in texts
