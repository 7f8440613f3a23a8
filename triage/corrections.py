"""The seller's corrections: what they said a mail really is, and similar mail that follows.

A correction is stored per account in the state database with text of our own (sender,
subject, the opening of the body), never the model's internal vectors, so it outlives
restarts and upgrades of the shipped model. It takes effect at once, without
retraining: :class:`Recall` holds an account's active corrections and, for a new mail,
looks for a corrected one it is like. Likeness is the cosine of hashed word 1-2-grams
(letters only, English function words dropped) of the subject, counted three times,
and the opening of the body: a stateless vectorizer, nothing to fit, nothing tied to
one model. Senders are compared as Amazon uses them: ``seller-news@amazon.co.uk`` and
``seller-news@amazon.com`` are one sender.

A new mail follows the most similar correction that admits it:

- the same template: similarity ``SIMILAR`` or more, whoever sent it;
- the same sender's kind of mail: ``SIMILAR_SAME_SENDER`` or more from that sender;
- news: a mail corrected to ``marketing`` says its sender's mail is news; all of that
  sender's mail follows it, except mail that would alert (high or critical) while the
  corrected one did not: a promotion from a sender that also says "ship now" does not
  make every order news.

Three limits keep a correction from doing harm. Suspected phishing is never corrected
(the pipeline does not ask), so it stays suspicious, in junk and unrescued. A mail the
model reads as critical is lowered only by a correction that lowered a critical itself
(only a seller who said "this critical is not" says it of similar mail), and only for the
same template, or for the sender's kind of mail when the model misread it exactly as it
misread the corrected one and it tells of nothing worse (no bad outcome the corrected one
did not name, and the good news the corrected one had, if it had any): a reinstatement
lowers the sender's next reinstatement, never its next deactivation. And the
rules act on the corrected mail (tags, moves, how to notify), but where a rule re-types
or re-grades it the correction stands: it is the seller's word on this kind of mail,
more specific than a rule. A rule's critical is lowered, like the model's, only by a
correction that lowered a critical.
"""

from __future__ import annotations

import functools
import re
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from triage.errors import ConfigError, TriageError
from triage.message import Message
from triage.rules import NOTIFY_KINDS, Defaults
from triage.state import Database, register_schema
from triage.taxonomy import ALLOWED_SEVERITIES, SEVERITIES, TYPES, is_amazon_domain, severity_rank
from triage.verdict import Verdict

if TYPE_CHECKING:
    import numpy as np

    from triage.settings import Settings

SIMILAR = 0.7
SIMILAR_SAME_SENDER = 0.5
NEWS_TYPES = frozenset({"marketing"})
NEWS_LOWERS_FROM = "normal"  # and low: the mail stays in the digest either way
BODY_CHARS = 1500  # kept for retraining; the rest of a mail is mostly footers
SKETCH_CHARS = 600  # what similarity reads of the body: the opening says what it is about
LOCAL_ACCOUNT = "local"

register_schema(
    """
    CREATE TABLE IF NOT EXISTS corrections (
        id INTEGER PRIMARY KEY,
        account TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        sender TEXT NOT NULL DEFAULT '',
        subject TEXT NOT NULL DEFAULT '',
        -- the opening of the readable body, whitespace collapsed (similarity reads its start)
        body TEXT NOT NULL DEFAULT '',
        model_type TEXT NOT NULL,
        model_severity TEXT NOT NULL,
        type TEXT NOT NULL,
        severity TEXT NOT NULL,
        created_at TEXT NOT NULL,
        -- 'cli', or 'folder:<name>' for a message moved into a training folder
        source TEXT NOT NULL,
        undone INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX IF NOT EXISTS corrections_active ON corrections (account, undone);
    """
)

TAG = re.compile(r"<[^>]+>")


class CorrectionError(TriageError):
    """A correction names a type or severity the taxonomy does not have, or an unknown id."""


@dataclass(frozen=True)
class Correction:
    """One correction as stored."""

    id: int
    account: str
    fingerprint: str
    sender: str
    subject: str
    body: str
    model_type: str
    model_severity: str
    type: str
    severity: str
    created_at: datetime
    source: str
    undone: bool = False

    def reason(self) -> str:
        when = self.created_at.date().isoformat()
        return f"corrected by you on {when}: similar to '{self.subject[:80]}'"

    def to_message(self) -> Message:
        """The corrected mail as far as it is kept, for retraining the model on it."""
        domain = self.sender.partition("@")[2]
        return Message(sender_address=self.sender, sender_domain=domain,
                       subject=self.subject, text=self.body)


@dataclass(frozen=True)
class Match:
    """A new mail close enough to a corrected one to follow it."""

    correction: Correction
    similarity: float
    news: bool = False  # followed as news from the sender, not for its likeness

    def apply(self, verdict: Verdict) -> Verdict:
        """The model's verdict with the correction's type and severity, saying why."""
        c = self.correction
        why = (f"{c.reason()} ({self.similarity:.2f})" if not self.news else
               f"corrected by you on {c.created_at.date().isoformat()}: {c.sender} sends "
               f"{c.type}, like '{c.subject[:80]}'")
        return replace(
            verdict,
            type=c.type,
            severity=c.severity,
            decided_by=f"correction:{c.id}",
            reasons=[*verdict.reasons, f"{why}: {c.type}, {c.severity}"],
        )

    def stand(self, verdict: Verdict, defaults: Defaults) -> Verdict:
        """The correction over a rule that re-typed or re-graded the corrected mail.

        A rule's critical stays unless the seller lowered a critical themselves; a
        notify action the defaults chose for the rule's severity is chosen again.
        """
        c = self.correction
        if (verdict.type, verdict.severity) == (c.type, c.severity):
            return verdict
        if verdict.severity == "critical" and c.model_severity != "critical":
            return verdict
        default = defaults.action_for(verdict.severity)
        notify = [a for a in verdict.actions if a.kind in NOTIFY_KINDS and a != default]
        kept = [a for a in verdict.actions if a.kind not in NOTIFY_KINDS]
        return replace(
            verdict,
            type=c.type,
            severity=c.severity,
            decided_by=f"correction:{c.id}",
            actions=[*kept, *(notify or [defaults.action_for(c.severity)])],
            reasons=[*verdict.reasons,
                     f"your correction stands over {verdict.decided_by}: {c.type}, {c.severity}"],
        )


def validate(type_: str, severity: str | None) -> None:
    """Refuse names the taxonomy does not know, and severities a type never takes."""
    if type_ not in TYPES:
        raise CorrectionError(f"unknown type {type_!r} (expected one of: {', '.join(TYPES)})")
    if severity is None:
        return
    if severity not in SEVERITIES:
        raise CorrectionError(
            f"unknown severity {severity!r} (expected one of: {', '.join(SEVERITIES)})"
        )
    allowed = ALLOWED_SEVERITIES[type_]
    if severity not in allowed:
        raise CorrectionError(
            f"a {type_} is never {severity} (it can be: {', '.join(allowed)})"
        )


def body_of(message: Message, chars: int = BODY_CHARS) -> str:
    """The opening of the readable body, markup dropped, whitespace collapsed."""
    body = message.text[: chars * 4]
    if "<" in body and ">" in body:
        body = TAG.sub(" ", body)
    return " ".join(body.split())[:chars]


def record(
    conn: sqlite3.Connection,
    account: str,
    fingerprint: str,
    message: Message,
    model: tuple[str, str],
    corrected: tuple[str, str],
    source: str,
    now: datetime | None = None,
) -> int:
    """Store a correction (inside the caller's transaction); returns its id.

    A newer correction of the same mail replaces the older one, which is kept, undone;
    the same correction said again is the one already stored.
    """
    type_, severity = corrected
    validate(type_, severity)
    same = conn.execute(
        "SELECT id FROM corrections WHERE account = ? AND fingerprint = ? AND undone = 0 "
        "AND type = ? AND severity = ? AND model_type = ? AND model_severity = ?",
        (account, fingerprint, type_, severity, *model),
    ).fetchone()
    if same is not None:
        return int(same[0])  # said again (or recorded again after a crash): nothing new
    conn.execute(
        "UPDATE corrections SET undone = 1 WHERE account = ? AND fingerprint = ? AND undone = 0",
        (account, fingerprint),
    )
    cursor = conn.execute(
        """
        INSERT INTO corrections (account, fingerprint, sender, subject, body, model_type,
            model_severity, type, severity, created_at, source)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        """,
        (account, fingerprint, message.sender_address.lower(), message.subject,
         body_of(message), model[0], model[1], type_, severity,
         (now or datetime.now(UTC)).isoformat(timespec="seconds"), source),
    )
    assert cursor.lastrowid is not None
    return cursor.lastrowid


def _row(row: sqlite3.Row) -> Correction:
    return Correction(
        id=row["id"], account=row["account"], fingerprint=row["fingerprint"],
        sender=row["sender"], subject=row["subject"], body=row["body"],
        model_type=row["model_type"], model_severity=row["model_severity"],
        type=row["type"], severity=row["severity"],
        created_at=datetime.fromisoformat(row["created_at"]), source=row["source"],
        undone=bool(row["undone"]),
    )


def listing(
    db: Database, account: str | None = None, active_only: bool = False
) -> list[Correction]:
    """Corrections, oldest first; of one account when given."""
    sql = "SELECT * FROM corrections WHERE (? IS NULL OR account = ?)"
    if active_only:
        sql += " AND undone = 0"
    rows = db.conn.execute(sql + " ORDER BY id", (account, account)).fetchall()
    return [_row(r) for r in rows]


def get(db: Database, correction_id: int) -> Correction:
    row = db.conn.execute("SELECT * FROM corrections WHERE id = ?", (correction_id,)).fetchone()
    if row is None:
        raise CorrectionError(f"no correction with id {correction_id}")
    return _row(row)


def undo(db: Database, correction_id: int, account: str | None = None) -> Correction:
    """Undo one correction; similar mail is decided without it from now on."""
    with db.transaction() as conn:
        row = conn.execute(
            "SELECT * FROM corrections WHERE id = ? AND (? IS NULL OR account = ?)",
            (correction_id, account, account),
        ).fetchone()
        if row is None:
            raise CorrectionError(f"no correction with id {correction_id}")
        conn.execute("UPDATE corrections SET undone = 1 WHERE id = ?", (correction_id,))
    return _row(row)


def version(db: Database, account: str) -> tuple[int, int]:
    """Changes whenever a correction of ``account`` is added or undone."""
    row = db.conn.execute(
        "SELECT COALESCE(MAX(id), 0), COALESCE(SUM(undone), 0) FROM corrections "
        "WHERE account = ?", (account,),
    ).fetchone()
    return int(row[0]), int(row[1])


# -- similarity ----------------------------------------------------------------------


@functools.cache
def _vectorizer() -> Any:
    # Imported here: every open of the state database imports this module, and most
    # commands (health, status), and the daemon's start, never compare mail.
    import numpy as np
    from sklearn.feature_extraction.text import HashingVectorizer

    return HashingVectorizer(
        ngram_range=(1, 2), stop_words="english", token_pattern=r"(?u)\b[^\W\d_]{2,}\b",
        n_features=2**20, alternate_sign=False, norm="l2", dtype=np.float32,
    )


def sketch(subject: str, body: str) -> str:
    """What similarity reads: the subject (three times: it names the notice) and the
    opening of the body."""
    return f"{subject} {subject} {subject} {body[:SKETCH_CHARS]}"


class Recall:
    """An account's active corrections, ready to be matched against new mail."""

    def __init__(self, corrections: Sequence[Correction]) -> None:
        import numpy as np  # only an account with corrections needs it

        self.corrections = list(corrections)
        self._senders = np.array([sender_key(c.sender) for c in self.corrections], dtype=object)
        self._news = np.array([c.type in NEWS_TYPES for c in self.corrections], dtype=bool)
        self._outcomes: dict[int, frozenset[str]] = {}
        self._matrix = _vectorizer().transform(
            [sketch(c.subject, c.body) for c in self.corrections]
        ) if self.corrections else None

    @classmethod
    def load(cls, db: Database, account: str) -> Recall:
        return cls(listing(db, account, active_only=True))

    def __bool__(self) -> bool:
        return bool(self.corrections)

    def __len__(self) -> int:
        return len(self.corrections)

    def match(self, messages: Sequence[Message], model: Sequence[tuple[str, str]]
              ) -> list[Match | None]:
        """For each message (with the model's type and severity), the correction it follows."""
        if self._matrix is None or not messages:
            return [None] * len(messages)
        found = _vectorizer().transform(
            [sketch(m.subject, body_of(m, SKETCH_CHARS)) for m in messages])
        scores = (found @ self._matrix.T).toarray()
        return [self._best(m, row, said) for m, row, said in zip(messages, scores, model,
                                                                   strict=True)]

    def _best(self, message: Message, scores: np.ndarray, said: tuple[str, str]
              ) -> Match | None:
        import numpy as np

        key = sender_key(message.sender_address)
        same = (self._senders == key) & bool(key)  # mail without a sender has no fellows
        # Only these can follow (see :func:`follows`); most mail has none, and is done.
        possible = np.flatnonzero(
            (scores >= SIMILAR) | (same & ((scores >= SIMILAR_SAME_SENDER) | self._news)))
        told: list[frozenset[str]] = []  # what the mail says happened, read once if needed

        def tells() -> frozenset[str]:
            if not told:
                told.append(outcomes(message.subject, body_of(message, BODY_CHARS)))
            return told[0]

        for index in possible[np.argsort(-scores[possible], kind="stable")]:
            correction, score = self.corrections[int(index)], float(scores[index])
            same_sender = bool(same[index])
            if not follows(correction, score, same_sender, said,
                           functools.partial(no_worse, tells, self._told(int(index)))):
                continue
            if (correction.type != correction.model_type
                    or polarity(self._told(int(index))) * polarity(tells()) >= 0):
                return Match(correction, score, news=not alike(score, same_sender))
        return None

    def _told(self, index: int) -> frozenset[str]:
        if index not in self._outcomes:
            correction = self.corrections[index]
            self._outcomes[index] = outcomes(correction.subject, correction.body)
        return self._outcomes[index]


# What happened, as the lexicon reads it, good or bad for the seller. A correction of
# severity alone says how grave one outcome is: a claim decision lowered to "in your
# favour" must not lower the next decision of the same template that went against the
# seller. Mail that names both, or neither, is not told apart this way.
GOOD_OUTCOMES = frozenset({
    "reinstated", "resolved", "no_action", "decided_favour", "closed_withdrawn", "approved",
    "not_removed", "back_in_target", "improved", "positive",
})
BAD_OUTCOMES = frozenset({
    "against_seller", "denied", "recovery_refused", "suspended", "listing_removed",
    "above_target", "negative", "threat", "at_risk", "may_be_removed", "final_notice",
})


def outcomes(subject: str, body: str) -> frozenset[str]:
    """The outcomes, good or bad, the lexicon reads in a mail."""
    from triage import signals  # the lexicon is loaded only by accounts with corrections

    found = signals.concepts(signals.normalise(f"{subject}\n{body}"))
    return frozenset(found & (GOOD_OUTCOMES | BAD_OUTCOMES))


def no_worse(mine: Callable[[], frozenset[str]], theirs: frozenset[str]) -> bool:
    """Whether a mail (its outcomes, read when asked) tells of nothing worse than the
    corrected one: no bad outcome it did not name, and its good news when it had some."""
    found = mine()
    return not (found & BAD_OUTCOMES) - theirs and (
        not theirs & GOOD_OUTCOMES or bool(found & GOOD_OUTCOMES))


def polarity(found: frozenset[str]) -> int:
    """+1 when only good outcomes are named, -1 only bad ones, else 0."""
    return int(bool(found & GOOD_OUTCOMES)) - int(bool(found & BAD_OUTCOMES))


@functools.lru_cache(maxsize=4096)
def sender_key(address: str) -> str:
    """One Amazon sender across marketplaces (``seller-news@amazon.co.uk`` is
    ``seller-news@amazon``); any other sender by its whole address."""
    local, _, domain = address.lower().partition("@")
    return f"{local}@amazon" if is_amazon_domain(domain) else address.lower()


def alike(score: float, same_sender: bool) -> bool:
    """The same template, or the same sender's kind of mail."""
    return score >= SIMILAR or (same_sender and score >= SIMILAR_SAME_SENDER)


def follows(correction: Correction, score: float, same_sender: bool,
            said: tuple[str, str], no_worse: Callable[[], bool] = lambda: False) -> bool:
    """Whether a mail this similar to the corrected one, for which the model said
    ``said`` (type, severity), takes the correction's verdict. ``no_worse`` tells whether
    the mail tells of nothing worse than the corrected one (:func:`no_worse`; asked only
    when it decides).
    """
    # Critical first: only a correction that lowered a critical lowers one, and only for
    # the same template, as news (the seller said this sender's critical was news), or
    # for the sender's kind of mail the model misread exactly as it misread the corrected
    # one and that tells of nothing worse: a sender's reinstatement must not lower its
    # next deactivation, which names a suspension the reinstatement did not.
    if said[1] == "critical" and correction.severity != "critical" and (
            correction.model_severity != "critical"
            or (score < SIMILAR and correction.type not in NEWS_TYPES
                and not (same_sender and score >= SIMILAR_SAME_SENDER
                         and said == (correction.model_type, correction.model_severity)
                         and no_worse()))):
        return False
    if alike(score, same_sender):
        return True
    # News: the sender's other mail the model misread the same way (one sender, such as
    # no-reply@amazon, also sends orders and notices, which must not turn into news); but
    # one that would alert (high, critical) only when the seller lowered one as urgent, so
    # no order to ship today is taken for news.
    return (same_sender and correction.type in NEWS_TYPES
            and said[0] == correction.model_type
            and severity_rank(said[1]) >= min(severity_rank(correction.model_severity),
                                              severity_rank(NEWS_LOWERS_FROM)))


def account_for(settings: Settings, name: str | None = None) -> str:
    """The account corrections are filed under: ``name``, the first mailbox, or local."""
    names = [a.account for a in settings.accounts]
    if name:
        if names and name not in names:
            raise ConfigError(f"no mailbox named {name!r} (configured: {', '.join(names)})")
        return name
    return names[0] if names else LOCAL_ACCOUNT


def recall_for(settings: Settings, account: str) -> Recall | None:
    """The account's active corrections, or None when no state database exists yet."""
    if not settings.database_path.exists():
        return None
    db = Database(settings.database_path)
    try:
        return Recall.load(db, account) or None
    finally:
        db.close()
