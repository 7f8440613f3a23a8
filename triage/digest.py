"""Prioritized digests: everything since the previous digest, most urgent first.

A digest is built from the state database into a small document (sections of
items), then rendered as HTML for email targets and as Markdown or plain text for
chat ones. Every piece of text that came from a mail is escaped for the format it
is rendered into, so a hostile subject can neither break the layout nor inject
links or markup. Links are only ever Seller Central links on Amazon's domains.
"""

from __future__ import annotations

import argparse
import html
import json
import re
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo

from triage.replyclock import Clock, ReplyRate, open_clocks, reply_rate
from triage.state import register_schema
from triage.taxonomy import SEVERITIES, TYPES, is_amazon_domain, severity_rank
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
SEVERITY_LABELS = {"critical": "Critical", "high": "High", "normal": "Normal", "low": "Low"}
MAX_SUBJECT = 160
WHITESPACE = re.compile(r"\s+")
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# CommonMark lets any ASCII punctuation be escaped with a backslash.
MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~])")

# When each digest schedule last ran and up to when it covered the mail.
SCHEMA = """
    CREATE TABLE IF NOT EXISTS digest_runs (
        name TEXT PRIMARY KEY,
        last_run_at TEXT NOT NULL,
        covered_until TEXT
    );
    """
register_schema(SCHEMA)


# --- schedules -------------------------------------------------------------------------


@dataclass(frozen=True)
class DigestSchedule:
    """One digest of rules.yaml's ``notify: digests:`` list.

    ``every`` sends on an interval (``every: 1h``); ``at`` sends daily at a local time
    (``at: "08:00"``), and with ``weekday`` weekly (``weekday: monday``).
    """

    name: str
    severities: tuple[str, ...] = SEVERITIES
    tags: tuple[str, ...] = ("digest",)
    every: timedelta | None = None
    at: time | None = None
    weekday: int | None = None
    max_items: int = 25

    def next_after(self, last: datetime, tz: ZoneInfo) -> datetime:
        """The first send time strictly after ``last``."""
        if self.every is not None:
            return last + self.every
        at = self.at or time(8, 0)
        day = last.astimezone(tz).date()
        while True:
            candidate = datetime.combine(day, at, tzinfo=tz)
            weekday_ok = self.weekday is None or candidate.weekday() == self.weekday
            if candidate > last and weekday_ok:
                return candidate
            day += timedelta(days=1)


def due_schedules(
    conn: sqlite3.Connection, schedules: Sequence[DigestSchedule], now: datetime, tz: ZoneInfo
) -> list[tuple[DigestSchedule, datetime | None]]:
    """The schedules due now, each with the time its previous digest covered up to.

    A schedule seen for the first time starts counting from now; its first digest
    then covers everything triage has recorded so far.
    """
    due = []
    for schedule in schedules:
        row = conn.execute(
            "SELECT last_run_at, covered_until FROM digest_runs WHERE name = ?", (schedule.name,)
        ).fetchone()
        if row is None:
            conn.execute(
                "INSERT INTO digest_runs (name, last_run_at) VALUES (?, ?)",
                (schedule.name, now.isoformat()),
            )
            continue
        if schedule.next_after(datetime.fromisoformat(row["last_run_at"]), tz) <= now:
            due.append((schedule, _parse(row["covered_until"])))
    return due


def covered_until(conn: sqlite3.Connection, name: str) -> datetime | None:
    row = conn.execute("SELECT covered_until FROM digest_runs WHERE name = ?", (name,)).fetchone()
    return _parse(row["covered_until"]) if row else None


def record_run(conn: sqlite3.Connection, name: str, now: datetime) -> None:
    """The digest ``name`` now covers everything up to ``now``."""
    conn.execute(
        """
        INSERT INTO digest_runs (name, last_run_at, covered_until) VALUES (?, ?, ?)
        ON CONFLICT (name) DO UPDATE SET last_run_at = excluded.last_run_at,
                                         covered_until = excluded.covered_until
        """,
        (name, now.isoformat(), now.isoformat()),
    )


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

    def is_empty(self) -> bool:
        return not (self.entries or self.phishing or self.rescued)


def build_digest(
    conn: sqlite3.Connection,
    *,
    title: str,
    since: datetime | None,
    until: datetime,
    severities: Iterable[str] = SEVERITIES,
) -> Digest:
    """Collect the mail recorded in (since, until], plus open clocks and reply rates."""
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
    return digest


def _entries(conn: sqlite3.Connection, since: datetime | None, until: datetime) -> list[Entry]:
    rows = conn.execute(
        "SELECT m.*, c.answered_at FROM messages m "
        "LEFT JOIN reply_clocks c ON c.message_row = m.id "
        "WHERE m.error IS NULL ORDER BY m.received_at, m.id"
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
        possibly_critical=POSSIBLY_CRITICAL in json.loads(row["tags"] or "[]"),
    )


# --- the document model and its three renderings ----------------------------------------


@dataclass(frozen=True)
class Link:
    """A link to show; only Seller Central links on Amazon's domains are ever rendered."""

    label: str
    url: str


Inline = str | Link


@dataclass(frozen=True)
class Group:
    """A run of items under a small heading (a type within a severity level)."""

    heading: str
    items: list[tuple[Inline, ...]]
    more: int = 0


@dataclass(frozen=True)
class Section:
    anchor: str
    heading: str
    groups: list[Group] = field(default_factory=list)
    notes: list[tuple[Inline, ...]] = field(default_factory=list)


@dataclass(frozen=True)
class Document:
    title: str
    intro: tuple[Inline, ...]
    sections: list[Section]


def clean(text: str, limit: int = MAX_SUBJECT) -> str:
    """Mail text on one line: no control characters, no line breaks, bounded length."""
    # Runs of white space become one space; a leading or trailing one is kept, since
    # inline parts are joined as they are.
    flat = WHITESPACE.sub(" ", CONTROL.sub(" ", text))
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def escape_markdown(text: str) -> str:
    return MARKDOWN_SPECIAL.sub(r"\\\1", clean(text, 10_000))


def safe_url(url: str) -> str | None:
    """The URL if it is an https link to an Amazon domain, else None."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    if parts.scheme != "https" or not is_amazon_domain(parts.hostname or ""):
        return None
    return url.strip()


def render_text(doc: Document) -> str:
    lines = [clean(doc.title, 500).strip(), _inline_text(doc.intro), ""]
    for section in doc.sections:
        lines.append(f"== {section.heading} ==")
        lines.extend(_inline_text(note) for note in section.notes)
        for group in section.groups:
            if group.heading:
                lines.append(f"{group.heading}:")
            lines.extend(f"- {_inline_text(item)}" for item in group.items)
            if group.more:
                lines.append(f"- and {group.more} more")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def render_markdown(doc: Document) -> str:
    lines = [f"# {escape_markdown(doc.title)}", "", _inline_markdown(doc.intro), ""]
    for section in doc.sections:
        lines += [f"## {escape_markdown(section.heading)}", ""]
        lines.extend(_inline_markdown(note) + "  " for note in section.notes)
        for group in section.groups:
            if group.heading:
                lines.append(f"**{escape_markdown(group.heading)}**")
            lines.extend(f"- {_inline_markdown(item)}" for item in group.items)
            if group.more:
                lines.append(f"- and {group.more} more")
            lines.append("")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def render_html(doc: Document) -> str:
    out = [
        "<!DOCTYPE html>",
        '<html><head><meta charset="utf-8">',
        f"<title>{html.escape(clean(doc.title, 500).strip())}</title></head>",
        '<body style="font-family: sans-serif">',
        f"<h1>{html.escape(clean(doc.title, 500).strip())}</h1>",
        f"<p>{_inline_html(doc.intro)}</p>",
    ]
    for section in doc.sections:
        out.append(f'<section id="{html.escape(section.anchor)}">')
        out.append(f"<h2>{html.escape(section.heading)}</h2>")
        out.extend(f"<p>{_inline_html(note)}</p>" for note in section.notes)
        for group in section.groups:
            if group.heading:
                out.append(f"<h3>{html.escape(group.heading)}</h3>")
            out.append("<ul>")
            out.extend(f"<li>{_inline_html(item)}</li>" for item in group.items)
            if group.more:
                out.append(f"<li>and {group.more} more</li>")
            out.append("</ul>")
        out.append("</section>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


RENDERERS = {"text": render_text, "markdown": render_markdown, "html": render_html}


def render(doc: Document, body_format: str) -> str:
    return RENDERERS[body_format](doc)


def _inline_text(parts: tuple[Inline, ...]) -> str:
    return "".join(_one_text(p) for p in parts)


def _one_text(part: Inline) -> str:
    if isinstance(part, Link):
        url = safe_url(part.url)
        return f"{clean(part.label)}: {url}" if url else clean(part.label)
    return clean(part, 10_000)


def _inline_markdown(parts: tuple[Inline, ...]) -> str:
    return "".join(_one_markdown(p) for p in parts)


def _one_markdown(part: Inline) -> str:
    if isinstance(part, Link):
        url = safe_url(part.url)
        label = escape_markdown(part.label)
        # Percent-encoding keeps a ")" or space in the URL from ending the link early.
        return f"[{label}]({quote(url, safe=':/?&=%#@~,;+')})" if url else label
    return escape_markdown(part)


def _inline_html(parts: tuple[Inline, ...]) -> str:
    return "".join(_one_html(p) for p in parts)


def _one_html(part: Inline) -> str:
    if isinstance(part, Link):
        url = safe_url(part.url)
        label = html.escape(clean(part.label))
        return f'<a href="{html.escape(url, quote=True)}">{label}</a>' if url else label
    return html.escape(clean(part, 10_000))


def split_body(body: str, limit: int) -> list[str]:
    """Cut a long body into parts of at most ``limit`` characters, at line boundaries."""
    if len(body) <= limit:
        return [body]
    parts: list[str] = []
    current = ""
    for line in body.splitlines(keepends=True):
        while len(line) > limit:  # a single overlong line is cut where it must be
            if current:
                parts.append(current)
                current = ""
            parts.append(line[:limit])
            line = line[limit:]
        if len(current) + len(line) > limit:
            parts.append(current)
            current = ""
        current += line
    if current:
        parts.append(current)
    return parts


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


def entry_item(entry: Entry, now: datetime, tz: ZoneInfo) -> tuple[Inline, ...]:
    parts: list[Inline] = [when(entry.received_at, tz), " · "]
    if entry.order_id:
        parts.append(f"order {entry.order_id} · ")
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


def to_document(digest: Digest, tz: ZoneInfo, max_items: int = 25) -> Document:
    """Lay a digest out: levels most urgent first, then rescued, phishing, clocks, rates."""
    since = f"since {when(digest.since, tz)}" if digest.since else "since triage started"
    counts = ", ".join(
        f"{n} {s}" for s in SEVERITIES if (n := sum(e.severity == s for e in digest.entries))
    )
    intro: tuple[Inline, ...] = (
        f"{len(digest.entries)} messages {since}" + (f": {counts}" if counts else ""),
    )
    sections = [
        _level_section(digest, level, tz, max_items)
        for level in SEVERITIES
        if any(e.severity == level for e in digest.entries)
    ]
    if digest.rescued:
        sections.append(_rescued_section(digest, tz, max_items))
    if digest.phishing:
        sections.append(_phishing_section(digest, tz, max_items))
    sections.append(_clocks_section(digest, tz, max_items))
    sections.append(
        Section(
            "reply-rate",
            "Reply rate within 24 hours",
            notes=[(rate.describe(),) for rate in digest.rates],
        )
    )
    return Document(digest.title, intro, sections)


def _level_section(digest: Digest, level: str, tz: ZoneInfo, max_items: int) -> Section:
    entries = [e for e in digest.entries if e.severity == level]
    # Types appear in the order of their most urgent entry (entries are sorted already).
    types = list(dict.fromkeys(e.type for e in entries))
    groups = []
    for kind in types:
        items = [entry_item(e, digest.until, tz) for e in entries if e.type == kind]
        groups.append(
            Group(
                f"{TYPE_LABELS[kind]} ({len(items)})",
                items[:max_items],
                more=max(0, len(items) - max_items),
            )
        )
    return Section(level, f"{SEVERITY_LABELS[level]} ({len(entries)})", groups)


def _rescued_section(digest: Digest, tz: ZoneInfo, max_items: int) -> Section:
    items = [(f"{TYPE_LABELS[e.type]}: ", *entry_item(e, digest.until, tz)) for e in digest.rescued]
    return Section(
        "rescued",
        f"Rescued from spam ({len(items)})",
        [Group("", items[:max_items], more=max(0, len(items) - max_items))],
        notes=[("Genuine Amazon mail found in the spam folder and moved back to the inbox.",)],
    )


def _phishing_section(digest: Digest, tz: ZoneInfo, max_items: int) -> Section:
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
        [] if items else [("No buyer message is waiting for an answer.",)]
    )
    groups = [Group("", items[:max_items], more=max(0, len(items) - max_items))] if items else []
    return Section("open-buyer-messages", f"Open buyer messages ({len(items)})", groups, notes)


def _parse(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


# --- the command ---------------------------------------------------------------------


def digest_command(args: argparse.Namespace) -> int:
    """``triage digest --now`` sends the pending digest; ``--preview`` prints it."""
    from triage import notify

    return notify.digest_now(preview=bool(args.preview))
