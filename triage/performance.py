"""Account-health metrics: the numbers Amazon's performance mail states, kept per account.

Amazon's performance notifications give the seller's order defect rate, late shipment
rate, pre-fulfilment cancellation rate, valid tracking rate, late response rate and
account health rating, usually beside the target. :func:`extract` reads them in
English, German, French, Italian and Spanish (names and target cues are data:
``triage/data/performance.yaml``); :func:`record` stores them with the date for the
mail's account and says when a metric crossed its target or worsened fast; the
digest draws each metric's trend against Amazon's target.
"""

from __future__ import annotations

import re
import re._constants as sre_constants
import re._parser as sre_parse
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from importlib import resources

import yaml

from triage import sellercentral
from triage.document import Document, Inline, Link, Section
from triage.errors import RulesError
from triage.rules import Node, compose
from triage.state import register_schema

DATA_FILE = "performance.yaml"
LANGUAGES = ("en", "de", "fr", "it", "es")
# Where the numbers are: a metric's value follows its name within this many characters.
WINDOW = 220
NUMBER = re.compile(r"(?<![\d.,/])(\d{1,4}(?:[.,]\d{1,3})?)(?:\s?(%))?(?!\d)")
# A number followed by one of these is a period or a date, not a metric.
NOT_A_VALUE = re.compile(
    r"\s*(?:days?|Tage[n]?|jours?|giorni|días|dias|months?|Monate[n]?|mois|mesi|meses"
    r"|[.-]\d)",
    re.IGNORECASE,
)
# A regex source split into escapes (kept as they are) and the text between them.
ESCAPE_OR_TEXT = re.compile(r"\\.|[^\\]+", re.DOTALL)
HISTORY_DAYS = 180
HISTORY_POINTS = 6

# One row per metric a mail stated, for the account the mail arrived in.
SCHEMA = """
    CREATE TABLE IF NOT EXISTS account_metrics (
        id INTEGER PRIMARY KEY,
        account TEXT NOT NULL,
        metric TEXT NOT NULL,
        value REAL NOT NULL,
        target REAL NOT NULL,
        stated_at TEXT NOT NULL,
        message_row INTEGER,
        UNIQUE (account, metric, message_row)
    );
    CREATE INDEX IF NOT EXISTS account_metrics_when ON account_metrics (account, metric, stated_at);
    """
register_schema(SCHEMA)


@dataclass(frozen=True)
class Metric:
    """One account-health metric and Amazon's target for it."""

    key: str
    label: str
    unit: str
    target: float
    better: str
    fast: float

    def breaches(self, value: float, target: float) -> bool:
        return value >= target if self.better == "lower" else value < target

    def worse_by(self, before: float, after: float) -> float:
        """How much worse ``after`` is than ``before`` (negative when better)."""
        return after - before if self.better == "lower" else before - after

    def format(self, value: float) -> str:
        text = f"{value:.2f}".rstrip("0").rstrip(".")
        return f"{text}%" if self.unit == "%" else text

    def comparison(self) -> str:
        return "under" if self.better == "lower" else "at least"

    def scale(self, values: Iterable[float]) -> float:
        """The value a full bar stands for."""
        if self.unit != "%":
            return 1000.0
        if self.better == "higher":
            return 100.0
        return max([self.target * 2, *(v * 1.15 for v in values)])


@dataclass(frozen=True)
class Stated:
    """A value a mail states, with the target it states (None when it gives none)."""

    value: float
    target: float | None = None


@dataclass(frozen=True)
class Patterns:
    metrics: dict[str, Metric]
    # Per metric, one pattern matching any of its names in any language.
    names: dict[str, re.Pattern[str]]
    cue: re.Pattern[str]
    # Per metric, text one of which any match of its names contains (None: not known);
    # a metric none of whose needles is in a mail is not searched for.
    needles: dict[str, tuple[str, ...] | None] = field(default_factory=dict)


@dataclass(frozen=True)
class Reading:
    metric: Metric
    value: float
    target: float
    stated_at: datetime

    def breaches(self) -> bool:
        return self.metric.breaches(self.value, self.target)

    def describe(self) -> str:
        """``Order defect rate 1.35%, past its target (under 1%)``."""
        metric = self.metric
        target = f"{metric.comparison()} {metric.format(self.target)}"
        state = "past its target" if self.breaches() else "within its target"
        return f"{metric.label} {metric.format(self.value)}, {state} ({target})"


@dataclass(frozen=True)
class Series:
    """One metric of one account over time, oldest first."""

    account: str
    metric: Metric
    readings: tuple[Reading, ...]
    show_account: bool = False

    @property
    def latest(self) -> Reading:
        return self.readings[-1]

    def trend(self) -> str:
        if len(self.readings) < 2:
            return "First reading."
        first, last = self.readings[0], self.latest
        change = self.metric.worse_by(first.value, last.value)
        since = first.stated_at.strftime("%d %b")
        if abs(change) < 1e-9:
            return f"Unchanged since {since}."
        # A change of a rate is in percentage points; of the rating, in points.
        size = self.metric.format(abs(change)).rstrip("%") + " points"
        return f"{'Worse' if change > 0 else 'Better'} by {size} since {since}."


@dataclass(frozen=True)
class Finding:
    """A metric that crossed its target or worsened fast: worth an alert."""

    reading: Reading
    previous: Reading | None
    crossed: bool

    def describe(self) -> str:
        metric, reading = self.reading.metric, self.reading
        now = metric.format(reading.value)
        target = f"{metric.comparison()} {metric.format(reading.target)}"
        if self.crossed:
            return f"{metric.label} is {now}: past Amazon's target ({target})."
        before = metric.format(self.previous.value) if self.previous else "?"
        return f"{metric.label} went from {before} to {now} (target {target})."


# --- reading a mail --------------------------------------------------------------------


def extract(text: str, patterns: Patterns | None = None) -> dict[str, Stated]:
    """The metrics a performance mail states, by metric key."""
    patterns = patterns or load()
    # Lower-cased once, so the names match without IGNORECASE: a case-blind alternation
    # is tried at every position of the text and cost milliseconds per mail.
    flat = " ".join(text.replace("\u00a0", " ").replace("\u202f", " ").split()).lower()
    starts = sorted(
        (m.start(), m.end(), key)
        for key, pattern in patterns.names.items()
        if _may_name(flat, patterns.needles.get(key))
        for m in pattern.finditer(flat)
    )
    found: dict[str, Stated] = {}
    for index, (_, end, key) in enumerate(starts):
        if key in found and found[key].target is not None:
            continue
        following = [s for s, _, _ in starts[index + 1 :] if s >= end]
        stop = min([end + WINDOW, *following[:1]])
        value, target = _read(flat, end, stop, patterns.metrics[key], patterns.cue)
        if key not in found:
            if value is not None:
                found[key] = Stated(value, target)
        elif target is not None:
            # Named again further on with its target ("... requires an ODR under 1%"):
            # the value stays the first one stated.
            found[key] = Stated(found[key].value, target)
    return found


def _may_name(text: str, needles: tuple[str, ...] | None) -> bool:
    return needles is None or any(needle in text for needle in needles)


def _read(
    text: str, start: int, stop: int, metric: Metric, cue: re.Pattern[str]
) -> tuple[float | None, float | None]:
    """The value and the target stated after a metric's name, each None when absent."""
    value = target = None
    for match in NUMBER.finditer(text, start, stop):
        is_percent = match.group(2) is not None
        if is_percent != (metric.unit == "%") or NOT_A_VALUE.match(text, match.end()):
            continue
        number = float(match.group(1).replace(",", "."))
        if cue.search(text[max(start, match.start() - 40) : match.start()]):
            target = number if target is None else target
        elif value is None:
            value = number
        if value is not None and target is not None:
            break
    return value, target


# --- keeping and comparing -------------------------------------------------------------


def record(
    conn: sqlite3.Connection, row_id: int, text: str, stated_at: datetime
) -> list[Finding]:
    """Store what a performance mail states; the metrics that crossed or worsened fast."""
    stated = extract(text)
    if not stated:
        return []
    row = conn.execute("SELECT account FROM messages WHERE id = ?", (row_id,)).fetchone()
    account = row["account"] if row else "default"
    metrics = load().metrics
    findings = []
    for key, value in stated.items():
        metric = metrics[key]
        reading = Reading(metric, value.value, value.target or metric.target, stated_at)
        previous = _previous(conn, account, metric, stated_at)
        cursor = conn.execute(
            "INSERT OR IGNORE INTO account_metrics "
            "(account, metric, value, target, stated_at, message_row) VALUES (?, ?, ?, ?, ?, ?)",
            (account, key, reading.value, reading.target, stated_at.isoformat(), row_id),
        )
        if cursor.rowcount == 0:
            continue
        crossed = reading.breaches() and (previous is None or not previous.breaches())
        fast = previous is not None and metric.worse_by(previous.value, reading.value) >= (
            metric.fast - 1e-9
        )
        if crossed or fast:
            findings.append(Finding(reading, previous, crossed))
    return findings


def _previous(
    conn: sqlite3.Connection, account: str, metric: Metric, before: datetime
) -> Reading | None:
    row = conn.execute(
        "SELECT * FROM account_metrics WHERE account = ? AND metric = ? AND stated_at < ? "
        "ORDER BY stated_at DESC, id DESC LIMIT 1",
        (account, metric.key, before.isoformat()),
    ).fetchone()
    return _reading(row, metric) if row else None


def stated_in(conn: sqlite3.Connection, row_ids: Iterable[int]) -> dict[int, list[Reading]]:
    """What each of these mails stated, by its ``messages`` row."""
    metrics = load().metrics
    wanted = list(row_ids)
    found: dict[int, list[Reading]] = {}
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        marks = ", ".join("?" for _ in chunk)
        for row in conn.execute(
            f"SELECT * FROM account_metrics WHERE message_row IN ({marks}) ORDER BY id", chunk
        ).fetchall():
            if row["metric"] in metrics:
                reading = _reading(row, metrics[row["metric"]])
                found.setdefault(row["message_row"], []).append(reading)
    return found


def history(
    conn: sqlite3.Connection,
    until: datetime,
    days: int = HISTORY_DAYS,
    points: int = HISTORY_POINTS,
) -> list[Series]:
    """Each account's metrics over the last ``days`` days (the last ``points`` readings)."""
    metrics = load().metrics
    since = (until - timedelta(days=days)).isoformat()
    rows = conn.execute(
        "SELECT * FROM account_metrics WHERE stated_at > ? AND stated_at <= ? "
        "ORDER BY account, stated_at, id",
        (since, until.isoformat()),
    ).fetchall()
    grouped: dict[tuple[str, str], list[Reading]] = {}
    for row in rows:
        if row["metric"] in metrics:
            metric = metrics[row["metric"]]
            grouped.setdefault((row["account"], metric.key), []).append(_reading(row, metric))
    several = len({account for account, _ in grouped}) > 1
    order = list(metrics)
    return [
        Series(account, metrics[key], tuple(readings[-points:]), several)
        for (account, key), readings in sorted(
            grouped.items(), key=lambda kv: (kv[0][0], order.index(kv[0][1]))
        )
    ]


def _reading(row: sqlite3.Row, metric: Metric) -> Reading:
    return Reading(metric, row["value"], row["target"], datetime.fromisoformat(row["stated_at"]))


def alert_document(findings: Sequence[Finding], sender: str) -> Document:
    """One alert for the metrics of one mail that need the seller's eye."""
    lines: list[tuple[Inline, ...]] = [(f.describe(),) for f in findings]
    found = sellercentral.load().button("account_health", sender)
    if found:
        lines.append((Link(*found),))
    first = findings[0].reading
    title = (
        f"{first.metric.label} {first.metric.format(first.value)}: past Amazon's target"
        if findings[0].crossed
        else f"{first.metric.label} worsened to {first.metric.format(first.value)}"
    )
    return Document(
        title,
        ("From Amazon's latest account-health mail.",),
        [Section("account-health", "Account health", notes=lines)],
    )


# --- the data file ---------------------------------------------------------------------


@cache
def load() -> Patterns:
    """The shipped metrics and language patterns (read once)."""
    source = resources.files("triage").joinpath("data", DATA_FILE)
    return parse(source.read_text(encoding="utf-8"), f"triage/data/{DATA_FILE}")


def parse(text: str, path: str) -> Patterns:
    """Metrics and names from YAML; a wrong entry is refused with its file and line."""
    root = compose(text, path)
    top = root.fields(("metrics", "languages"), required=("metrics", "languages"))
    metrics = _metrics(top["metrics"])
    names: dict[str, list[str]] = {key: [] for key in metrics}
    cues: list[str] = []
    languages = top["languages"].fields(LANGUAGES, required=LANGUAGES, what="language")
    for language in languages.values():
        fields = language.fields(("names", "cues"), required=("names", "cues"))
        for key, value in fields["names"].fields(metrics, required=metrics, what="metric").items():
            names[key] += [_regex(item) for item in value.items()]
        cues += [_regex(item) for item in fields["cues"].items()]
    flags = re.IGNORECASE
    return Patterns(
        metrics,
        {key: re.compile("|".join(f"(?:{_lowered(n)})" for n in ns)) for key, ns in names.items()},
        re.compile(
            # (?!\w) rather than \b: a cue may end in an apostrophe ("all'1%").
            r"(?:\b(?:" + "|".join(cues) + r")(?!\w)|[<>≤≥])[\s:()=<>≤≥]*$",
            flags,
        ),
        {key: _needles([_lowered(n) for n in ns]) for key, ns in names.items()},
    )


def _metrics(node: Node) -> dict[str, Metric]:
    if not isinstance(node.node, yaml.MappingNode):
        raise node.error(f"expected a mapping of metrics, got {node.kind()}")
    metrics = {}
    for key_node, value_node in node.node.value:
        key = Node(key_node, node.path).text("a metric name")
        value = Node(value_node, node.path)
        f = value.fields(
            ("label", "unit", "target", "better", "fast"),
            required=("label", "unit", "target", "better", "fast"),
        )
        metrics[key] = Metric(
            key=key,
            label=f["label"].text("a label"),
            unit=f["unit"].choice(("%", "points"), "unit"),
            target=f["target"].number(0, 1000),
            better=f["better"].choice(("lower", "higher"), "direction"),
            fast=f["fast"].number(0, 1000),
        )
    return metrics


def _lowered(source: str) -> str:
    """A pattern for lower-cased text: its letters lowered, its escapes (``\\B``, ``\\S``) kept."""
    return ESCAPE_OR_TEXT.sub(
        lambda m: m.group() if m.group().startswith("\\") else m.group().lower(), source
    )


def _needles(sources: Sequence[str]) -> tuple[str, ...] | None:
    """For each pattern, the longest run of plain characters every match of it holds;
    None when a pattern has no such run of three or more (it is then always searched)."""
    found = []
    for source in sources:
        best = run = ""
        for op, value in sre_parse.parse(source):
            run = run + chr(value) if op is sre_constants.LITERAL else ""
            best = max(best, run, key=len)
        if len(best) < 3:
            return None
        found.append(best)
    return tuple(found)


def _regex(node: Node) -> str:
    source = node.text("a regular expression")
    try:
        re.compile(source)
    except re.error as exc:
        raise RulesError(node.path, node.line, f"bad regular expression: {exc}") from exc
    return source
