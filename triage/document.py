"""What a notification says, and its three renderings: plain text, Markdown, HTML mail.

A digest or an alert is laid out once as a small :class:`Document` (a summary strip,
sections of cards, items and charts), then rendered for each kind of target. Every
piece of text that came from a mail is escaped for the format it is rendered into, so
a hostile subject can neither break the layout nor inject links or markup. Links are
only ever https links on Amazon's domains.

The HTML is mail-client HTML: Jinja2 templates shipped in the package (autoescaped),
table layout 600 px wide that narrows to a phone, CSS inlined at render by css-inline,
colours that read on light and dark backgrounds, bars made of table cells (no script,
no image).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from urllib.parse import quote, urlsplit

import css_inline
import jinja2

from triage.taxonomy import is_amazon_domain

MAX_SUBJECT = 160
WHITESPACE = re.compile(r"\s+")
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# CommonMark lets any ASCII punctuation be escaped with a backslash.
MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~])")
SEVERITY_LABELS = {"critical": "Critical", "high": "High", "normal": "Normal", "low": "Low"}


@dataclass(frozen=True)
class Link:
    """A link to show; only https links on Amazon's domains are ever rendered."""

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
class Card:
    """One thing the seller may have to act on: a mail, or the story of one order."""

    severity: str
    headline: str
    subject: str
    received: str
    deadline: str = ""
    overdue: bool = False
    button: Link | None = None
    # Earlier and later mail about the same order, oldest first.
    story: tuple[str, ...] = ()
    # What the mail itself states (an account-health mail's metrics).
    facts: tuple[str, ...] = ()


@dataclass(frozen=True)
class Bar:
    """One bar of a chart: ``share`` is its length from 0 to 1."""

    label: str
    share: float
    text: str
    tone: str = "neutral"  # a severity, "ok", "bad" or "neutral"


@dataclass(frozen=True)
class Chart:
    """Bars with an optional target line (``target`` on the same 0-1 scale)."""

    title: str
    bars: tuple[Bar, ...]
    target: float | None = None
    target_label: str = ""
    note: str = ""


@dataclass(frozen=True)
class Section:
    anchor: str
    heading: str
    groups: list[Group] = field(default_factory=list)
    notes: list[tuple[Inline, ...]] = field(default_factory=list)
    cards: list[Card] = field(default_factory=list)
    charts: list[Chart] = field(default_factory=list)
    # "phishing" and "rescued" sections look different from the levels.
    tone: str = ""


@dataclass(frozen=True)
class Strip:
    """The top of a digest: counts per severity and the one thing to do first."""

    counts: tuple[tuple[str, int], ...]
    first: tuple[Inline, ...]
    first_button: Link | None = None


@dataclass(frozen=True)
class Document:
    title: str
    intro: tuple[Inline, ...]
    sections: list[Section]
    strip: Strip | None = None


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


# --- plain text ------------------------------------------------------------------------


def render_text(doc: Document) -> str:
    lines = [clean(doc.title, 500).strip(), _inline_text(doc.intro)]
    if doc.strip is not None:
        lines.append(" · ".join(f"{SEVERITY_LABELS[s]} {n}" for s, n in doc.strip.counts))
        first = _inline_text(doc.strip.first)
        if doc.strip.first_button is not None:
            first += " · " + _one_text(doc.strip.first_button)
        lines.append(f"Do this first: {first}")
    lines.append("")
    for section in doc.sections:
        lines.append(f"== {section.heading} ==")
        lines.extend(_inline_text(note) for note in section.notes)
        for card in section.cards:
            lines.append(f"- [{SEVERITY_LABELS[card.severity].upper()}] {_card_line(card)}")
            lines.extend(f"  {clean(fact)}" for fact in card.facts)
            if card.button is not None:
                lines.append(f"  {_one_text(card.button)}")
            lines.extend(f"  · {clean(step)}" for step in card.story)
        for group in section.groups:
            if group.heading:
                lines.append(f"{group.heading}:")
            lines.extend(f"- {_inline_text(item)}" for item in group.items)
            if group.more:
                lines.append(f"- and {group.more} more")
        for chart in section.charts:
            lines.extend(_chart_lines(chart, clean))
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _card_line(card: Card) -> str:
    parts = [card.headline, card.received, card.subject or "(no subject)"]
    if card.deadline:
        parts.append(card.deadline)
    return " · ".join(clean(p) for p in parts)


def _chart_lines(chart: Chart, escape: Callable[[str], str]) -> list[str]:
    target = f" ({chart.target_label})" if chart.target_label else ""
    lines = [f"{escape(chart.title)}{escape(target)}:"]
    lines.extend(f"- {escape(bar.label)}: {escape(bar.text)}" for bar in chart.bars)
    if chart.note:
        lines.append(escape(chart.note))
    return lines


# --- Markdown (chat) -------------------------------------------------------------------


def render_markdown(doc: Document) -> str:
    lines = [f"# {escape_markdown(doc.title)}", "", _inline_markdown(doc.intro), ""]
    if doc.strip is not None:
        counts = " · ".join(
            f"**{SEVERITY_LABELS[level]} {n}**" if n else f"{SEVERITY_LABELS[level]} {n}"
            for level, n in doc.strip.counts
        )
        first = _inline_markdown(doc.strip.first)
        if doc.strip.first_button is not None:
            first += " · " + _one_markdown(doc.strip.first_button)
        lines += [counts, "", f"**Do this first:** {first}", ""]
    for section in doc.sections:
        lines += [f"## {escape_markdown(section.heading)}", ""]
        lines.extend(_inline_markdown(note) + "  " for note in section.notes)
        for card in section.cards:
            mark = SEVERITY_LABELS[card.severity].upper()
            line = f"- **{mark}** {escape_markdown(_card_line(card))}"
            if card.button is not None:
                line += " · " + _one_markdown(card.button)
            lines.append(line)
            lines.extend(f"  - {escape_markdown(fact)}" for fact in card.facts)
            lines.extend(f"  - {escape_markdown(step)}" for step in card.story)
        if section.cards:
            lines.append("")
        for group in section.groups:
            if group.heading:
                lines.append(f"**{escape_markdown(group.heading)}**")
            lines.extend(f"- {_inline_markdown(item)}" for item in group.items)
            if group.more:
                lines.append(f"- and {group.more} more")
            lines.append("")
        for chart in section.charts:
            lines.extend(_chart_lines(chart, escape_markdown))
            lines.append("")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


# --- HTML mail -------------------------------------------------------------------------


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("triage", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["clean"] = clean
    env.filters["safe_url"] = safe_url
    env.filters["pct"] = lambda share: f"{max(0.0, min(1.0, share)) * 100:.1f}"
    env.globals["SEVERITY_LABELS"] = SEVERITY_LABELS
    env.globals["link"] = lambda part: isinstance(part, Link)
    return env


@cache
def _inliner() -> css_inline.CSSInliner:
    # @media rules (phone width, dark mode) cannot be inlined: they stay in <style>.
    return css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)


def render_html(doc: Document) -> str:
    """The document as one self-contained HTML mail, every style inlined."""
    css = resources.files("triage").joinpath("templates", "mail.css").read_text("utf-8")
    page = _environment().get_template("mail.html.j2").render(doc=doc, css=css)
    return str(_inliner().inline(page))


RENDERERS = {"text": render_text, "markdown": render_markdown, "html": render_html}


def render(doc: Document, body_format: str) -> str:
    return RENDERERS[body_format](doc)


# --- inline parts ----------------------------------------------------------------------


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


# --- chat sizes ------------------------------------------------------------------------

# A Markdown link, so a long line is never cut inside one.
MARKDOWN_LINK = re.compile(r"\[(?:\\.|[^\]\\])*\]\([^)\s]*\)")


def split_body(body: str, limit: int) -> list[str]:
    """Cut a long body into parts of at most ``limit`` characters, at line boundaries.

    A line longer than ``limit`` is cut at a space, never inside a Markdown link or a
    bare URL; only a single word longer than ``limit`` is cut where it must be.
    """
    if len(body) <= limit:
        return [body]
    parts: list[str] = []
    current = ""
    for line in body.splitlines(keepends=True):
        pieces = _cut_line(line, limit) if len(line) > limit else [line]
        for piece in pieces:
            if len(current) + len(piece) > limit and current:
                parts.append(current)
                current = ""
            current += piece
    if current:
        parts.append(current)
    return parts


def _cut_line(line: str, limit: int) -> list[str]:
    links = [m.span() for m in MARKDOWN_LINK.finditer(line)]
    pieces = []
    while len(line) > limit:
        cut = _cut_at(line, limit, links)
        pieces.append(line[:cut])
        line = line[cut:]
        links = [(a - cut, b - cut) for a, b in links if b > cut]
    return [*pieces, line] if line else pieces


def _cut_at(line: str, limit: int, links: list[tuple[int, int]]) -> int:
    """The last space before ``limit`` not inside a link or URL; else ``limit``."""
    for cut in range(limit, 0, -1):
        if line[cut - 1] != " ":
            continue
        if any(a < cut < b for a, b in links):
            continue
        return cut  # a bare URL holds no space, so this never cuts one
    return limit


def summarise_for_chat(body: str, limit: int, max_parts: int) -> list[str]:
    """Parts of at most ``limit`` characters; past ``max_parts``, the rest is summarised.

    Chat targets take short messages (Discord 2,000 characters, Telegram 4,096); a
    digest that would need more than ``max_parts`` of them ends with a line saying how
    much was left out and where to read it all.
    """
    parts = split_body(body, limit)
    if len(parts) <= max_parts:
        return parts
    kept = parts[: max_parts - 1]
    rest = "".join(parts[max_parts - 1 :])
    tail = "…and more: the e-mail digest or `triage digest --preview` has it all.\n"
    last = split_body(rest, limit - len(tail) - 1)[0]
    left = sum(1 for line in rest[len(last) :].splitlines() if line.lstrip().startswith("- "))
    if left:
        tail = tail.replace("and more", f"and {left} more entries", 1)
    return [*kept, last.rstrip("\n") + "\n" + tail]


__all__ = [
    "Bar",
    "Card",
    "Chart",
    "Document",
    "Group",
    "Inline",
    "Link",
    "Section",
    "Strip",
    "clean",
    "escape_markdown",
    "render",
    "safe_url",
    "split_body",
    "summarise_for_chat",
]
