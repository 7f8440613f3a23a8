"""Sync: exactly-once recording, dedupe, history, crashes at every stage.

These run against an in-memory mailbox that behaves like an IMAP folder set (UIDs
only grow, a move gives the message a new UID in its destination), so they are fast;
the same scenarios against the real Dovecot are in ``test_daemon.py``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime

import pytest

from triage.mailbox import Fetched, Folder, FolderStatus
from triage.message import Message
from triage.settings import ImapSettings
from triage.state import Database
from triage.sync import STAGES, Syncer, fingerprint, unreadable_verdict
from triage.verdict import Action, Verdict

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


# -- an in-memory mailbox ------------------------------------------------------------------


@dataclass
class Stored:
    uid: int
    raw: bytes
    internaldate: datetime
    flags: set[str] = field(default_factory=set)




class MemoryMailbox:
    def __init__(self) -> None:
        self.folders: dict[str, dict[int, Stored]] = {"INBOX": {}, "Junk": {}}
        self.uidnext: dict[str, int] = {"INBOX": 1, "Junk": 1}
        self.uidvalidity: dict[str, int] = {"INBOX": 1, "Junk": 1}

    def append(self, folder: str, raw: bytes, when: datetime = NOW) -> int:
        uid = self.uidnext[folder]
        self.uidnext[folder] += 1
        self.folders[folder][uid] = Stored(uid, raw, when)
        return uid

    def reset_uidvalidity(self, folder: str) -> None:
        """What a server does after a rebuild: same mail, new UIDs."""
        old = sorted(self.folders[folder].values(), key=lambda s: s.uid)
        self.folders[folder] = {}
        self.uidnext[folder] = 1
        self.uidvalidity[folder] += 1
        for stored in old:
            self.append(folder, stored.raw, stored.internaldate)

    def raws(self, folder: str) -> list[bytes]:
        return [s.raw for s in self.folders[folder].values()]

    def status(self, folder: str) -> FolderStatus:
        count = len(self.folders[folder])
        return FolderStatus(self.uidvalidity[folder], self.uidnext[folder], count)

    def uids_after(self, folder: str, last_uid: int, since: date | None) -> list[int]:
        return [
            s.uid
            for s in self.folders[folder].values()
            if s.uid > last_uid and (since is None or s.internaldate.date() >= since)
        ]

    def fetch(self, folder: str, uids: Sequence[int]) -> list[Fetched]:
        box = self.folders[folder]
        return [
            Fetched(u, box[u].raw, len(box[u].raw), box[u].internaldate, False)
            for u in uids
            if u in box
        ]

    def add_flags(self, folder: str, uids: Sequence[int], flags: Sequence[str]) -> None:
        for uid in uids:
            if uid in self.folders[folder]:
                self.folders[folder][uid].flags.update(flags)

    def move(self, folder: str, uids: Sequence[int], destination: str) -> None:
        for uid in uids:
            stored = self.folders[folder].pop(uid, None)
            if stored is not None:
                new = self.append(destination, stored.raw, stored.internaldate)
                self.folders[destination][new].flags = stored.flags

    rescue = move

    def flags(self, folder: str, uids: Sequence[int]) -> dict[int, tuple[str, ...]]:
        box = self.folders[folder]
        return {u: tuple(box[u].flags) for u in uids if u in box}


# -- a stand-in pipeline and a notifier that writes in the sync's transaction ---------------


class KeywordPipeline:
    """Subject keywords decide; 'phish' is suspicious, Amazon mail in junk is rescued."""

    def decide(self, messages: Sequence[Message], folder: str, role: str) -> list[Verdict]:
        return [self._one(m, role) for m in messages]

    def _one(self, message: Message, role: str) -> Verdict:
        subject = message.subject.lower()
        if "phish" in subject:
            return Verdict("account_health", "critical", 0.9, suspicious=True)
        if "buyer" in subject:
            actions = [Action("alert"), Action("flag")]
            if role == "junk":
                actions.append(Action("rescue", "INBOX"))
            return Verdict("buyer_message", "high", 0.9, amazon=True, actions=actions)
        return Verdict("other", "low", 0.5, actions=[Action("digest")])


class OutboxNotifier:
    def __init__(self) -> None:
        self.operator: list[str] = []

    def after_verdict(
        self,
        conn: sqlite3.Connection,
        row_id: int,
        message: Message,
        verdict: Verdict,
        *,
        history: bool,
        now: datetime,
    ) -> None:
        conn.execute("CREATE TABLE IF NOT EXISTS test_outbox (row_id INTEGER UNIQUE)")
        conn.execute("CREATE TABLE IF NOT EXISTS test_clocks (row_id INTEGER, answered INTEGER)")
        if not history and any(a.kind == "alert" for a in verdict.actions):
            conn.execute("INSERT INTO test_outbox VALUES (?)", (row_id,))
        if verdict.type == "buyer_message":
            conn.execute("INSERT INTO test_clocks VALUES (?, 0)", (row_id,))

    def notify_operator(
        self, db: Database | sqlite3.Connection, text: str, now: datetime
    ) -> None:
        self.operator.append(text)

    def open_clock_rows(self, conn: sqlite3.Connection) -> list[ClockRow]:
        try:
            found = conn.execute(
                "SELECT m.id, m.folder, m.uidvalidity, m.uid FROM test_clocks c "
                "JOIN messages m ON m.id = c.row_id WHERE c.answered = 0"
            ).fetchall()
        except sqlite3.OperationalError:
            return []
        return [ClockRow(*row) for row in found]

    def mark_answered(
        self, conn: sqlite3.Connection, row_ids: Sequence[int], now: datetime
    ) -> None:
        conn.executemany("UPDATE test_clocks SET answered = 1 WHERE row_id = ?",
                         [(r,) for r in row_ids])


@dataclass(frozen=True)
class ClockRow:
    message_row: int
    folder: str
    uidvalidity: int | None
    uid: int | None


def open_clocks(db: Database) -> int:
    return count(db, "SELECT COUNT(*) FROM test_clocks WHERE answered = 0")


def count(db: Database, sql: str) -> int:
    try:
        return int(db.conn.execute(sql).fetchone()[0])
    except sqlite3.OperationalError:
        return 0


def outbox(db: Database) -> int:
    return count(db, "SELECT COUNT(*) FROM test_outbox")


def rows(db: Database) -> list[sqlite3.Row]:
    return db.conn.execute("SELECT * FROM messages ORDER BY id").fetchall()


def mail(subject: str, n: int, *, message_id: bool = True, days_ago: float = 0) -> bytes:
    msg = EmailMessage()
    msg["From"] = "Alex - Amazon Marketplace <alex@marketplace.amazon.com>"
    msg["To"] = "seller@example.com"
    msg["Subject"] = f"{subject} {n}"
    msg["Date"] = format_datetime(NOW - timedelta(days=days_ago))
    if message_id:
        msg["Message-ID"] = f"<m{n}.{subject.replace(' ', '-')}@example.com>"
    msg.set_content(f"Message number {n} about {subject}.\n")
    return msg.as_bytes()


IMAP = ImapSettings(host="imap.example.com", user="seller", password="x", fetch_batch=3)
INBOX = Folder("INBOX", "inbox")
JUNK = Folder("Junk", "junk")


@pytest.fixture
def db() -> Database:
    return Database(":memory:")


def syncer(db: Database, box: MemoryMailbox, notifier: OutboxNotifier, **kw: object) -> Syncer:
    kw.setdefault("clock", lambda: NOW)
    return Syncer(db, box, KeywordPipeline(), IMAP, notifier=notifier, **kw)  # type: ignore[arg-type]


# -- tests ---------------------------------------------------------------------------------


def test_new_mail_is_recorded_once_and_alerted_once(db: Database) -> None:
    box, notifier = MemoryMailbox(), OutboxNotifier()
    for n in range(7):
        box.append("INBOX", mail("buyer question", n))
    report = syncer(db, box, notifier).sync_folder(INBOX)
    assert report.recorded == 7
    again = syncer(db, box, notifier).sync_folder(INBOX)
    assert again.fetched == 0
    assert len(rows(db)) == 7
    assert outbox(db) == 7
    assert all(r["account"] == "seller@imap.example.com" for r in rows(db))


@pytest.mark.parametrize(
    ("raw_a", "raw_b", "same"),
    [
        (mail("buyer", 1), mail("buyer", 1), True),
        (mail("buyer", 1), mail("buyer", 2), False),
        (mail("buyer", 1, message_id=False), mail("buyer", 1, message_id=False), True),
        (mail("buyer", 1, message_id=False), mail("buyer", 2, message_id=False), False),
        (b"<AB@X.com>", b"<ab@x.com>", True),
    ],
)
def test_fingerprint(raw_a: bytes, raw_b: bytes, same: bool) -> None:
    from triage.message import parse

    def fp(raw: bytes) -> str:
        if raw.startswith(b"<"):
            return fingerprint(Message(message_id=raw.decode()))
        return fingerprint(parse(raw), raw)

    assert (fp(raw_a) == fp(raw_b)) is same


def test_rescue_moves_genuine_mail_and_leaves_phishing_in_junk(db: Database) -> None:
    box, notifier = MemoryMailbox(), OutboxNotifier()
    box.append("Junk", mail("buyer question", 1))
    box.append("Junk", mail("phish your account", 2))
    s = syncer(db, box, notifier)
    s.sync_folder(JUNK)
    assert [b"phish" in r for r in box.raws("Junk")] == [True]
    assert len(box.raws("INBOX")) == 1
    # The rescued mail reappears in INBOX with a new UID: recognised, not notified again.
    report = s.sync_folder(INBOX)
    assert report.duplicates == 1
    # The row follows the message to where it now is.
    assert [(r["folder"], r["rescued"], r["suspicious"]) for r in rows(db)] == [
        ("INBOX", 1, 0),
        ("Junk", 0, 1),
    ]
    assert outbox(db) == 1


def test_flag_action_flags_the_message(db: Database) -> None:
    box, notifier = MemoryMailbox(), OutboxNotifier()
    uid = box.append("INBOX", mail("buyer question", 1))
    syncer(db, box, notifier).sync_folder(INBOX)
    assert "\\Flagged" in box.folders["INBOX"][uid].flags


def test_answered_flag_stops_the_reply_clock_even_after_a_rescue(db: Database) -> None:
    box, notifier = MemoryMailbox(), OutboxNotifier()
    box.append("INBOX", mail("buyer question", 1))
    box.append("Junk", mail("buyer question", 2))
    s = syncer(db, box, notifier)
    s.sync_all([INBOX, JUNK, INBOX])
    assert open_clocks(db) == 2
    box.add_flags("INBOX", list(box.folders["INBOX"]), ["\\Answered"])
    s.sync_all([INBOX, JUNK])
    assert open_clocks(db) == 0


def test_dry_run_prints_actions_and_changes_nothing(db: Database) -> None:
    box, notifier = MemoryMailbox(), OutboxNotifier()
    box.append("Junk", mail("buyer question", 1))
    printed: list[str] = []
    syncer(db, box, notifier, dry_run=True, out=printed.append).sync_folder(JUNK)
    assert printed == [
        # What the seller would hear, then what would be done in the mailbox.
        "Junk uid 1: buyer_message/high: alert (alex@marketplace.amazon.com: buyer question 1)",
        "Junk uid 1: buyer_message/high: flag",
        "Junk uid 1: buyer_message/high: rescue to INBOX",
    ]
    assert len(box.raws("Junk")) == 1
    assert box.folders["Junk"][1].flags == set()
    assert rows(db) == []
    assert outbox(db) == 0


def test_uidvalidity_change_resyncs_without_notifying_twice(db: Database) -> None:
    box, notifier = MemoryMailbox(), OutboxNotifier()
    for n in range(4):
        box.append("INBOX", mail("buyer question", n))
    syncer(db, box, notifier).sync_folder(INBOX)
    box.reset_uidvalidity("INBOX")
    box.append("INBOX", mail("buyer question", 99))
    report = syncer(db, box, notifier).sync_folder(INBOX)
    assert report.resynced
    assert (report.recorded, report.duplicates) == (1, 4)
    assert len(rows(db)) == 5
    assert outbox(db) == 5


def test_first_start_stores_old_mail_as_history_with_one_summary(db: Database) -> None:
    box, notifier = MemoryMailbox(), OutboxNotifier()
    for n in range(5):
        box.append("INBOX", mail("buyer old", n), NOW - timedelta(days=3 + n))
    box.append("INBOX", mail("buyer ancient", 1), NOW - timedelta(days=90))
    box.append("INBOX", mail("buyer recent", 1), NOW - timedelta(hours=2))
    report = syncer(db, box, notifier).sync_folder(INBOX)
    # Past the 30-day backfill window: not even fetched.
    assert report.fetched == 6
    assert [r["history"] for r in rows(db)] == [1, 1, 1, 1, 1, 0]
    assert outbox(db) == 1
    assert len(notifier.operator) == 1
    assert "5 older messages" in notifier.operator[0]
    # Later mail is never history, and the summary is not repeated.
    box.append("INBOX", mail("buyer new", 1), NOW)
    syncer(db, box, notifier).sync_folder(INBOX)
    assert outbox(db) == 2
    assert len(notifier.operator) == 1


def test_unreadable_message_is_recorded_and_does_not_stop_the_batch(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    import triage.sync

    real_parse = triage.sync.parse

    def parse(raw: bytes) -> Message:
        if b"broken" in raw:
            return Message(size=len(raw), error="unreadable message: test")
        return real_parse(raw)

    monkeypatch.setattr(triage.sync, "parse", parse)
    box, notifier = MemoryMailbox(), OutboxNotifier()
    box.append("INBOX", mail("buyer question", 1))
    box.append("INBOX", mail("broken", 2))
    box.append("INBOX", mail("buyer question", 3))
    report = syncer(db, box, notifier).sync_folder(INBOX)
    assert (report.recorded, report.errors) == (3, 1)
    assert [r["error"] for r in rows(db)] == [None, "unreadable message: test", None]
    assert outbox(db) == 2


class Crash(Exception):
    pass


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("batch", [1, 2])
def test_crash_at_any_stage_loses_nothing_and_doubles_nothing(
    db: Database, stage: str, batch: int
) -> None:
    box, notifier = MemoryMailbox(), OutboxNotifier()
    for n in range(5):
        box.append("INBOX", mail("buyer question", n))
    for n in range(4):
        box.append("Junk", mail("buyer question", 10 + n))
    box.append("Junk", mail("phish", 20))
    seen: list[str] = []

    def hook(name: str) -> None:
        seen.append(name)
        if name == stage and seen.count(name) == batch:
            raise Crash(name)

    with pytest.raises(Crash):
        syncer(db, box, notifier, hook=hook).sync_all([JUNK, INBOX])
    # The restarted daemon syncs everything again.
    syncer(db, box, notifier).sync_all([JUNK, INBOX, JUNK, INBOX])
    assert len(rows(db)) == 10
    assert len({r["fingerprint"] for r in rows(db)}) == 10
    assert outbox(db) == 9
    assert len(box.raws("Junk")) == 1
    assert len(box.raws("INBOX")) == 9
    assert all("\\Flagged" in s.flags for s in box.folders["INBOX"].values())


@pytest.mark.parametrize("stage", STAGES)
def test_crash_during_a_backfill_still_gives_exactly_one_summary(db: Database, stage: str) -> None:
    box, notifier = MemoryMailbox(), OutboxNotifier()
    for n in range(7):
        box.append("INBOX", mail("buyer old", n), NOW - timedelta(days=2 + n))
    calls: list[str] = []

    def hook(name: str) -> None:
        calls.append(name)
        if name == stage and calls.count(name) == 3:  # the last of three batches
            raise Crash(name)

    with pytest.raises(Crash):
        syncer(db, box, notifier, hook=hook).sync_folder(INBOX)
    syncer(db, box, notifier).sync_folder(INBOX)
    syncer(db, box, notifier).sync_folder(INBOX)
    assert len(notifier.operator) == 1
    assert "7 older messages" in notifier.operator[0]
    assert outbox(db) == 0


# -- unreadable is never silent ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("sender", "subject", "alerted"),
    [
        ("atoz-guarantee-no-reply@amazon.com", "A-to-z Guarantee claim filed", True),
        ("newsletter@example.com", "Our spring sale", False),
    ],
)
def test_an_unreadable_mail_that_presents_as_amazon_is_alerted(
    sender: str, subject: str, alerted: bool
) -> None:
    message = Message(sender_address=sender, sender_domain=sender.partition("@")[2],
                      subject=subject, error="unreadable message: broken beyond repair")
    verdict = unreadable_verdict(message.error, message)
    assert verdict.error
    assert (verdict.severity == "critical") is alerted
    assert any(a.kind == "alert" for a in verdict.actions) is alerted


def test_header_less_fragments_keep_rows_of_their_own(db: Database) -> None:
    box, notifier = MemoryMailbox(), OutboxNotifier()
    for fragment in (b"X-Note: one\n", b"X-Note: two\n", b"\n\nsame text", b"\n\nsame text\n\n."):
        box.append("INBOX", fragment)
    report = syncer(db, box, notifier).sync_folder(INBOX)
    assert report.recorded == 4
    assert len(rows(db)) == 4
