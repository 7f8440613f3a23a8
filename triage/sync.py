"""Per-folder sync: fetch what is new, decide, act, and record it exactly once.

Each watched folder keeps its UIDVALIDITY and the last UID seen. New UIDs are fetched
in batches (each mail's opening first, the whole mail, size-capped, only when the screen
does not settle it: see :meth:`Syncer._screened`), parsed and decided; the mailbox actions
(flag, move, rescue) are applied, and then ONE transaction per batch inserts the
``messages`` rows, queues the notifications and advances the folder's last UID.

A crash anywhere before that commit re-does the batch on the next run: actions are
idempotent, and rows are deduplicated on ``(account, fingerprint)``, so a message is
never lost and never notified twice - not after a crash, not after a UIDVALIDITY
reset, not when a rescued message shows up again in the inbox.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol, TypeVar

from triage import corrections, metrics, progress
from triage.corrections import Recall
from triage.decoder import Decoder
from triage.errors import TriageError
from triage.message import Message, parse
from triage.screen import OPENING_BYTES, SETTLED, screen
from triage.settings import ImapSettings
from triage.state import Database, register_schema
from triage.trust import presents_as_amazon
from triage.verdict import Action, Verdict

log = logging.getLogger(__name__)

# Named points of a batch where a test may inject a crash (see ``Syncer.hook``).
STAGES: tuple[str, ...] = ("fetched", "decided", "acted", "committed")

FLAGGED = "\\Flagged"
ANSWERED = "\\Answered"
# replyclock.NO_RESPONSE_KEYWORD, lower-cased: the seller's "no response needed".
NO_RESPONSE_NEEDED = "$noresponseneeded"
SUMMARY_CHARS = 280
# A backlog this long (a first start, a resync) shows its progress.
PROGRESS_FROM = 500
BODY_PREFIX = 2048

register_schema(
    """
    CREATE TABLE IF NOT EXISTS folders (
        account TEXT NOT NULL,
        folder TEXT NOT NULL,
        uidvalidity INTEGER NOT NULL,
        last_uid INTEGER NOT NULL DEFAULT 0,
        last_sync_at TEXT,
        first_sync_at TEXT NOT NULL,
        -- history rows recorded but not yet summarised to the operator
        history_pending INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (account, folder)
    );
    """
)


# -- what sync needs from its neighbours -------------------------------------------------


class FolderLike(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def role(self) -> str: ...


class StatusLike(Protocol):
    @property
    def uidvalidity(self) -> int: ...
    @property
    def uidnext(self) -> int: ...


class FetchedLike(Protocol):
    @property
    def uid(self) -> int: ...
    @property
    def raw(self) -> bytes: ...
    @property
    def internaldate(self) -> datetime | None: ...


class MailboxLike(Protocol):
    """The part of :class:`triage.mailbox.Mailbox` that sync uses."""

    def status(self, folder: str) -> Any: ...
    def uids_after(self, folder: str, last_uid: int, since: date | None) -> Sequence[int]: ...
    def fetch(self, folder: str, uids: Sequence[int]) -> Iterable[Any]: ...
    # Optional, as a pair: fetch_openings(folder, uids, opening), the first bytes of
    # each message, and fetch_rest(folder, openings), those made whole (see _screened).
    def add_flags(self, folder: str, uids: Sequence[int], flags: Sequence[str]) -> Any: ...
    def flags(self, folder: str, uids: Sequence[int]) -> dict[int, tuple[str, ...]]: ...
    def move(self, folder: str, uids: Sequence[int], dest: str) -> Any: ...
    def rescue(self, folder: str, uids: Sequence[int], dest: str) -> Any: ...


class PipelineLike(Protocol):
    def decide(
        self, messages: Sequence[Message], folder: str, role: str,
        predictions: Sequence[Any] | None = None, corrections: Any = None,
    ) -> list[Verdict]: ...


class Notifier(Protocol):
    """The notification hooks sync calls; :func:`default_notifier` binds ``triage.notify``."""

    def after_verdict(
        self,
        conn: sqlite3.Connection,
        row_id: int,
        message: Message,
        verdict: Verdict,
        *,
        history: bool,
        now: datetime,
    ) -> None: ...

    def notify_operator(
        self, db: Database | sqlite3.Connection, text: str, now: datetime
    ) -> None: ...

    def open_clock_rows(self, conn: sqlite3.Connection) -> Sequence[Any]:
        """Rows (``message_row``, ``folder``, ``uidvalidity``, ``uid``) awaiting a reply."""
        ...

    def mark_answered(
        self, conn: sqlite3.Connection, row_ids: Sequence[int], now: datetime
    ) -> None:
        ...

    def mark_no_response(
        self, conn: sqlite3.Connection, row_ids: Sequence[int], now: datetime
    ) -> None:
        ...


def default_notifier() -> Notifier:
    """The hooks of :mod:`triage.notify`; the module itself implements them."""
    from triage import notify

    return notify


# -- values --------------------------------------------------------------------------------


@dataclass(frozen=True)
class FolderState:
    """What the state database remembers of one folder."""

    account: str
    folder: str
    uidvalidity: int
    last_uid: int
    first_sync_at: datetime
    last_sync_at: datetime | None = None


@dataclass
class SyncReport:
    """What one sync of one folder did; the daemon logs it, ``--once`` prints it."""

    folder: str
    fetched: int = 0
    recorded: int = 0
    duplicates: int = 0
    errors: int = 0
    history: int = 0
    resynced: bool = False
    actions: list[str] = field(default_factory=list)

    def describe(self) -> str:
        parts = [f"{self.folder}: {self.fetched} fetched, {self.recorded} new"]
        if self.duplicates:
            parts.append(f"{self.duplicates} already known")
        if self.history:
            parts.append(f"{self.history} history")
        if self.errors:
            parts.append(f"{self.errors} unreadable")
        if self.resynced:
            parts.append("resynced after a UIDVALIDITY change")
        return ", ".join(parts)


@dataclass
class _Item:
    """One fetched message on its way through a batch."""

    uid: int
    message: Message
    fingerprint: str
    received_at: datetime
    history: bool
    verdict: Verdict | None = None
    # The model's answer when a decoder computed it with the parse; else the pipeline asks.
    prediction: Any = None


# -- helpers -----------------------------------------------------------------------------


def account_of(imap: ImapSettings) -> str:
    """The key every row is filed under, so one database can serve several mailboxes."""
    return imap.account


def fingerprint(message: Message, raw: bytes = b"") -> str:
    """Normalised Message-ID, else a hash of what identifies the mail's content."""
    mid = message.message_id.strip().strip("<>").strip().lower()
    if mid:
        return f"mid:{mid}"
    digest = hashlib.sha256()
    if message.error or not (message.date or message.subject or message.text.strip()):
        # Nothing parsed, or a fragment with no date, subject or text: the raw bytes are
        # all that identifies it (two such fragments must not merge into one row).
        digest.update(raw)
    else:
        when = message.date.isoformat() if message.date else ""
        for part in (message.sender_address, when, message.subject, message.text[:BODY_PREFIX]):
            digest.update(part.encode("utf-8", "replace") + b"\0")
    return f"sha256:{digest.hexdigest()}"


def aware(moment: datetime | None, default: datetime) -> datetime:
    """A timezone-aware UTC datetime; naive values are the server's local time."""
    if moment is None:
        return default
    if moment.tzinfo is None:
        moment = moment.astimezone()
    return moment.astimezone(UTC)


def _summary(text: str) -> str:
    # Only the opening is kept, so only the opening is tidied (bodies run to 20 K characters).
    return " ".join(text[: SUMMARY_CHARS * 4].split())[:SUMMARY_CHARS]


T = TypeVar("T")


def _subject_of(message: Message) -> str:
    return f"{message.sender_address or 'unknown sender'}: {message.subject or '(no subject)'}"


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def unreadable_verdict(error: str, message: Message | None = None) -> Verdict:
    """What a message that could not be read is recorded as: never acted on in the
    mailbox, and never silent. It shows in the digest as "could not read" with its
    sender and subject; when it presents as Amazon (sender, name or subject), it may
    be a claim or a suspension, so it is pushed at once, as critical."""
    if message is not None and presents_as_amazon(message)[0]:
        return Verdict(type="other", severity="critical", confidence=0.0, decided_by="error",
                       error=error, reasons=["could not read a mail that presents as Amazon"],
                       actions=[Action("alert")])
    return Verdict(type="other", severity="low", confidence=0.0, decided_by="error", error=error)


# -- folder state --------------------------------------------------------------------------


def load_folder(db: Database, account: str, folder: str) -> FolderState | None:
    row = db.conn.execute(
        "SELECT * FROM folders WHERE account = ? AND folder = ?", (account, folder)
    ).fetchone()
    if row is None:
        return None
    last = row["last_sync_at"]
    return FolderState(
        account=account,
        folder=folder,
        uidvalidity=row["uidvalidity"],
        last_uid=row["last_uid"],
        first_sync_at=datetime.fromisoformat(row["first_sync_at"]),
        last_sync_at=datetime.fromisoformat(last) if last else None,
    )


def _save_folder(conn: sqlite3.Connection, state: FolderState) -> None:
    conn.execute(
        """
        INSERT INTO folders (account, folder, uidvalidity, last_uid, last_sync_at, first_sync_at)
        VALUES (?, ?, ?, ?, ?, ?)
        ON CONFLICT (account, folder) DO UPDATE SET
            uidvalidity = excluded.uidvalidity,
            last_uid = excluded.last_uid,
            last_sync_at = excluded.last_sync_at
        """,
        (
            state.account,
            state.folder,
            state.uidvalidity,
            state.last_uid,
            state.last_sync_at.isoformat() if state.last_sync_at else None,
            state.first_sync_at.isoformat(),
        ),
    )


def _known(conn: sqlite3.Connection, account: str, fingerprints: Iterable[str]) -> set[str]:
    wanted = list(set(fingerprints))
    found: set[str] = set()
    for chunk in _chunks(wanted, 500):
        marks = ",".join("?" * len(chunk))
        rows = conn.execute(
            f"SELECT fingerprint FROM messages WHERE account = ? AND fingerprint IN ({marks})",
            (account, *chunk),
        )
        found.update(r[0] for r in rows)
    return found


# -- the sync ------------------------------------------------------------------------------


class Syncer:
    """Syncs the folders of one account into the state database.

    ``hook(stage)`` is called at each of :data:`STAGES` of every batch; tests raise from
    it to prove a crash at any point neither loses nor doubles anything.
    ``dry_run`` prints each verdict's actions through ``out`` and changes nothing.
    ``should_stop()`` is asked between batches, so a stopping daemon ends promptly.
    """

    def __init__(
        self,
        db: Database,
        mailbox: MailboxLike,
        pipeline: PipelineLike,
        imap: ImapSettings,
        *,
        notifier: Notifier | None = None,
        hook: Callable[[str], None] | None = None,
        dry_run: bool = False,
        out: Callable[[str], None] = print,
        clock: Callable[[], datetime] | None = None,
        should_stop: Callable[[], bool] | None = None,
        decoder: Decoder | None = None,
    ) -> None:
        self.db = db
        self.decoder = decoder
        self.mailbox = mailbox
        self.pipeline = pipeline
        self.imap = imap
        self.account = account_of(imap)
        self.notifier = notifier or default_notifier()
        self.hook = hook
        self.dry_run = dry_run
        self.out = out
        self.clock = clock or (lambda: datetime.now(UTC))
        self.should_stop = should_stop or (lambda: False)
        self._recall_version: tuple[int, int] | None = None
        self._recall: Recall | None = None

    # Public API ------------------------------------------------------------------------

    def sync_folder(self, folder: FolderLike) -> SyncReport:
        """Bring one folder up to date; returns what was done."""
        report = SyncReport(folder.name)
        now = self.clock()
        state, since = self._start(folder.name, now, report)
        uids = [u for u in self.mailbox.uids_after(folder.name, state.last_uid, since)
                if u > state.last_uid]
        shown = (progress.Progress(f"{folder.name}: backfill", len(uids))
                 if len(uids) >= PROGRESS_FROM else None)
        try:
            for batch in _chunks(sorted(uids), max(1, self.imap.fetch_batch)):
                if self.should_stop():
                    break  # what is left is picked up on the next start
                state = self._batch(folder, state, batch, report)
                if shown is not None:
                    shown.advance(len(batch))
        finally:
            if shown is not None:
                shown.close()
        if not self.dry_run:
            self._finish(state, report)
            self._watch_answered(state)
        return report

    def sync_all(self, folders: Iterable[FolderLike]) -> list[SyncReport]:
        return [self.sync_folder(f) for f in folders]

    # Steps -----------------------------------------------------------------------------

    def _start(
        self, folder: str, now: datetime, report: SyncReport
    ) -> tuple[FolderState, date | None]:
        """The folder's state, created or reset as needed, and the SINCE bound to search with."""
        status = self.mailbox.status(folder)
        state = load_folder(self.db, self.account, folder)
        backfill_since = (now - timedelta(days=self.imap.backfill_days)).date()
        if state is not None and state.uidvalidity == status.uidvalidity:
            return state, None
        if state is None:
            state = FolderState(self.account, folder, status.uidvalidity, 0, first_sync_at=now)
        else:
            log.warning("%s: UIDVALIDITY changed (%s -> %s); resyncing", folder,
                        state.uidvalidity, status.uidvalidity)
            report.resynced = True
            # The first start is kept: dedupe makes the resync notify nothing twice.
            state = FolderState(self.account, folder, status.uidvalidity, 0, state.first_sync_at,
                                state.last_sync_at)
        if not self.dry_run:
            with self.db.transaction() as conn:
                _save_folder(conn, state)
        return state, backfill_since

    def _batch(
        self, folder: FolderLike, state: FolderState, uids: Sequence[int], report: SyncReport
    ) -> FolderState:
        now = self.clock()
        items = self._fetch(folder.name, uids, state, report)
        self._stage("fetched")
        fresh = self._fresh(folder, state, items, report)
        self._decide(folder, fresh)
        self._stage("decided")
        self._act(folder.name, fresh, report)
        self._stage("acted")
        state = FolderState(state.account, state.folder, state.uidvalidity,
                            max(state.last_uid, *uids), state.first_sync_at, now)
        if not self.dry_run:
            self._commit(folder, state, fresh, now, report)
        self._stage("committed")
        return state

    def _fetch(
        self, folder: str, uids: Sequence[int], state: FolderState, report: SyncReport
    ) -> list[_Item]:
        history_before = state.first_sync_at - timedelta(hours=self.imap.history_grace_hours)
        if self.decoder is not None:
            fetched, decoded = self._screened(folder, uids, self.decoder)
        else:
            fetched = list(self.mailbox.fetch(folder, uids))
            decoded = [(parse(f.raw), None) for f in fetched]
        items = []
        for mail, (message, prediction) in zip(fetched, decoded, strict=True):
            received = aware(mail.internaldate, self.clock())
            items.append(_Item(
                uid=mail.uid,
                message=message,
                fingerprint=fingerprint(message, mail.raw),
                received_at=received,
                history=received < history_before,
                prediction=prediction,
            ))
        report.fetched += len(items)
        return items

    def _screened(
        self, folder: str, uids: Sequence[int], decoder: Decoder
    ) -> tuple[list[Any], list[tuple[Message, Any]]]:
        """The batch's mail, each message with the model's answer or the screen's.

        The opening of every mail is fetched first (:data:`triage.screen.OPENING_BYTES`):
        the mail it settles is never downloaded whole; the rest is, and read in full.
        """
        read_openings = getattr(self.mailbox, "fetch_openings", None)
        read_rest = getattr(self.mailbox, "fetch_rest", None)
        if read_openings is None or read_rest is None:
            # A mailbox that only hands out whole messages (the demo's).
            openings, whole = list(self.mailbox.fetch(folder, uids)), True
        else:
            openings, whole = list(read_openings(folder, uids, OPENING_BYTES)), False
        settled = [screen(o.raw, o.size, whole or not o.truncated) for o in openings]
        wanted = [o for o, s in zip(openings, settled, strict=True) if s is None]
        rest = wanted if whole or read_rest is None or not wanted else read_rest(folder, wanted)
        complete = {f.uid: f for f in rest}
        kept = [(o, s) for o, s in zip(openings, settled, strict=True)
                if s is not None or o.uid in complete]  # a UID gone meanwhile is skipped
        read = iter(decoder.read([complete[o.uid].raw for o, s in kept if s is None]))
        fetched: list[Any] = []
        decoded: list[tuple[Message, Any]] = []
        for opening, message in kept:
            if message is not None:
                fetched.append(opening)
                decoded.append((message, SETTLED))
            else:
                fetched.append(complete[opening.uid])
                found = next(read)
                decoded.append((found.message, found.prediction))
        return fetched, decoded

    def _fresh(
        self, folder: FolderLike, state: FolderState, items: list[_Item], report: SyncReport
    ) -> list[_Item]:
        """Items not yet recorded (nor repeated within the batch)."""
        known = _known(self.db.conn, self.account, (i.fingerprint for i in items))
        fresh, moved = [], []
        for item in items:
            if item.fingerprint in known:
                report.duplicates += 1
                moved.append(item)
                continue
            known.add(item.fingerprint)
            fresh.append(item)
        if moved and not self.dry_run:
            self._relocate(folder, state, moved)
        return fresh

    def _relocate(self, folder: FolderLike, state: FolderState, items: list[_Item]) -> None:
        """A known message seen at a new place (rescued, resynced): its row follows it,
        so its flags can still be watched."""
        with self.db.transaction() as conn:
            conn.executemany(
                "UPDATE messages SET folder = ?, folder_role = ?, uidvalidity = ?, uid = ? "
                "WHERE account = ? AND fingerprint = ?",
                [(folder.name, folder.role, state.uidvalidity, i.uid, self.account, i.fingerprint)
                 for i in items],
            )

    def _decide(self, folder: FolderLike, items: list[_Item]) -> None:
        readable = [i for i in items if not i.message.error]
        for item in items:
            if item.message.error:
                item.verdict = unreadable_verdict(item.message.error, item.message)
        if not readable:
            return
        messages = [i.message for i in readable]
        extra = self._corrections()
        try:
            if self.decoder is not None:
                verdicts = self.pipeline.decide(messages, folder.name, folder.role,
                                                predictions=[i.prediction for i in readable],
                                                **extra)
            else:
                verdicts = self.pipeline.decide(messages, folder.name, folder.role, **extra)
        except TriageError as exc:
            log.warning("%s: deciding a batch failed (%s); deciding one by one", folder.name, exc)
            verdicts = [self._decide_one(folder, i.message, extra) for i in readable]
        for item, verdict in zip(readable, verdicts, strict=True):
            item.verdict = verdict

    def _corrections(self) -> dict[str, Any]:
        """``corrections=`` the account's active ones, loaded again only when they changed;
        nothing when there are none."""
        seen = corrections.version(self.db, self.account)
        if seen != self._recall_version:
            self._recall_version = seen
            self._recall = Recall.load(self.db, self.account) or None
        return {"corrections": self._recall} if self._recall else {}

    def _decide_one(self, folder: FolderLike, message: Message, extra: dict[str, Any]) -> Verdict:
        try:
            return self.pipeline.decide([message], folder.name, folder.role, **extra)[0]
        except TriageError as exc:
            return unreadable_verdict(f"could not decide: {exc}")

    def _act(self, folder: str, items: list[_Item], report: SyncReport) -> None:
        """Flag first, then move or rescue (a moved message's UID is gone from ``folder``)."""
        flags: list[int] = []
        moves: dict[tuple[str, str], list[int]] = {}
        for item in items:
            verdict = item.verdict
            if verdict is None or (verdict.error and not self.dry_run):
                continue  # an unreadable mail is never moved or flagged
            for action in verdict.actions:
                line = (f"{folder} uid {item.uid}: {verdict.type}/{verdict.severity}: "
                        f"{action.describe()}")
                if self._plan(action, verdict, item.uid, flags, moves):
                    report.actions.append(line)
                    if self.dry_run:
                        self.out(line)
                elif self.dry_run and action.kind in ("alert", "digest") and not item.history:
                    # What the seller would hear: pushed now, or in the next digest.
                    self.out(f"{line} ({_subject_of(item.message)})")
        if self.dry_run:
            return
        if flags:
            self.mailbox.add_flags(folder, flags, [FLAGGED])
        for (kind, destination), uids in moves.items():
            if kind == "rescue":
                self.mailbox.rescue(folder, uids, destination)
            else:
                self.mailbox.move(folder, uids, destination)

    def _plan(
        self,
        action: Action,
        verdict: Verdict,
        uid: int,
        flags: list[int],
        moves: dict[tuple[str, str], list[int]],
    ) -> bool:
        """File one action into the batch plan; False when it is not a mailbox action."""
        if action.kind == "flag":
            flags.append(uid)
            return True
        if action.kind not in ("move", "rescue"):
            return False
        if action.kind == "rescue" and verdict.suspicious:
            # Belt and braces: suspected phishing stays in junk whatever the rules said.
            log.warning("refusing to rescue suspicious uid %s", uid)
            return False
        destination = action.folder or self.imap.rescue_folder
        if any(uid in planned for planned in moves.values()):
            return False  # a message can only go to one place
        moves.setdefault((action.kind, destination), []).append(uid)
        return True

    def _commit(
        self,
        folder: FolderLike,
        state: FolderState,
        items: list[_Item],
        now: datetime,
        report: SyncReport,
    ) -> None:
        history = 0
        recorded: list[Verdict] = []
        with self.db.transaction() as conn:
            for item in items:
                row_id = self._insert(conn, folder, state, item, now)
                if row_id is None:
                    report.duplicates += 1
                    continue
                report.recorded += 1
                assert item.verdict is not None
                recorded.append(item.verdict)
                history += item.history
                assert item.verdict is not None
                if item.verdict.error:
                    report.errors += 1
                    if not any(a.kind == "alert" for a in item.verdict.actions):
                        continue
                self.notifier.after_verdict(conn, row_id, item.message, item.verdict,
                                            history=item.history, now=now)
            _save_folder(conn, state)
            report.history += history
            if history:
                conn.execute(
                    "UPDATE folders SET history_pending = history_pending + ? "
                    "WHERE account = ? AND folder = ?",
                    (history, state.account, state.folder),
                )
        # Counted once committed, so a batch that is rolled back and redone counts once.
        for verdict in recorded:
            rescued = any(a.kind == "rescue" for a in verdict.actions)
            metrics.count_message(state.account, verdict.type, verdict.severity,
                                  verdict.suspicious, rescued)

    def _insert(
        self,
        conn: sqlite3.Connection,
        folder: FolderLike,
        state: FolderState,
        item: _Item,
        now: datetime,
    ) -> int | None:
        verdict = item.verdict
        assert verdict is not None
        message = item.message
        rescued = any(a.kind == "rescue" for a in verdict.actions) and not verdict.suspicious
        link = "" if verdict.suspicious or not message.links else message.links[0]
        cursor = conn.execute(
            """
            INSERT OR IGNORE INTO messages (
                account, folder, folder_role, uidvalidity, uid, message_id, fingerprint,
                received_at, processed_at, sender, sender_name, reply_to, subject, summary,
                order_id, buyer_name, link, type, severity, confidence, suspicious, amazon,
                decided_by, tags, actions, rescued, history, error)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,
                    ?, ?)
            """,
            (
                state.account, folder.name, folder.role, state.uidvalidity, item.uid,
                message.message_id, item.fingerprint, item.received_at.isoformat(),
                now.isoformat(), message.sender_address, message.sender_name, message.reply_to,
                message.subject, _summary(message.text), verdict.order_id or message.order_id,
                message.buyer_name, link, verdict.type, verdict.severity, verdict.confidence,
                int(verdict.suspicious), int(verdict.amazon), verdict.decided_by,
                json.dumps(verdict.tags), json.dumps([a.describe() for a in verdict.actions]),
                int(rescued), int(item.history), verdict.error or message.error or None,
            ),
        )
        return cursor.lastrowid if cursor.rowcount else None

    def _finish(self, state: FolderState, report: SyncReport) -> None:
        """Stamp the sync time; summarise backfilled history once, in the same commit."""
        now = self.clock()
        key = (state.account, state.folder)
        with self.db.transaction() as conn:
            conn.execute("UPDATE folders SET last_sync_at = ? WHERE account = ? AND folder = ?",
                         (now.isoformat(), *key))
            pending = conn.execute(
                "SELECT history_pending FROM folders WHERE account = ? AND folder = ?", key
            ).fetchone()[0]
            if pending:
                self.notifier.notify_operator(conn, history_summary(conn, state, pending), now)
                conn.execute(
                    "UPDATE folders SET history_pending = 0 WHERE account = ? AND folder = ?", key
                )

    def _watch_answered(self, state: FolderState) -> None:
        """Stop the reply clocks of buyer messages the seller answered (``\\Answered``)."""
        rows = [r for r in self.notifier.open_clock_rows(self.db.conn)
                if r.folder == state.folder and r.uidvalidity == state.uidvalidity and r.uid]
        if not rows:
            return
        flags = self.mailbox.flags(state.folder, [r.uid for r in rows])
        answered = [r.message_row for r in rows if ANSWERED in flags.get(r.uid, ())]
        # Compared without case: mail clients differ in how they spell a keyword.
        unneeded = [
            r.message_row
            for r in rows
            if NO_RESPONSE_NEEDED in {f.lower() for f in flags.get(r.uid, ())}
            and r.message_row not in answered
        ]
        if answered or unneeded:
            with self.db.transaction() as conn:
                if answered:
                    self.notifier.mark_answered(conn, answered, self.clock())
                if unneeded:
                    self.notifier.mark_no_response(conn, unneeded, self.clock())

    def _stage(self, stage: str) -> None:
        if self.hook is not None:
            self.hook(stage)


def history_summary(conn: sqlite3.Connection, state: FolderState, count: int) -> str:
    """One line for the operator instead of an alert per old message."""
    rows = conn.execute(
        """
        SELECT severity, COUNT(*) AS n FROM messages
        WHERE account = ? AND folder = ? AND history = 1 AND error IS NULL
        GROUP BY severity
        """,
        (state.account, state.folder),
    ).fetchall()
    counts = ", ".join(f"{r['n']} {r['severity']}" for r in rows)
    return (
        f"triage backfilled {count} older messages from {state.folder} as history "
        f"(no alert sent for them): {counts or 'none readable'}"
    )
