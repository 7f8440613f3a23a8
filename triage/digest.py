"""Prioritized digests: everything since the previous digest, most urgent first.

A digest is built from the state database into a small document (sections of
items), then rendered as HTML for email targets and as Markdown or plain text for
chat ones. Every piece of text that came from a mail is escaped for the format it
is rendered into, so a hostile subject can neither break the layout nor inject
links or markup. Links are only ever Seller Central links on Amazon's domains.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from triage import performance, sellercentral
from triage.deadline import claim_label
from triage.document import (
    SEVERITY_LABELS,
    Bar,
    Card,
    Chart,
    Document,
    Group,
    Inline,
    Link,
    Section,
    Strip,
    render,
)
from triage.errors import ConfigError
from triage.replyclock import Clock, ReplyRate, daily_rates, open_clocks, reply_rate
from triage.taxonomy import SEVERITIES, TYPES, severity_rank
from triage.verdict import POSSIBLY_CRITICAL

TYPE_LABELS: dict[str, str] = {
    "buyer_message": "Buyer messages",
    "order": "Orders",
    "return": "Returns and refunds",
    "claim": "Claims and chargebacks",
    "feedback": "Feedback and reviews",
    "account_health": "Account health",
    "policy": "Policy warnings",
    "message_blocked": "Messages not delivered",
    "payment": "Payments",
    "inventory": "Inventory and listings",
    "marketing": "Amazon news and offers",
    "other": "Other mail",
}
# What one mail of each type is, for a card's headline.
WHAT: dict[str, str] = {
    "buyer_message": "Buyer message",
    "order": "Order notice",
    "return": "Return or refund",
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
# Amazon's bar for answering buyer messages within 24 hours.
REPLY_TARGET = 0.90
CARD_LEVELS = ("critical", "high")


# --- what a digest holds ---------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One recorded mail as a digest shows it."""

    row_id: int
    type: str
    severity: str
    subject: str
    sender: str
    order_id: str | None
    link: str
    deadline: datetime | None
    received_at: datetime
    suspicious: bool
    rescued: bool
    # The seller has answered this buyer message: its deadline no longer applies.
    answered: bool = False
    # The mail could not be read: only its sender and subject are known.
    unreadable: bool = False
    possibly_critical: bool = False  # the model was unsure it is critical (a verdict tag)

    def sort_key(self) -> tuple[int, datetime, datetime]:
        far = datetime.max.replace(tzinfo=self.received_at.tzinfo)
        return (severity_rank(self.severity), self.deadline or far, self.received_at)


@dataclass
class Digest:
    """Everything one digest reports, before it is rendered."""

    title: str
    since: datetime | None
    until: datetime
    entries: list[Entry] = field(default_factory=list)
    phishing: list[Entry] = field(default_factory=list)
    rescued: list[Entry] = field(default_factory=list)
    open_clocks: list[Clock] = field(default_factory=list)
    rates: list[ReplyRate] = field(default_factory=list)
    daily: list[tuple[date, ReplyRate]] = field(default_factory=list)
    metrics: list[performance.Series] = field(default_factory=list)
    # What each account-health mail of the digest stated, by its row.
    stated: dict[int, list[performance.Reading]] = field(default_factory=dict)

    def is_empty(self) -> bool:
        return not (self.entries or self.phishing or self.rescued)


def build_digest(
    conn: sqlite3.Connection,
    *,
    title: str,
    since: datetime | None,
    until: datetime,
    severities: Iterable[str] = SEVERITIES,
    tz: ZoneInfo | None = None,
) -> Digest:
    """Collect the mail recorded in (since, until], plus open clocks, reply rates and the
    account-health metrics Amazon reported."""
    wanted = set(severities)
    digest = Digest(title=title, since=since, until=until)
    for entry in _entries(conn, since, until):
        if entry.suspicious:
            digest.phishing.append(entry)
            continue
        if entry.rescued:
            digest.rescued.append(entry)
        if entry.severity in wanted:
            digest.entries.append(entry)
    digest.entries.sort(key=Entry.sort_key)
    digest.open_clocks = open_clocks(conn)
    digest.rates = [reply_rate(conn, until, 7), reply_rate(conn, until, 30)]
    digest.daily = daily_rates(conn, until, 7, tz or ZoneInfo("UTC"))
    digest.metrics = performance.history(conn, until)
    digest.stated = performance.stated_in(
        conn, [e.row_id for e in digest.entries if e.type == "account_health"]
    )
    return digest


def _entries(conn: sqlite3.Connection, since: datetime | None, until: datetime) -> list[Entry]:
    # The window is narrowed in SQL (a day's margin either side: stored times may carry
    # another offset or precision) so a digest reads its own days, not the whole history;
    # the exact bounds are applied below.
    margin = timedelta(days=1)
    low = (since - margin).isoformat() if since is not None else ""
    rows = conn.execute(
        "SELECT m.*, c.answered_at FROM messages m "
        "LEFT JOIN reply_clocks c ON c.message_row = m.id "
        "WHERE m.processed_at >= ? AND m.processed_at <= ? "
        # Unreadable mail is shown ("could not read"), except spam-folder garbage that
        # does not even present as Amazon.
        "AND (m.error IS NULL OR m.folder_role != 'junk' OR m.severity = 'critical') "
        "ORDER BY m.received_at, m.id",
        (low, (until + margin).isoformat()),
    ).fetchall()
    entries = []
    for row in rows:
        processed = datetime.fromisoformat(row["processed_at"])
        if (since is not None and processed <= since) or processed > until:
            continue
        if "ignore" in json.loads(row["actions"] or "[]"):
            continue
        entries.append(entry_from_row(row))
    return entries


def entry_from_row(row: sqlite3.Row) -> Entry:
    """A ``messages`` row as a digest entry."""
    return Entry(
        row_id=row["id"],
        type=row["type"] if row["type"] in TYPES else "other",
        severity=row["severity"] if row["severity"] in SEVERITIES else "low",
        subject=row["subject"],
        sender=row["sender"],
        order_id=row["order_id"],
        link=row["link"] or "",
        deadline=_parse(row["deadline"]),
        received_at=datetime.fromisoformat(row["received_at"]),
        suspicious=bool(row["suspicious"]),
        rescued=bool(row["rescued"]),
        # sqlite3.Row's `in` looks at values, so the column names are asked for.
        answered="answered_at" in row.keys() and row["answered_at"] is not None,  # noqa: SIM118
        unreadable="error" in row.keys() and bool(row["error"]),  # noqa: SIM118
        possibly_critical=POSSIBLY_CRITICAL in json.loads(row["tags"] or "[]"),
    )


# --- wording -------------------------------------------------------------------------


def when(moment: datetime, tz: ZoneInfo) -> str:
    """``Thu 26 Nov 09:12`` in the seller's time zone."""
    return moment.astimezone(tz).strftime("%a %d %b %H:%M")


def day(moment: datetime, tz: ZoneInfo) -> str:
    return moment.astimezone(tz).strftime("%a %d %b")


def span(delta: timedelta) -> str:
    """``3 days``, ``2 days 23 h``, ``5 hours``, ``40 minutes``: what reads well."""
    seconds = max(0, int(delta.total_seconds()))
    # Rounded down: a seller is better told too little time than too much.
    if seconds >= 2 * 86400:
        days, hours = seconds // 86400, seconds % 86400 // 3600
        return f"{days} days {hours} h" if hours and days < 3 else f"{days} days"
    if seconds >= 2 * 3600:
        return f"{seconds // 3600} hours"
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    return f"{seconds // 60} minutes"


def deadline_phrase(deadline: datetime, now: datetime, tz: ZoneInfo) -> str:
    """``respond by Thu 26 Nov (3 days)`` or ``response overdue since Thu 26 Nov``."""
    if deadline <= now:
        return f"response overdue since {day(deadline, tz)}"
    return f"respond by {day(deadline, tz)} ({span(deadline - now)})"


def due_phrase(deadline: datetime, now: datetime, tz: ZoneInfo) -> str:
    """``respond by Thu 27 Nov · 3 days left`` or ``response overdue since Thu 27 Nov``."""
    if deadline <= now:
        return deadline_phrase(deadline, now, tz)
    return f"respond by {day(deadline, tz)} · {span(deadline - now)} left"


def entry_item(entry: Entry, now: datetime, tz: ZoneInfo) -> tuple[Inline, ...]:
    parts: list[Inline] = [when(entry.received_at, tz), " · "]
    if entry.order_id:
        parts.append(f"order {entry.order_id} · ")
    if entry.unreadable:
        parts.append(f"could not read this mail from {entry.sender or 'an unknown sender'}: ")
    parts.append(entry.subject or "(no subject)")
    if entry.possibly_critical and entry.severity != "critical":
        parts.append(" · possibly critical")
    if entry.answered:
        parts.append(" · answered")
    elif entry.deadline is not None:
        parts.append(f" · {deadline_phrase(entry.deadline, now, tz)}")
    if entry.link and not entry.suspicious:
        parts += [" · ", Link("Seller Central", entry.link)]
    return tuple(parts)


@dataclass(frozen=True)
class Thread:
    """Mail about one order (or one mail alone): ``lead`` is the most urgent of it."""

    lead: Entry
    entries: tuple[Entry, ...]


def threads_of(entries: Sequence[Entry]) -> list[Thread]:
    """Mail about the same order grouped into one thread, most urgent thread first.

    A buyer's message, the claim, the return and the refund of one order then read as
    one story, in the order it happened, under its most urgent mail.
    """
    by_order: dict[str, list[Entry]] = {}
    threads: list[Thread] = []
    for entry in entries:
        if entry.order_id:
            by_order.setdefault(entry.order_id, []).append(entry)
        else:
            threads.append(Thread(entry, (entry,)))
    for group in by_order.values():
        story = tuple(sorted(group, key=lambda e: (e.received_at, e.row_id)))
        threads.append(Thread(min(group, key=Entry.sort_key), story))
    # Within a level, what is already answered goes after what still waits for the seller.
    return sorted(
        threads,
        key=lambda t: (severity_rank(t.lead.severity), t.lead.answered, t.lead.sort_key()),
    )


def headline(entry: Entry, size: int = 1) -> str:
    """What happened, in a few words: ``A-to-z claim on order 111-...``."""
    name = WHAT[entry.type]
    if entry.type == "claim":
        name = claim_label(entry.sender, entry.subject)
    on_order = f" on order {entry.order_id}" if entry.order_id else ""
    more = f" ({size} mails)" if size > 1 else ""
    return f"{name}{on_order}{more}"


def button_for(entry: Entry) -> Link | None:
    """The Seller Central page for a mail; never one for suspected phishing."""
    if entry.suspicious:
        return None
    found = sellercentral.load().button(entry.type, entry.sender, entry.link, entry.order_id)
    return Link(*found) if found else None


def card_for(
    thread: Thread,
    now: datetime,
    tz: ZoneInfo,
    stated: dict[int, list[performance.Reading]] | None = None,
) -> Card:
    lead = thread.lead
    # Past-target metrics first: they are why the mail matters.
    readings = sorted((stated or {}).get(lead.row_id, []), key=lambda r: not r.breaches())
    deadline, overdue = "", False
    if lead.answered:
        deadline = "answered"
    elif lead.deadline is not None:
        overdue = lead.deadline <= now
        deadline = due_phrase(lead.deadline, now, tz)
    story: tuple[str, ...] = ()
    if len(thread.entries) > 1:
        story = tuple(
            f"{when(e.received_at, tz)} · {WHAT[e.type]} · {e.subject or '(no subject)'}"
            for e in thread.entries
        )
    subject = lead.subject
    if lead.unreadable:
        # Never silent: the seller sees who sent it even when nothing else could be read.
        sender = lead.sender or "an unknown sender"
        subject = f"could not read this mail from {sender}: {subject or '(no subject)'}"
    if lead.possibly_critical and lead.severity != "critical":
        subject = f"possibly critical: {subject or '(no subject)'}"
    return Card(
        severity=lead.severity,
        headline=headline(lead, len(thread.entries)),
        subject=subject,
        received=f"received {when(lead.received_at, tz)}",
        deadline=deadline,
        overdue=overdue,
        button=button_for(lead),
        story=story,
        facts=tuple(r.describe() for r in readings),
    )


def to_document(digest: Digest, tz: ZoneInfo, max_items: int = 25) -> Document:
    """Lay a digest out: the strip, levels most urgent first, rescued, phishing, clocks,
    reply rate, account health, and the period in bars."""
    since = f"since {when(digest.since, tz)}" if digest.since else "since triage started"
    intro: tuple[Inline, ...] = (f"{len(digest.entries)} messages {since}",)
    threads = threads_of(digest.entries)
    sections = [
        _level_section(digest, [t for t in threads if t.lead.severity == level], tz, max_items)
        for level in SEVERITIES
        if any(t.lead.severity == level for t in threads)
    ]
    if digest.rescued:
        sections.append(_rescued_section(digest, tz, max_items))
    if digest.phishing:
        sections.append(_phishing_section(digest, tz, max_items))
    sections.append(_clocks_section(digest, tz, max_items))
    sections.append(_reply_rate_section(digest, tz))
    if digest.metrics:
        sections.append(_health_section(digest.metrics, tz))
    if digest.entries:
        sections.append(_period_section(digest))
    return Document(digest.title, intro, sections, _strip(digest, threads, tz))


def _strip(digest: Digest, threads: Sequence[Thread], tz: ZoneInfo) -> Strip:
    counts = Counter(e.severity for e in digest.entries)
    strip_counts = tuple((level, counts[level]) for level in SEVERITIES)
    first = _first_thing(digest, threads, tz)
    if first is None:
        return Strip(strip_counts, ("Nothing needs you now.",))
    return Strip(strip_counts, first[0], first[1])


def _first_thing(
    digest: Digest, threads: Sequence[Thread], tz: ZoneInfo
) -> tuple[tuple[Inline, ...], Link | None] | None:
    """A critical mail first; then the buyer waiting longest; then a high mail."""
    urgent = [t for t in threads if not t.lead.answered]
    critical = [t for t in urgent if t.lead.severity == "critical"]
    if critical:
        return _first_of(critical[0].lead, digest.until, tz)
    if digest.open_clocks:
        clock = digest.open_clocks[0]
        left = clock.left(digest.until)
        state = f"{span(left)} left" if left > timedelta(0) else f"overdue by {span(-left)}"
        who = clock.buyer_name or "a buyer"
        order = f" about order {clock.order_id}" if clock.order_id else ""
        host = sellercentral.load()
        found = host.button("buyer_message", "", "", clock.order_id)
        return (f"Answer {who}{order} ({state}).",), Link(*found) if found else None
    high = [t for t in urgent if t.lead.severity == "high"]
    if high:
        return _first_of(high[0].lead, digest.until, tz)
    return None


def _first_of(
    entry: Entry, now: datetime, tz: ZoneInfo
) -> tuple[tuple[Inline, ...], Link | None]:
    text = headline(entry)
    if entry.deadline is not None:
        text += f": {due_phrase(entry.deadline, now, tz)}"
    return (text,), button_for(entry)


def _level_section(
    digest: Digest, threads: Sequence[Thread], tz: ZoneInfo, max_items: int
) -> Section:
    level = threads[0].lead.severity
    heading = f"{SEVERITY_LABELS[level]} ({len(threads)})"
    if level in CARD_LEVELS:
        cards = [card_for(t, digest.until, tz, digest.stated) for t in threads]
        more = len(cards) - max_items
        notes: list[tuple[Inline, ...]] = [(f"and {more} more",)] if more > 0 else []
        return Section(level, heading, cards=cards[:max_items], notes=notes)
    # Types appear in the order of their most urgent entry (threads are sorted already).
    types = list(dict.fromkeys(t.lead.type for t in threads))
    groups = []
    for kind in types:
        items = [_thread_item(t, digest.until, tz) for t in threads if t.lead.type == kind]
        groups.append(
            Group(
                f"{TYPE_LABELS[kind]} ({len(items)})",
                items[:max_items],
                more=max(0, len(items) - max_items),
            )
        )
    return Section(level, heading, groups)


def _thread_item(thread: Thread, now: datetime, tz: ZoneInfo) -> tuple[Inline, ...]:
    item = entry_item(thread.lead, now, tz)
    if len(thread.entries) == 1:
        return item
    story = " → ".join(f"{day(e.received_at, tz)} {WHAT[e.type].lower()}" for e in thread.entries)
    return (*item, f" · {story}")


def _rescued_section(digest: Digest, tz: ZoneInfo, max_items: int) -> Section:
    items = [(f"{TYPE_LABELS[e.type]}: ", *entry_item(e, digest.until, tz)) for e in digest.rescued]
    return Section(
        "rescued",
        f"Rescued from spam ({len(items)})",
        [Group("", items[:max_items], more=max(0, len(items) - max_items))],
        notes=[("Genuine Amazon mail found in the spam folder and moved back to the inbox.",)],
        tone="rescued",
    )


def _phishing_section(digest: Digest, tz: ZoneInfo, max_items: int) -> Section:
    # Never a link or a button: the text of these mails is shown, nothing of them is followed.
    items: list[tuple[Inline, ...]] = [
        (
            when(e.received_at, tz),
            " · from ",
            e.sender or "(unknown sender)",
            " · ",
            e.subject or "(no subject)",
        )
        for e in digest.phishing
    ]
    return Section(
        "phishing",
        f"Suspected phishing ({len(items)})",
        [Group("", items[:max_items], more=max(0, len(items) - max_items))],
        notes=[
            (
                "These pretend to be Amazon but are not from Amazon: do not click their links "
                "or sign in from them. They were left where they are.",
            )
        ],
        tone="phishing",
    )


def _clocks_section(digest: Digest, tz: ZoneInfo, max_items: int) -> Section:
    items: list[tuple[Inline, ...]] = []
    for clock in digest.open_clocks:
        left = clock.left(digest.until)
        state = f"{span(left)} left" if left > timedelta(0) else f"OVERDUE by {span(-left)}"
        who = clock.buyer_name or "a buyer"
        order = f" · order {clock.order_id}" if clock.order_id else ""
        items.append((f"{state} · {who}{order} · ", clock.subject or "(no subject)"))
    notes: list[tuple[Inline, ...]] = (
        [
            (
                "Nothing to answer? Set the keyword $NoResponseNeeded on the message in your "
                "mail client, or run: triage reply-clock no-response ORDER-ID",
            )
        ]
        if items
        else [("No buyer message is waiting for an answer.",)]
    )
    groups = [Group("", items[:max_items], more=max(0, len(items) - max_items))] if items else []
    return Section("open-buyer-messages", f"Open buyer messages ({len(items)})", groups, notes)


def _reply_rate_section(digest: Digest, tz: ZoneInfo) -> Section:
    bars = []
    for when_, rate in digest.daily:
        if rate.percent is None:
            bars.append(Bar(when_.strftime("%a %d %b"), 0.0, "none due"))
            continue
        tone = "ok" if rate.percent >= REPLY_TARGET * 100 else "bad"
        text = f"{rate.percent:.0f}% ({rate.in_time}/{rate.needing})"
        bars.append(Bar(when_.strftime("%a %d %b"), rate.percent / 100, text, tone))
    charts = []
    if bars:
        charts.append(
            Chart(
                "Answered within 24 hours, per day",
                tuple(bars),
                target=REPLY_TARGET,
                target_label="Amazon's 90%",
                note="Messages marked “no response needed” count as not needing a reply.",
            )
        )
    return Section(
        "reply-rate",
        "Reply rate within 24 hours",
        notes=[(rate.describe(),) for rate in digest.rates],
        charts=charts,
    )


def _health_section(series: Sequence[performance.Series], tz: ZoneInfo) -> Section:
    charts = [_metric_chart(s, tz) for s in series]
    breached = [s.metric.label for s in series if s.latest.breaches()]
    note = (
        f"Missing Amazon's target: {', '.join(breached)}."
        if breached
        else "Every metric Amazon reported is within its target."
    )
    return Section("account-health", "Account health metrics", notes=[(note,)], charts=charts)


def _metric_chart(series: performance.Series, tz: ZoneInfo) -> Chart:
    metric = series.metric
    scale = metric.scale(r.value for r in series.readings)
    bars = tuple(
        Bar(
            day(r.stated_at, tz),
            r.value / scale,
            metric.format(r.value),
            "bad" if r.breaches() else "ok",
        )
        for r in series.readings
    )
    return Chart(
        f"{metric.label} · {series.account}" if series.show_account else metric.label,
        bars,
        target=series.latest.target / scale,
        target_label=f"target {metric.comparison()} {metric.format(series.latest.target)}",
        note=series.trend(),
    )


def _period_section(digest: Digest) -> Section:
    by_type = Counter(e.type for e in digest.entries)
    top = max(by_type.values())
    type_bars = tuple(
        Bar(
            TYPE_LABELS[kind],
            n / top,
            str(n),
            min((e.severity for e in digest.entries if e.type == kind), key=severity_rank),
        )
        for kind, n in sorted(by_type.items(), key=lambda kv: (-kv[1], TYPES.index(kv[0])))
    )
    by_level = Counter(e.severity for e in digest.entries)
    level_top = max(by_level.values())
    level_bars = tuple(
        Bar(SEVERITY_LABELS[level], by_level[level] / level_top, str(by_level[level]), level)
        for level in SEVERITIES
    )
    return Section(
        "period",
        "This period at a glance",
        charts=[Chart("Mail by type", type_bars), Chart("Mail by severity", level_bars)],
    )


def _parse(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def write_html(doc: Document, path: str) -> None:
    try:
        Path(path).write_text(render(doc, "html"), encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"--html: cannot write {path}: {exc.strerror}") from exc
