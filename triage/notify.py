"""Telling the seller: immediate alerts, reply reminders, digests, silence.

Nothing is sent straight from a decision. The sync's hook (:func:`after_verdict`)
only records, inside the sync's own transaction, what must be said: an alert to
push, a reply clock to open or stop. :func:`deliver_due`, called by the daemon
loop, turns that into notifications (several alerts arriving together become one,
digests come when :mod:`triage.schedule` says they are due), hands them to
:mod:`triage.outbox`, which writes one row per target that :mod:`triage.targets`
chooses, and sends the outbox.

Sending never reads rules.yaml: the daemon passes the notify policy of the last good
rules it holds, so a broken edit on disk cannot stop a single notification.

This module is the face of notifying for the rest of triage: the sync's hooks, the
daemon's :func:`deliver_due`, the ``triage notify`` and ``triage digest`` commands,
and the outbox's and targets' names the daemon, ``doctor`` and ``status`` use.

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
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from triage import deadline, performance, replyclock
from triage import digest as digests
from triage.document import Document, Group, Inline, Link, Section, render
from triage.errors import ConfigError, NotifyError, RulesError
from triage.message import Message
from triage.notifypolicy import NotifyPolicy, policy_from_file, timezone
from triage.outbox import (
    SENDING,
    DeliveryReport,
    expand,
    oldest_waiting_critical,
    pending,
    queue,
    send_outbox,
)
from triage.schedule import DigestSchedule, covered_until, due_schedules, record_run
from triage.settings import Settings
from triage.state import Database, register_schema
from triage.targets import Target, load_targets, send
from triage.taxonomy import SEVERITIES, severity_rank
from triage.verdict import Verdict

__all__ = [
    "DeliveryReport",
    "Target",
    "after_verdict",
    "deliver_due",
    "digest_command",
    "digest_now",
    "expand",
    "load_targets",
    "mark_answered",
    "mark_no_response",
    "notify_command",
    "notify_operator",
    "oldest_waiting_critical",
    "open_clock_rows",
    "pending",
    "queue",
    "queue_digest",
    "send",
]

log = logging.getLogger(__name__)

CONFIRMATION_TYPES = ("BBC_MESSAGE_CONFIRMATION_TO_MERCHANT",)
BUYER_MESSAGE_TYPES = ("BBC_MESSAGE_SENT_TO_MERCHANT",)
SENT_COPY = re.compile(r"\b(message sent|sent message|your message to)\b", re.IGNORECASE)


# What must still be pushed about a message (grouped into one alert when sent), and
# what the silence watch remembers.
SCHEMA = """
    CREATE TABLE IF NOT EXISTS alert_queue (
        message_row INTEGER PRIMARY KEY,
        queued_at TEXT NOT NULL,
        notification_id INTEGER
    );
    CREATE TABLE IF NOT EXISTS notify_state (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    """
register_schema(SCHEMA)


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


def _record_deadline(
    conn: sqlite3.Connection, row_id: int, message: Message, verdict: Verdict, received: datetime
) -> None:
    found = deadline.find_deadline(message, verdict, received)
    if found is not None:
        conn.execute(
            "UPDATE messages SET deadline = ? WHERE id = ? AND deadline IS NULL",
            (found.isoformat(), row_id),
        )


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
    with SENDING:
        with db.transaction() as conn:
            compose_alerts(conn, policy, now, tz)
            queue_reminders(conn, policy, now, tz)
            watch_silence(conn, policy, now)
            queue_digests(conn, policy, now, tz)
            expand(conn, targets, policy, now)
        return send_outbox(db, targets, now)


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
    name = digests.WHAT[entry.type]
    if entry.type == "claim":
        name = deadline.claim_label(entry.sender, entry.subject)
    on_order = f" on order {entry.order_id}" if entry.order_id else ""
    if entry.deadline is not None:
        return f"{name}{on_order}: {digests.deadline_phrase(entry.deadline, now, tz)}"
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
    for schedule, since in due_schedules(conn, policy.digests, now, tz):
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
    record_run(conn, schedule.name, now)
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
    starts = [covered_until(db.conn, s.name) for s in rolling]
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
            record_run(conn, schedule.name, now)
        expand(conn, targets, policy, now)
    if not queued:
        print("Nothing new since the last digest; nothing sent.")
        return 0
    with SENDING:
        report = send_outbox(db, targets, now)
    if not report.sent and not report.failed:
        print("the digest is queued; a target that is backing off takes it on its next try")
        return 1
    print(
        f"digest sent to {report.sent} target(s)"
        + (f"; {report.failed} failed and will be retried" if report.failed else "")
    )
    return 1 if report.failed else 0


