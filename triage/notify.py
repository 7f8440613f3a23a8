"""Telling the seller: Apprise targets, immediate alerts, reminders, digests, the outbox.

Nothing is sent straight from a decision. The sync's hook (:func:`after_verdict`)
only records, inside the sync's own transaction, what must be said: an alert to
push, a reply clock to open or stop. :func:`deliver_due`, called by the daemon
loop, turns that into notifications (several alerts arriving together become one),
writes one outbox row per target before anything is sent, and marks a row sent
only when Apprise reports success, committing each row at once (a crash repeats at
most the one row in flight). A target that is down is retried with exponential
backoff, kept per target: when it comes back, its queue goes out oldest first in
the same round. A target that succeeded is never sent the same thing again.

Sending never reads rules.yaml: the daemon passes the notify policy of the last good
rules it holds, so a broken edit on disk cannot stop a single notification.

Targets come from ``TRIAGE_NOTIFY_URLS`` (``TAG=URL`` or ``TAG+TAG=URL`` gives a
URL Apprise tags) and an Apprise config file (``TRIAGE_APPRISE_CONFIG``, where
tags are written the Apprise way). A target without tags receives everything; a
tagged one receives what carries one of its tags: every notification carries its
kind (``alert``, ``reminder``, ``digest``, ``silence``, ``operator``), its severity,
its mail type, and the extra tags rules.yaml routes to them. A notification that no
target's tags take is never dropped: it goes to the default targets (those without
tags, else every target) and a warning names the tags nobody takes.

A target is shown (``notify --test``, logs, the outbox, ``status``) only by its masked
label: Apprise's ``url(privacy=True)`` with the path, header tokens (``?+X-Api-Key=``)
and query values masked too, and its secret parts are handed to the log filter.

rules.yaml's ``notify:`` section (all keys optional)::

    notify:
      alert:                        # for verdicts whose rules chose neither alert nor
        severities: [critical]      # digest (rules.yaml's ``defaults:`` usually decide)
        types: [message_blocked]
      route:                        # extra Apprise tags by severity or type
        critical: [phone]
        claim: [phone]
      digests:
        - {name: hourly, every: 1h, severities: [high]}
        - {name: daily, at: "08:00"}
        - {name: weekly, at: "08:00", weekday: monday}
      reminders: [12h, 4h, 1h]      # time left on a buyer message's 24 hours
      silence_after: 72h            # no Amazon mail for this long: tell the seller
      quiet_hours: {from: "22:00", to: "07:00"}   # hold non-critical pushes
      max_chars: 3500               # chat messages longer than this are split
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import re
import sqlite3
import sys
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit
from zoneinfo import ZoneInfo

import apprise

from triage import chat, logs, metrics, performance, replyclock, rules
from triage import digest as digests
from triage.digest import (
    DigestSchedule,
    Document,
    Group,
    Inline,
    Link,
    Section,
    deadline_phrase,
    render,
)
from triage.errors import ConfigError, NotifyError, RulesError
from triage.message import Message
from triage.notifypolicy import NotifyPolicy, policy_from_file, timezone
from triage.rules import Rules
from triage.settings import Settings
from triage.state import Database, register_schema
from triage.taxonomy import SEVERITIES, severity_rank
from triage.verdict import Verdict

log = logging.getLogger(__name__)

# The outbox serves every account of the daemon, so its metrics carry this label.
ALL_ACCOUNTS = "all"

BACKOFF_FIRST = timedelta(seconds=30)
BACKOFF_MAX = timedelta(hours=1)
# Query parameters Apprise adds that say how, not where or with what secret.
SHOWN_PARAMETERS = frozenset(
    ("format", "overflow", "method", "retry", "wait", "optional", "cto", "rto", "verify",
     "from", "to", "smtp", "mode", "priority")
)
# Path segments this short, without digits, are words ("hooks", "api"), not tokens.
TOKEN_MIN_CHARS = 8
CLAIM_DAYS = {"A-to-z claim": 3, "Chargeback": 7}
CONFIRMATION_TYPES = ("BBC_MESSAGE_CONFIRMATION_TO_MERCHANT",)
BUYER_MESSAGE_TYPES = ("BBC_MESSAGE_SENT_TO_MERCHANT",)
SENT_COPY = re.compile(r"\b(message sent|sent message|your message to)\b", re.IGNORECASE)
TAGGED_URL = re.compile(
    r"^(?P<tags>[A-Za-z0-9_-]+(?:\+[A-Za-z0-9_-]+)*)=(?P<url>[a-z0-9+.-]+://.*)$"
)

HEADLINES: dict[str, str] = {
    "buyer_message": "Buyer message",
    "order": "Order notice",
    "return": "Return",
    "claim": "Claim",
    "feedback": "Feedback",
    "account_health": "Account health",
    "policy": "Policy warning",
    "message_blocked": "Your message was not delivered",
    "payment": "Payment",
    "inventory": "Inventory",
    "marketing": "Amazon news",
    "other": "Mail",
}

# What must still be pushed about a message; grouped into one alert when sent.
# ``notifications`` holds what to say; ``outbox`` one row per target (and part),
# written before sending and marked sent only on success.
SCHEMA = """
    CREATE TABLE IF NOT EXISTS alert_queue (
        message_row INTEGER PRIMARY KEY,
        queued_at TEXT NOT NULL,
        notification_id INTEGER
    );
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
    CREATE TABLE IF NOT EXISTS notify_state (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    """
register_schema(SCHEMA)

# One delivery at a time in this process: every account's loop and the rules watcher
# may call deliver_due, and two rounds reading the same unsent row would send it twice.
_SENDING = threading.Lock()



# --- targets ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One Apprise service: ``key`` is stable across restarts and reveals no secret."""

    key: str
    label: str
    tags: frozenset[str]
    body_format: str
    max_chars: int
    service: Any = field(repr=False, compare=False)

    def wants(self, tags: Iterable[str]) -> bool:
        return not self.tags or "always" in self.tags or bool(self.tags & set(tags))


def load_targets(settings: Settings) -> list[Target]:
    """Every service of ``TRIAGE_NOTIFY_URLS`` and ``TRIAGE_APPRISE_CONFIG``."""
    hub = apprise.Apprise()
    for entry in settings.notify.urls:
        match = TAGGED_URL.match(entry)
        url, tags = (match["url"], match["tags"].split("+")) if match else (entry, [])
        for secret in secret_parts(url):  # before Apprise logs the URL it loads
            logs.register_secret(secret)
        if not hub.add(url, tag=tags or None):
            scheme = url.partition("://")[0] or "?"
            raise ConfigError(
                f"TRIAGE_NOTIFY_URLS: Apprise cannot use a {scheme}:// URL "
                f"(entry {settings.notify.urls.index(entry) + 1})"
            )
    if settings.notify.apprise_config:
        _register_config_secrets(settings.notify.apprise_config)
        config = apprise.AppriseConfig()
        if not config.add(settings.notify.apprise_config):
            raise ConfigError(
                f"TRIAGE_APPRISE_CONFIG: cannot read {settings.notify.apprise_config}"
            )
        hub.add(config)
    return [_target(service) for service in hub.find()]


CONFIG_URL = re.compile(r"[a-z][a-z0-9+.-]*://[^\s\"'<>]+", re.IGNORECASE)


def _register_config_secrets(location: str) -> None:
    """The secret parts of the URLs an Apprise config file holds, masked before Apprise
    loads (and logs) them; a remote config is Apprise's to read."""
    try:
        text = Path(location).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return  # not a local file, or unreadable: Apprise reports it
    for url in CONFIG_URL.findall(text):
        for secret in secret_parts(url):
            logs.register_secret(secret)


def _target(service: Any) -> Target:
    full = service.url(privacy=False)
    for secret in secret_parts(full):
        logs.register_secret(secret)
    body_format, max_chars = chat.shape_of(
        service, str(service.resolve_format(None).value), int(service.body_maxlen or 32768)
    )
    return Target(
        key=hashlib.sha256(full.encode()).hexdigest()[:24],
        label=masked_label(service.url(privacy=True)),
        tags=frozenset(str(t) for t in service.tags),
        body_format=body_format,
        max_chars=max_chars,
        service=service,
    )


def masked_label(private: str) -> str:
    """Apprise's privacy form with what it leaves in clear masked too: the path (a
    webhook token), header and payload values (``+X-Api-Key=``) and query values."""
    parts = urlsplit(private)
    path = "/".join(logs.MASK if _token_like(seg) else seg for seg in parts.path.split("/"))
    query = [
        f"{key}={value if key in SHOWN_PARAMETERS else logs.MASK}"
        for key, value in parse_qsl(parts.query, keep_blank_values=True)
    ]
    netloc = parts.netloc
    if "@" in netloc:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.partition(':')[0]}:{logs.MASK}@{host}" if ":" in user else netloc
    return f"{parts.scheme}://{netloc}{path}" + (f"?{'&'.join(query)}" if query else "")


def secret_parts(url: str) -> list[str]:
    """The parts of a target URL that may be secrets, for the log filter."""
    parts = urlsplit(url)
    found = [unquote(parts.password)] if parts.password else []
    found += [unquote(segment) for segment in parts.path.split("/") if _token_like(segment)]
    found += [value for key, value in parse_qsl(parts.query) if key not in SHOWN_PARAMETERS]
    return [s for s in found if len(s) >= logs.MIN_SECRET_LENGTH]


def _token_like(segment: str) -> bool:
    return len(segment) >= TOKEN_MIN_CHARS or any(c.isdigit() for c in segment)


def default_targets(targets: Sequence[Target]) -> list[Target]:
    """Where a notification goes when no target's tags take it: the untagged, else all."""
    return [t for t in targets if not t.tags] or list(targets)


def send(target: Target, title: str, body: str, body_format: str) -> None:
    """Hand one message to one target; raises :class:`NotifyError` unless it succeeded."""
    hub = apprise.Apprise()
    hub.add(target.service)
    try:
        result = hub.notify(body=body, title=title, body_format=body_format)
    except Exception as exc:  # a plugin bug must not stop the delivery of the rest
        raise NotifyError(f"{target.label}: {exc.__class__.__name__}") from exc
    if not result:
        status = getattr(getattr(result, "status", None), "name", "FAILURE")
        raise NotifyError(f"{target.label}: {status.lower()}")


# --- the hooks the sync calls -----------------------------------------------------------


def after_verdict(
    conn: sqlite3.Connection,
    row_id: int,
    message: Message,
    verdict: Verdict,
    *,
    history: bool,
    now: datetime,
) -> None:
    """Inside the sync's transaction: queue alerts, open and stop reply clocks.

    Every new, not ignored message is queued; which of them are pushed at once is
    decided at delivery by rules.yaml's ``notify:`` section (and the verdict's own
    ``alert`` action). History mail is stored only: no per-message alert.
    """
    row = conn.execute(
        "SELECT received_at, folder_role FROM messages WHERE id = ?", (row_id,)
    ).fetchone()
    received = datetime.fromisoformat(row["received_at"]) if row else (message.date or now)
    role = row["folder_role"] if row else "inbox"
    if role == "sent":
        _stop_by_sent_copy(conn, message, now)
        return
    if verdict.suspicious:
        if not history and not _ignored(verdict):
            _queue_alert(conn, row_id, now)
        return
    _record_deadline(conn, row_id, message, verdict, received)
    if verdict.type == "account_health" and verdict.amazon:
        _record_metrics(conn, row_id, message, received, history=history, now=now)
    if _is_confirmation(message, verdict):
        replyclock.stop_thread(
            conn,
            answered_at=message.date or received,
            by="amazon copy",
            order_ids=message.order_ids,
            threads=(message.in_reply_to, *message.references),
        )
    elif verdict.type == "buyer_message" and verdict.amazon:
        _open_clock(conn, row_id, message, received, now)
    if not history and not _ignored(verdict):
        _queue_alert(conn, row_id, now)


def mark_answered(conn: sqlite3.Connection, row_ids: Sequence[int], now: datetime) -> None:
    """The sync saw ``\\Answered`` on these buyer messages: their clocks stop."""
    replyclock.mark_answered(conn, row_ids, now)


def mark_no_response(conn: sqlite3.Connection, row_ids: Sequence[int], now: datetime) -> None:
    """The sync saw ``$NoResponseNeeded`` on these buyer messages: their clocks stop."""
    replyclock.mark_no_response(conn, row_ids, now)


def _record_metrics(
    conn: sqlite3.Connection,
    row_id: int,
    message: Message,
    received: datetime,
    *,
    history: bool,
    now: datetime,
) -> None:
    """Keep the account-health metrics a mail states; alert on a crossed or fast change."""
    found = performance.record(conn, row_id, f"{message.subject}\n{message.text}", received)
    if found and not history:
        doc = performance.alert_document(found, message.sender_address)
        tags = ("alert", "account_health", "high")
        queue(conn, "alert", f"metrics:{row_id}", "high", tags, doc, now)


def open_clock_rows(conn: sqlite3.Connection) -> list[replyclock.ClockRow]:
    """The buyer messages whose flags the sync should poll."""
    return replyclock.open_clock_rows(conn)


def notify_operator(db_or_conn: Database | sqlite3.Connection, text: str, now: datetime) -> None:
    """A note about triage itself (a backfill, a problem) for the seller."""
    doc = Document("triage", (text,), [])
    key = f"operator:{now.isoformat()}:{hashlib.sha256(text.encode()).hexdigest()[:12]}"
    if isinstance(db_or_conn, Database):
        with db_or_conn.transaction() as conn:
            queue(conn, "operator", key, "normal", ("operator", "digest"), doc, now)
    else:
        queue(db_or_conn, "operator", key, "normal", ("operator", "digest"), doc, now)


def _ignored(verdict: Verdict) -> bool:
    return any(a.kind == "ignore" for a in verdict.actions)


def wants_alert(entry: digests.Entry, actions: Sequence[str], policy: NotifyPolicy) -> bool:
    """Pushed at once: the verdict asked for it.

    The rules (their ``defaults:`` and each rule's actions) decide between alert and
    digest; ``notify: alert:`` only speaks for a verdict that chose neither, and never
    for suspected phishing, which the digest reports.
    """
    if "alert" in actions:
        return True
    if "ignore" in actions or "digest" in actions or entry.suspicious:
        return False
    return entry.severity in policy.alert_severities or entry.type in policy.alert_types


def _queue_alert(conn: sqlite3.Connection, row_id: int, now: datetime) -> None:
    conn.execute(
        "INSERT OR IGNORE INTO alert_queue (message_row, queued_at) VALUES (?, ?)",
        (row_id, now.isoformat()),
    )


def _is_confirmation(message: Message, verdict: Verdict) -> bool:
    """Amazon's copy of a message the seller sent to a buyer."""
    if not verdict.amazon:
        return False
    if message.notification_type in CONFIRMATION_TYPES:
        return True
    return (
        message.notification_type not in BUYER_MESSAGE_TYPES
        and bool(SENT_COPY.search(message.subject))
        and bool(message.order_ids)
    )


def _stop_by_sent_copy(conn: sqlite3.Connection, message: Message, now: datetime) -> None:
    relays = [a.strip() for a in re.split(r"[,\s]+", message.to) if "@" in a]
    replyclock.stop_thread(
        conn,
        answered_at=message.date or now,
        by="sent folder",
        relays=relays,
        threads=(message.in_reply_to, *message.references),
    )


def _open_clock(
    conn: sqlite3.Connection, row_id: int, message: Message, received: datetime, now: datetime
) -> None:
    if received + replyclock.REPLY_WINDOW <= now:
        return  # backfilled and long past: nothing left to remind
    relay = message.reply_to or message.sender_address
    replyclock.open_clock(
        conn,
        row_id,
        received_at=received,
        order_id=message.order_id,
        thread=message.message_id,
        relay=relay,
        buyer_name=message.buyer_name,
        subject=message.subject,
    )


DEADLINE_CHARS = 6000
# A date the mail itself gives: "respond by November 26, 2025", "before 26/11/2025".
DEADLINE_TEXT = re.compile(
    r"\b(?:respond|response|reply|appeal|provide|submit|act|verify)\b[^.\n]{0,80}?"
    r"\b(?:by|before|no later than|until)\s+(?:\w+day,?\s+)?"
    r"(?P<date>\w+\.? \d{1,2},? \d{4}|\d{1,2} \w+\.? \d{4}|\d{4}-\d{2}-\d{2})",
    re.IGNORECASE,
)
WITHIN_DAYS = re.compile(
    r"\b(?:respond|response|reply|appeal)\b[^.\n]{0,60}?\bwithin\s+(?P<n>\d{1,2})\s+days?\b",
    re.IGNORECASE,
)
DATE_FORMATS = (
    "%B %d, %Y",
    "%B %d %Y",
    "%b %d, %Y",
    "%b %d %Y",
    "%d %B %Y",
    "%d %b %Y",
    "%Y-%m-%d",
)


def claim_label(sender: str, subject: str, notification_type: str = "") -> str:
    """``A-to-z claim``, ``Chargeback`` or ``Claim``, from the sender and subject."""
    blob = f"{sender} {subject} {notification_type}".lower()
    if "atoz" in blob or "a-to-z" in blob or "a_z_claim" in blob:
        return "A-to-z claim"
    if "chargeback" in blob or sender.lower().startswith("cb-"):
        return "Chargeback"
    return "Claim"


def find_deadline(message: Message, verdict: Verdict, received: datetime) -> datetime | None:
    """The date by which the seller must act: the mail's own, else Amazon's usual terms."""
    if verdict.type == "buyer_message":
        return received + replyclock.REPLY_WINDOW
    if verdict.severity not in ("critical", "high"):
        return None  # nothing the seller must act on by a date
    # Amazon states the deadline near the top; the rest is help text and footers.
    text = f"{message.subject}\n{message.text[:DEADLINE_CHARS]}"
    match = DEADLINE_TEXT.search(text)
    if match:
        given = _parse_date(match["date"])
        if given is not None:
            return given
    match = WITHIN_DAYS.search(text)
    if match:
        return received + timedelta(days=int(match["n"]))
    if verdict.type == "claim" and verdict.severity == "critical":
        label = claim_label(message.sender_address, message.subject, message.notification_type)
        if label in CLAIM_DAYS:
            return received + timedelta(days=CLAIM_DAYS[label])
    return None


def _parse_date(text: str) -> datetime | None:
    text = " ".join(text.replace(".", "").split())
    for fmt in DATE_FORMATS:
        try:
            parsed = datetime.strptime(text, fmt)
        except ValueError:
            continue
        # The end of the day named: Amazon counts the whole day.
        return parsed.replace(hour=23, minute=59, tzinfo=UTC)
    return None


def _record_deadline(
    conn: sqlite3.Connection, row_id: int, message: Message, verdict: Verdict, received: datetime
) -> None:
    deadline = find_deadline(message, verdict, received)
    if deadline is not None:
        conn.execute(
            "UPDATE messages SET deadline = ? WHERE id = ? AND deadline IS NULL",
            (deadline.isoformat(), row_id),
        )


# --- queueing and delivery ---------------------------------------------------------------


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
            digests.clean(doc.title, 250).strip(),
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


def deliver_due(
    db: Database,
    settings: Settings,
    now: datetime,
    *,
    policy: NotifyPolicy | None = None,
    targets: Sequence[Target] | None = None,
) -> DeliveryReport:
    """Queue what has come due (alerts, reminders, digests, silence), then send the outbox.

    ``policy`` is the notify section of the rules the caller holds (the defaults when
    None); the file on disk is never read here.
    """
    policy = policy or NotifyPolicy()
    tz = timezone(settings)
    targets = load_targets(settings) if targets is None else targets
    with _SENDING:
        with db.transaction() as conn:
            compose_alerts(conn, policy, now, tz)
            queue_reminders(conn, policy, now, tz)
            watch_silence(conn, policy, now)
            queue_digests(conn, policy, now, tz)
            expand(conn, targets, policy, now)
        return send_outbox(db, targets, now)


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


def quiet_until(policy: NotifyPolicy, now: datetime, tz: ZoneInfo) -> datetime | None:
    """When quiet hours end, if ``now`` is inside them."""
    if policy.quiet_hours is None:
        return None
    start, end = policy.quiet_hours
    local = now.astimezone(tz)
    t = local.time()
    inside = start <= t < end if start <= end else (t >= start or t < end)
    if not inside:
        return None
    end_day = local.date() + timedelta(days=1 if start > end and t >= start else 0)
    return datetime.combine(end_day, end, tzinfo=tz)


def _hold(policy: NotifyPolicy, severity: str, now: datetime, tz: ZoneInfo) -> datetime:
    if severity == "critical":
        return now
    return quiet_until(policy, now, tz) or now


def compose_alerts(
    conn: sqlite3.Connection, policy: NotifyPolicy, now: datetime, tz: ZoneInfo
) -> None:
    """Turn every queued alert into one grouped notification."""
    rows = conn.execute(
        """
        SELECT m.*, q.message_row FROM alert_queue q JOIN messages m ON m.id = q.message_row
        WHERE q.notification_id IS NULL ORDER BY q.message_row
        """
    ).fetchall()
    wanted = [
        r for r in rows if wants_alert(digests.entry_from_row(r), json.loads(r["actions"]), policy)
    ]
    # Mail that is not pushed is done here; the digest reports it.
    conn.executemany(
        "UPDATE alert_queue SET notification_id = 0 WHERE message_row = ?",
        [(r["id"],) for r in rows if r not in wanted],
    )
    if not wanted:
        return
    entries = sorted((digests.entry_from_row(r) for r in wanted), key=digests.Entry.sort_key)
    genuine = [e for e in entries if not e.suspicious]
    # A phishing warning matters, but not enough to break quiet hours.
    severity = genuine[0].severity if genuine else "high"
    doc = alert_document(entries, now, tz)
    names = ["alert", severity, *(e.type for e in entries if not e.suspicious)]
    key = "alert:" + ",".join(str(e.row_id) for e in entries)
    queue(
        conn,
        "alert",
        key,
        severity,
        policy.tags_for(*dict.fromkeys(names)),
        doc,
        now,
        _hold(policy, severity, now, tz),
    )
    notification = conn.execute("SELECT id FROM notifications WHERE key = ?", (key,)).fetchone()
    conn.executemany(
        "UPDATE alert_queue SET notification_id = ? WHERE message_row = ?",
        [(notification["id"], e.row_id) for e in entries],
    )


def headline(entry: digests.Entry, now: datetime, tz: ZoneInfo) -> str:
    """``A-to-z claim on order 111-…: respond by Thu 26 Nov (3 days)``."""
    if entry.suspicious:
        return "Suspected phishing (not from Amazon): do not click its links"
    if entry.unreadable:
        sender = entry.sender or "an unknown sender"
        return f"Could not read a mail from {sender}: check Seller Central (not its links)"
    name = HEADLINES[entry.type]
    if entry.type == "claim":
        name = claim_label(entry.sender, entry.subject)
    on_order = f" on order {entry.order_id}" if entry.order_id else ""
    if entry.deadline is not None:
        return f"{name}{on_order}: {deadline_phrase(entry.deadline, now, tz)}"
    return f"{name}{on_order}"


def alert_document(entries: Sequence[digests.Entry], now: datetime, tz: ZoneInfo) -> Document:
    items: list[tuple[Inline, ...]] = []
    for entry in entries:
        parts: list[Inline] = [headline(entry, now, tz), " · ", entry.subject or "(no subject)"]
        parts += [" · possibly critical"] if entry.possibly_critical else []
        if entry.suspicious:
            parts += [" · from ", entry.sender or "(unknown sender)"]
        elif entry.link:
            parts += [" · ", Link("Open in Seller Central", entry.link)]
        items.append(tuple(parts))
    title = (
        headline(entries[0], now, tz)
        if len(entries) == 1
        else f"{len(entries)} Amazon notices need you"
    )
    return Document(
        title,
        (f"received {digests.when(entries[0].received_at, tz)}",),
        [Section("alerts", "Needs your attention", [Group("", items)])],
    )


def queue_reminders(
    conn: sqlite3.Connection, policy: NotifyPolicy, now: datetime, tz: ZoneInfo
) -> None:
    for reminder in replyclock.due_reminders(conn, now, policy.reminders):
        clock = reminder.clock
        who = clock.buyer_name or "a buyer"
        order = f" (order {clock.order_id})" if clock.order_id else ""
        if reminder.breached:
            title = f"24 hours passed without a reply to {who}{order}"
        else:
            title = f"Reply to {who}{order}: {digests.span(clock.left(now))} left"
        body = (
            f"Buyer message received {digests.when(clock.opened_at, tz)}; "
            f"the 24 hours end {digests.when(clock.due_at, tz)}.",
        )
        doc = Document(title, body, [Section("buyer", "Message", notes=[(clock.subject,)])])
        key = f"reminder:{clock.id}:{int(reminder.threshold.total_seconds())}"
        tags = policy.tags_for("alert", "reminder", "high", "buyer_message")
        queue(conn, "reminder", key, "high", tags, doc, now, _hold(policy, "high", now, tz))
        replyclock.record_reminder(conn, reminder)


def watch_silence(conn: sqlite3.Connection, policy: NotifyPolicy, now: datetime) -> None:
    """No Amazon mail for too long usually means it goes somewhere else: say so, once."""
    started = _state(conn, "watch_started")
    if started is None:
        _set_state(conn, "watch_started", now.isoformat())
        return
    row = conn.execute(
        "SELECT MAX(received_at) AS last FROM messages WHERE amazon = 1 AND suspicious = 0"
    ).fetchone()
    last = max(
        filter(None, [datetime.fromisoformat(started), _parse(row["last"]) if row else None])
    )
    if now - last < policy.silence_after or _state(conn, "silence_noticed") == last.isoformat():
        return
    hours = int((now - last).total_seconds() // 3600)
    doc = Document(
        f"No mail from Amazon for {hours} hours",
        (
            "Amazon usually writes every few days. Check Seller Central's notification "
            "preferences (Settings > Notification Preferences) and your spam folder.",
        ),
        [],
    )
    queue(
        conn,
        "silence",
        f"silence:{last.isoformat()}",
        "high",
        policy.tags_for("alert", "silence", "high"),
        doc,
        now,
    )
    _set_state(conn, "silence_noticed", last.isoformat())


def queue_digests(
    conn: sqlite3.Connection, policy: NotifyPolicy, now: datetime, tz: ZoneInfo
) -> None:
    for schedule, since in digests.due_schedules(conn, policy.digests, now, tz):
        queue_digest(conn, schedule, since, now, tz)


def queue_digest(
    conn: sqlite3.Connection,
    schedule: DigestSchedule,
    since: datetime | None,
    now: datetime,
    tz: ZoneInfo,
    title: str | None = None,
) -> bool:
    """Queue one digest if it has anything to say; the schedule's window moves on anyway."""
    digest = digests.build_digest(
        conn,
        title=title or f"Amazon mail: {schedule.name} digest, {digests.day(now, tz)}",
        since=since,
        until=now,
        severities=schedule.severities,
        tz=tz,
    )
    digests.record_run(conn, schedule.name, now)
    if digest.is_empty():
        return False
    doc = digests.to_document(digest, tz, schedule.max_items)
    return queue(
        conn,
        "digest",
        f"digest:{schedule.name}:{now.isoformat()}",
        "normal",
        ("digest", *schedule.tags),
        doc,
        now,
    )


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
        tags = json.loads(row["tags"])
        chosen = [t for t in targets if t.wants(tags)]
        if not chosen:
            chosen = default_targets(targets)
            log.warning(
                "no notification target takes the tags %s of %r: sent to the default "
                "target(s) instead; give a target one of these tags or route them in "
                "rules.yaml (notify: route:)",
                ", ".join(tags), row["title"],
            )
        for target in chosen:
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


def _state(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM notify_state WHERE key = ?", (key,)).fetchone()
    return row["value"] if row else None


def _set_state(conn: sqlite3.Connection, key: str, value: str) -> None:
    conn.execute(
        "INSERT INTO notify_state (key, value) VALUES (?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


def _parse(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


# --- commands --------------------------------------------------------------------------


def notify_command(args: argparse.Namespace) -> int:
    """``triage notify --test``: a test message to every target, each result shown masked."""
    from triage import settings as settings_module

    targets = load_targets(settings_module.from_env())
    if not targets:
        raise ConfigError("no notification target: set TRIAGE_NOTIFY_URLS or TRIAGE_APPRISE_CONFIG")
    failed = 0
    for target in targets:
        title = "triage test notification"
        body = "If you can read this, triage can reach you here."
        try:
            send(target, title, body, "text")
        except NotifyError:
            failed += 1
            print(f"FAILED  {target.label}")
        else:
            print(f"ok      {target.label}")
    return 1 if failed else 0


def digest_command(args: argparse.Namespace) -> int:
    """``triage digest --now`` sends the pending digest; ``--preview`` prints it (and with
    ``--html FILE`` writes the HTML mail there, to open in a browser).

    It lives here, not in :mod:`triage.digest`: sending needs the outbox, and the digest
    module must not import the module that imports it.
    """
    if args.html and not args.preview:
        raise ConfigError("--html goes with --preview")
    return digest_now(preview=bool(args.preview), html=args.html)


def digest_now(*, preview: bool, now: datetime | None = None, html: str | None = None) -> int:
    """Send (or print) everything not yet in a digest, in one digest, right now."""
    from triage import settings as settings_module

    settings = settings_module.from_env()
    try:
        policy = policy_from_file(settings.rules_path)  # read once, for this one command
    except RulesError as exc:
        # The seller asked for the digest: a broken rules file must not cost it.
        print(f"warning: {exc}; the digest uses the default notify settings", file=sys.stderr)
        policy = NotifyPolicy()
    tz = timezone(settings)
    now = now or datetime.now(UTC)
    db = Database(settings.database_path)
    try:
        return _digest_now(db, settings, policy, tz, now, preview, html)
    finally:
        db.close()


def _digest_now(
    db: Database,
    settings: Settings,
    policy: NotifyPolicy,
    tz: ZoneInfo,
    now: datetime,
    preview: bool,
    html: str | None = None,
) -> int:
    rolling = [s for s in policy.digests if s.rolling()] or list(policy.digests)
    starts = [digests.covered_until(db.conn, s.name) for s in rolling]
    since = None if not starts or None in starts else min(s for s in starts if s)
    combined = DigestSchedule(
        "now",
        severities=tuple(sorted({v for s in rolling for v in s.severities}, key=severity_rank))
        or SEVERITIES,
        tags=tuple(dict.fromkeys(t for s in rolling for t in s.tags)) or ("digest",),
    )
    if preview:
        digest = digests.build_digest(
            db.conn,
            title="Amazon mail digest (preview)",
            since=since,
            until=now,
            severities=combined.severities,
            tz=tz,
        )
        doc = digests.to_document(digest, tz)
        print(render(doc, "text"), end="")
        if html:
            digests.write_html(doc, html)
        return 0
    targets = load_targets(settings)
    if not targets:
        # Queued now, it would be marked as the period's digest and reach nobody.
        print("no notification target: set TRIAGE_NOTIFY_URLS or TRIAGE_APPRISE_CONFIG; "
              "nothing sent, the digest waits")
        return 1
    with db.transaction() as conn:
        queued = queue_digest(
            conn, combined, since, now, tz, title=f"Amazon mail digest, {digests.day(now, tz)}"
        )
        for schedule in rolling:
            digests.record_run(conn, schedule.name, now)
        expand(conn, targets, policy, now)
    if not queued:
        print("Nothing new since the last digest; nothing sent.")
        return 0
    with _SENDING:
        report = send_outbox(db, targets, now)
    if not report.sent and not report.failed:
        print("the digest is queued; a target that is backing off takes it on its next try")
        return 1
    print(
        f"digest sent to {report.sent} target(s)"
        + (f"; {report.failed} failed and will be retried" if report.failed else "")
    )
    return 1 if report.failed else 0


# --- check-rules ----------------------------------------------------------------------


def route_warnings(loaded: Rules) -> list[str]:
    """Tags the notify section routes to that no configured target carries."""
    from triage import settings as settings_module

    try:
        targets = load_targets(settings_module.from_env())
    except ConfigError as exc:
        return [f"notification targets not checked: {logs.mask(str(exc))}"]
    if not targets or any(not t.tags or "always" in t.tags for t in targets):
        return []  # with no targets nothing is checked; an untagged target takes every tag
    known = {tag for t in targets for tag in t.tags}
    policy: NotifyPolicy = loaded.section("notify")
    warnings = []
    for name, tags in policy.routes.items():
        missing = [tag for tag in tags if tag not in known]
        if missing:
            warnings.append(
                f"notify: route: {name}: no notification target has the tag "
                f"{', '.join(missing)} (targets' tags: {', '.join(sorted(known))})"
            )
    return warnings


rules.register_check(route_warnings)
