"""The daemon against a real Dovecot: IDLE, junk polls, rescue, restarts, crashes, SIGTERM.

Deciding is done by the stand-in pipeline of ``test_sync`` (subject keywords), so
these tests are about syncing and never depend on the trained model. Run as a
script, this file is a daemon process for the SIGTERM and SIGKILL tests.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from test_sync import KeywordPipeline, OutboxNotifier, mail

from triage.daemon import Daemon, Timing
from triage.mailbox import Mailbox
from triage.settings import ImapSettings, NotifySettings, Settings, imap_from_env
from triage.state import Database
from triage.sync import STAGES

WAIT = 20.0  # upper bound for anything the daemon should do "within seconds"


def settings_for(imap: ImapSettings, state_dir: Path) -> Settings:
    return Settings(imap=imap, notify=NotifySettings(), state_dir=state_dir, rules_path=Path("x"))


def make_daemon(
    imap: ImapSettings,
    db: Database,
    notifier: OutboxNotifier | None = None,
    **kw: object,
) -> Daemon:
    kw.setdefault("timing", Timing(poll_seconds=0.5, backoff_first=0.2, backoff_max=1.0))
    return Daemon(
        settings_for(imap, Path(db.path).parent),
        db,
        KeywordPipeline(),
        lambda: Mailbox(imap),
        notifier=notifier or OutboxNotifier(),
        deliver=None,
        **kw,  # type: ignore[arg-type]
    )


def count(db_path: Path | str, sql: str) -> int:
    conn = sqlite3.connect(db_path)
    try:
        return int(conn.execute(sql).fetchone()[0])
    except sqlite3.OperationalError:
        return 0  # the table is not there yet
    finally:
        conn.close()


def rows(db_path: Path | str) -> int:
    return count(db_path, "SELECT COUNT(*) FROM messages")


def alerts(db_path: Path | str) -> int:
    return count(db_path, "SELECT COUNT(*) FROM test_outbox")


def wait_until(condition: Callable[[], bool], timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def uid_mail(subject: str) -> bytes:
    """A mail with a Message-ID no other test uses."""
    return mail(subject, uuid.uuid4().int % 10**9)


@pytest.fixture
def running(db: Database) -> Iterator[Callable[..., Daemon]]:
    """Start a daemon in a thread; stopped and joined at the end of the test."""
    started: list[tuple[Daemon, threading.Thread]] = []

    def start(imap: ImapSettings, **kw: object) -> Daemon:
        daemon = make_daemon(imap, db, **kw)  # type: ignore[arg-type]
        thread = threading.Thread(target=daemon.run_forever, daemon=True)
        thread.start()
        started.append((daemon, thread))
        return daemon

    yield start
    for daemon, thread in started:
        daemon.stop()
        thread.join(timeout=WAIT)
        assert not thread.is_alive(), "the daemon did not stop"


# -- run once ----------------------------------------------------------------------------


@pytest.mark.parametrize("fixture", ["dovecot", "dovecot_without_move"])
def test_once_rescues_genuine_mail_and_leaves_phishing_in_junk(
    fixture: str, request: pytest.FixtureRequest, db: Database
) -> None:
    account = request.getfixturevalue(fixture)
    account.append("INBOX", mail("buyer question", 1))
    account.append("Junk", mail("buyer question", 2))
    account.append("Junk", mail("phish your account is on hold", 3))
    make_daemon(account.imap_settings(), db).run_once()
    assert len(account.uids("Junk")) == 1
    assert len(account.uids("INBOX")) == 2
    # The second pass sees the rescued message in INBOX and recognises it.
    make_daemon(account.imap_settings(), db).run_once()
    assert rows(db.path) == 3
    assert alerts(db.path) == 2
    assert count(db.path, "SELECT COUNT(*) FROM messages WHERE suspicious = 1 AND rescued = 0") == 1
    junk_uid = account.uids("Junk")[0]
    assert "\\Flagged" not in account.flags("Junk", junk_uid)
    assert all("\\Flagged" in account.flags("INBOX", u) for u in account.uids("INBOX"))


def test_once_dry_run_prints_and_changes_nothing(dovecot, db: Database) -> None:  # type: ignore[no-untyped-def]
    dovecot.append("Junk", mail("buyer question", 1))
    printed: list[str] = []
    make_daemon(dovecot.imap_settings(), db, dry_run=True, out=printed.append).run_once()
    assert printed == [
        "Junk uid 1: buyer_message/high: alert (alex@marketplace.amazon.com: buyer question 1)",
        "Junk uid 1: buyer_message/high: flag",
        "Junk uid 1: buyer_message/high: rescue to INBOX",
    ]
    assert len(dovecot.uids("Junk")) == 1
    assert rows(db.path) == 0


def test_uidvalidity_change_notifies_nothing_twice(dovecot, db: Database) -> None:  # type: ignore[no-untyped-def]
    for n in range(3):
        dovecot.append("INBOX", mail("buyer question", n))
    make_daemon(dovecot.imap_settings(), db).run_once()
    dovecot.reset_uidvalidity("INBOX")
    dovecot.append("INBOX", mail("buyer question", 9))
    reports = make_daemon(dovecot.imap_settings(), db).run_once()
    inbox = next(r for r in reports if r.folder == "INBOX")
    assert inbox.resynced
    assert rows(db.path) == 4
    assert alerts(db.path) == 4


def test_backlog_on_first_start_is_history_with_one_summary(dovecot, db: Database) -> None:  # type: ignore[no-untyped-def]
    now = datetime.now(UTC)
    for n in range(4):
        dovecot.append("INBOX", mail("buyer old", n), date=now - timedelta(days=2 + n))
    dovecot.append("INBOX", mail("buyer fresh", 1), date=now - timedelta(hours=1))
    notifier = OutboxNotifier()
    make_daemon(dovecot.imap_settings(), db, notifier).run_once()
    make_daemon(dovecot.imap_settings(), db, notifier).run_once()
    assert count(db.path, "SELECT COUNT(*) FROM messages WHERE history = 1") == 4
    assert alerts(db.path) == 1
    assert len(notifier.operator) == 1
    assert "4 older messages" in notifier.operator[0]


@pytest.mark.parametrize("stage", STAGES)
def test_crash_at_each_stage_then_rerun(dovecot, db: Database, stage: str) -> None:  # type: ignore[no-untyped-def]
    for n in range(5):
        dovecot.append("INBOX", mail("buyer question", n))
    for n in range(3):
        dovecot.append("Junk", mail("buyer question", 10 + n))
    dovecot.append("Junk", mail("phish", 20))
    imap = dovecot.imap_settings(fetch_batch=2)
    calls: list[str] = []

    def crash(name: str) -> None:
        calls.append(name)
        if name == stage and calls.count(name) == 2:
            raise RuntimeError(f"crash at {name}")

    with pytest.raises(RuntimeError):
        make_daemon(imap, db, hook=crash).run_once()
    make_daemon(imap, db).run_once()
    make_daemon(imap, db).run_once()
    assert rows(db.path) == 9
    assert alerts(db.path) == 8
    assert len(dovecot.uids("INBOX")) == 8
    assert len(dovecot.uids("Junk")) == 1


# -- the loop ----------------------------------------------------------------------------


@pytest.mark.parametrize("connections", [1, 2])
def test_mail_arriving_during_idle_is_decided_within_seconds(  # type: ignore[no-untyped-def]
    dovecot, db: Database, running, connections: int
) -> None:
    running(dovecot.imap_settings(max_connections=connections))
    assert wait_until(lambda: count(db.path, "SELECT COUNT(*) FROM folders") == 3)
    dovecot.append("INBOX", uid_mail("buyer question"))
    assert wait_until(lambda: rows(db.path) == 1)
    dovecot.append("Junk", uid_mail("buyer question"))
    dovecot.append("Junk", uid_mail("phish"))
    assert wait_until(lambda: rows(db.path) == 3)
    assert wait_until(lambda: len(dovecot.uids("INBOX")) == 2)
    assert len(dovecot.uids("Junk")) == 1
    assert alerts(db.path) == 2


def test_server_restart_mid_idle_reconnects_and_misses_nothing(  # type: ignore[no-untyped-def]
    dovecot, db: Database, running
) -> None:
    running(dovecot.imap_settings())
    dovecot.append("INBOX", uid_mail("buyer before"))
    assert wait_until(lambda: rows(db.path) == 1)
    dovecot.stop()
    drop_into_maildir(dovecot.maildir("INBOX"), uid_mail("buyer while down"))
    time.sleep(1.0)  # the daemon notices and backs off
    dovecot.start()
    dovecot.append("INBOX", uid_mail("buyer after"))
    assert wait_until(lambda: rows(db.path) == 3)
    assert alerts(db.path) == 3


def test_repeated_login_failures_tell_the_operator_once(  # type: ignore[no-untyped-def]
    dovecot, db: Database, running
) -> None:
    notifier = OutboxNotifier()
    running(dovecot.imap_settings(password="wrong"), notifier=notifier)
    assert wait_until(lambda: len(notifier.operator) == 1)
    time.sleep(1.5)
    assert len(notifier.operator) == 1
    assert "refused 3 logins" in notifier.operator[0]
    assert "wrong" not in notifier.operator[0]


def drop_into_maildir(maildir: Path, raw: bytes) -> None:
    """Deliver as a local delivery agent would while the IMAP server is down."""
    owner = maildir.stat()
    name = f"{time.time():.0f}.{uuid.uuid4().hex}.test"
    tmp = maildir / "tmp" / name
    tmp.write_bytes(raw)
    os.chown(tmp, owner.st_uid, owner.st_gid)
    tmp.rename(maildir / "new" / name)


# -- a real process ------------------------------------------------------------------------


def spawn(account_env: dict[str, str], state_dir: Path, *extra: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, **account_env, "TRIAGE_STATE_DIR": str(state_dir)}
    with (state_dir / "daemon.log").open("ab") as log:
        return subprocess.Popen(
            [sys.executable, __file__, *extra], env=env, stdout=log, stderr=subprocess.STDOUT
        )


def test_sigterm_exits_promptly_with_state_committed(dovecot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    for n in range(3):
        dovecot.append("INBOX", mail("buyer question", n))
    process = spawn(dovecot.env(), tmp_path)
    try:
        assert wait_until(lambda: rows(tmp_path / "triage.db") == 3)
        time.sleep(0.5)  # now idling
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert rows(tmp_path / "triage.db") == 3
    assert count(tmp_path / "triage.db", "SELECT MAX(last_uid) FROM folders") == 3


def test_sigkill_mid_backfill_then_restart_loses_and_doubles_nothing(  # type: ignore[no-untyped-def]
    dovecot, tmp_path: Path
) -> None:
    total = 120
    with dovecot.client() as client:
        for n in range(total):
            client.append("Junk" if n % 4 == 0 else "INBOX", mail("buyer question", n))
    db_path = tmp_path / "triage.db"
    process = spawn(dovecot.env(), tmp_path, "--slow")
    try:
        assert wait_until(lambda: rows(db_path) >= 10)
    finally:
        process.kill()
        process.wait()
    assert rows(db_path) < total
    restarted = spawn(dovecot.env(), tmp_path, "--once")
    assert restarted.wait(timeout=60) == 0
    assert rows(db_path) == total
    assert count(db_path, "SELECT COUNT(DISTINCT fingerprint) FROM messages") == total
    assert alerts(db_path) == total
    assert len(dovecot.uids("Junk")) == 0
    assert len(dovecot.uids("INBOX")) == total


def main(argv: list[str]) -> int:
    """A daemon process with the stand-in pipeline (for the signal tests)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    faulthandler.register(signal.SIGUSR1)
    imap = imap_from_env(os.environ)
    assert imap is not None
    imap = ImapSettings(**{**imap.__dict__, "fetch_batch": 5})
    state_dir = Path(os.environ["TRIAGE_STATE_DIR"])
    db = Database(state_dir / "triage.db")
    slow = (lambda stage: time.sleep(0.05)) if "--slow" in argv else None
    daemon = make_daemon(imap, db, hook=slow)
    if "--once" in argv:
        daemon.run_once()
        return 0
    daemon.install_signal_handlers()
    daemon.run_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))


# -- the real command ------------------------------------------------------------------------


def triage(*args: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "triage.cli", *args], env={**os.environ, **env},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )


def model_shipped() -> bool:
    from triage.settings import default_model_dir

    return (default_model_dir() / "triage-model.json").exists()


def test_run_without_a_mailbox_says_so_and_fails(tmp_path: Path) -> None:
    """A misspelt variable or a missing env file is an error, never a quiet demo."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIAGE_")}
    result = subprocess.run(
        [sys.executable, "-m", "triage.cli", "run"],
        env={**env, "TRIAGE_STATE_DIR": str(tmp_path), "TRIAGE_IMAP_HOTS": "imap.example.com"},
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert result.returncode != 0
    assert ("no mailbox configured: set TRIAGE_IMAP_HOST or run `triage init`"
            in result.stderr)
    assert "Suspected phishing" not in result.stdout


@pytest.mark.skipif(not model_shipped(), reason="no trained model in models/")
def test_triage_run_once_then_daemon_then_sigterm(dovecot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    env = {**dovecot.env(), "TRIAGE_STATE_DIR": str(tmp_path)}
    for n in range(3):
        dovecot.append("INBOX", mail("buyer question", n))
    dovecot.append("Junk", mail("phish your account is on hold", 9))
    once = triage("run", "--once", env=env)
    _, err = once.communicate(timeout=120)
    assert once.returncode == 0, err.decode()
    assert rows(tmp_path / "triage.db") == 4
    daemon = triage("run", env=env)
    try:
        assert wait_until(lambda: count(tmp_path / "triage.db",
                                        "SELECT COUNT(*) FROM folders WHERE last_sync_at > ''")
                          >= 3 and daemon.poll() is None, timeout=60)
        dovecot.append("INBOX", uid_mail("buyer question"))
        assert wait_until(lambda: rows(tmp_path / "triage.db") == 5, timeout=30)
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=10) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
        daemon.communicate()
    assert len(dovecot.uids("Junk")) == 1
