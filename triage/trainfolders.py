"""Training folders: the seller corrects a verdict by moving the message into one.

Moving a message to a folder is the one gesture every mail client has, on every
device. triage creates these folders (with the server's hierarchy delimiter, shown
here as ``/``) and watches them:

=========================  ==========================================================
``Triage/Critical``        it is critical (the type triage gave it is kept)
``Triage/High``            it is high
``Triage/Normal``          it is normal
``Triage/Not important``   it is low
``Triage/Type/<type>``     it is of that type, e.g. ``Triage/Type/claim``
=========================  ==========================================================

A message moved into one is recorded as a correction for the account (what triage had
said is looked up by the message's fingerprint in the ``messages`` table, or decided
afresh for mail triage never saw), its row takes the corrected verdict, and it is
moved back to the inbox, where the seller keeps it. Where the taxonomy does not allow
the pair (a payment is never critical), the nearest allowed severity is recorded.
Suspected phishing is never corrected and never rescued this way: it goes back to junk.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Protocol

from triage import corrections
from triage.errors import MailboxError
from triage.message import parse
from triage.rules import clamp_severity
from triage.state import Database
from triage.sync import fingerprint
from triage.taxonomy import TYPES

log = logging.getLogger(__name__)

ROOT = "Triage"
TYPE_FOLDER = "Type"
SEVERITY_FOLDERS = {"Critical": "critical", "High": "high", "Normal": "normal",
                    "Not important": "low"}


@dataclass(frozen=True)
class Target:
    """One training folder and what a message moved into it is."""

    folder: str
    type: str | None = None
    severity: str | None = None

    def corrected(self, said_type: str, said_severity: str) -> tuple[str, str]:
        """The verdict the seller means, from the one triage gave."""
        type_ = self.type or said_type
        return type_, clamp_severity(type_, self.severity or said_severity)


def targets(delimiter: str) -> list[Target]:
    """Every training folder, named with the server's hierarchy delimiter."""
    found = [Target(delimiter.join((ROOT, name)), severity=severity)
             for name, severity in SEVERITY_FOLDERS.items()]
    return found + [Target(delimiter.join((ROOT, TYPE_FOLDER, t)), type=t) for t in TYPES]


class TrainingMailbox(Protocol):
    """The part of :class:`triage.mailbox.Mailbox` the training folders use."""

    def delimiter(self) -> str: ...
    def ensure_folders(self, names: Sequence[str]) -> list[str]: ...
    def status(self, folder: str) -> Any: ...
    def uids_after(self, folder: str, last_uid: int, since: date | None) -> Sequence[int]: ...
    def fetch(self, folder: str, uids: Sequence[int]) -> Any: ...
    def move(self, folder: str, uids: Sequence[int], dest: str) -> Any: ...


class Decider(Protocol):
    def decide(self, messages: Sequence[Any], folder: str, role: str) -> list[Any]: ...


def prepare(mailbox: TrainingMailbox) -> list[Target]:
    """Create the training folders the mailbox lacks; none when the server refuses."""
    try:
        found = targets(mailbox.delimiter())
        created = mailbox.ensure_folders([ROOT, *(t.folder for t in found)])
    except MailboxError as exc:
        log.warning("training folders not available: %s", exc)
        return []
    if created:
        log.info("created %d training folders under %s", len(created), ROOT)
    return found


@dataclass(frozen=True)
class Learned:
    """One message taken from a training folder."""

    folder: str
    subject: str
    correction: int | None  # None: suspected phishing, sent back to junk


def sweep(
    db: Database,
    mailbox: TrainingMailbox,
    pipeline: Decider,
    account: str,
    found: Sequence[Target],
    inbox: str,
    junk: str | None,
    now: datetime | None = None,
) -> list[Learned]:
    """Record what the seller moved into the training folders and move it back."""
    learned: list[Learned] = []
    for target in found:
        if not mailbox.status(target.folder).messages:
            continue
        learned += _take(db, mailbox, pipeline, account, target, inbox, junk,
                         now or datetime.now(UTC))
    return learned


def _take(
    db: Database,
    mailbox: TrainingMailbox,
    pipeline: Decider,
    account: str,
    target: Target,
    inbox: str,
    junk: str | None,
    now: datetime,
) -> list[Learned]:
    back: list[int] = []
    to_junk: list[int] = []
    learned = []
    for mail in mailbox.fetch(target.folder, mailbox.uids_after(target.folder, 0, None)):
        message = parse(mail.raw)
        if message.error:
            back.append(mail.uid)
            continue
        key = fingerprint(message, mail.raw)
        said = _said(db, pipeline, account, key, message)
        if said is None:
            log.warning("%s: suspected phishing is never corrected; back to junk", target.folder)
            to_junk.append(mail.uid)
            learned.append(Learned(target.folder, message.subject, None))
            continue
        fixed = target.corrected(*said)
        with db.transaction() as conn:
            number = corrections.record(conn, account, key, message, said, fixed,
                                        f"folder:{target.folder}", now)
            conn.execute(
                "UPDATE messages SET type = ?, severity = ?, decided_by = ? "
                "WHERE account = ? AND fingerprint = ?",
                (*fixed, f"correction:{number}", account, key),
            )
        back.append(mail.uid)
        learned.append(Learned(target.folder, message.subject, number))
        log.info("correction %d from %s: %s/%s -> %s/%s", number, target.folder, *said, *fixed)
    # Recorded first: a crash before the move records the same correction again, harmlessly.
    if back:
        mailbox.move(target.folder, back, inbox)
    if to_junk:
        mailbox.move(target.folder, to_junk, junk or inbox)
    return learned


def _said(
    db: Database, pipeline: Decider, account: str, key: str, message: Any
) -> tuple[str, str] | None:
    """What triage said of the message, or None for suspected phishing."""
    row = db.conn.execute(
        "SELECT type, severity, suspicious FROM messages WHERE account = ? AND fingerprint = ?",
        (account, key),
    ).fetchone()
    if row is None:
        verdict = pipeline.decide([message], "INBOX", "inbox")[0]
        return None if verdict.suspicious else (verdict.type, verdict.severity)
    return None if row["suspicious"] else (row["type"], row["severity"])
