"""The seller's own policy: ``rules.yaml`` turned into small condition and action classes.

A rules file looks like this::

    version: 1
    defaults:                 # how the seller hears of mail no rule decided
      alert: [critical]       # pushed now
      digest: [high, normal, low]
    rules:
      - name: claims-to-phone
        match:
          type: claim
          subject: "/a-?to-?z/"
        severity: critical
        tags: [money]
        actions: [alert]
        stop: true

Rules run in order, after the model, on the verdict the model (and earlier rules)
produced; a rule that matches may set ``type`` and ``severity``, add ``tags`` and
choose ``actions`` (``alert``, ``digest``, ``ignore``, ``flag``, ``move: Folder``).
Later rules refine earlier ones unless a rule says ``stop: true``. Mail that no rule
sent to ``alert``/``digest``/``ignore`` gets the action ``defaults`` names for its
severity (without ``defaults``: critical alerts, everything else waits for the digest).

Conditions (several keys in one ``match`` mapping must all hold):

``sender``
    an address (``supplier@example.com``), a domain (``example.com``, also matching its
    subdomains), a glob (``*@amazon.*``) or a regex (``/.../`` or ``regex:...``). A plain
    sender is compared whole, never as a substring: ``amazon.de`` must not match
    ``amazon.de.example.net``.
``sender_name``, ``subject``, ``body``
    text patterns: a case-insensitive substring, or a regex as ``/.../`` or ``regex:...``.
    A list means any of them.
``header``
    ``{name: X-Space-Notification-Type, pattern: BBC_}``; without ``pattern``, the
    header merely has to be present.
``type``, ``severity``
    a name of the taxonomy, or a list of them.
``folder``
    a folder name or a role (``inbox``, ``junk``, ``sent``, ...), or a list of them.
``confidence``
    ``{below: 0.6}`` and/or ``{above: 0.9}``.
``has_order_id``, ``suspicious``, ``amazon``
    ``true`` or ``false``.
``all``, ``any``
    a list of condition mappings; ``not``: one condition mapping.

Everything is checked at load time; a file that does not hold is refused with a
:class:`~triage.errors.RulesError` naming the file, the line and what was expected.

Rules run on mail anyone can send, so a rule must not be a way to freeze the daemon:
regexes are compiled with RE2, whose matching time grows linearly with the text
(``/(a+)+$/`` is harmless; backreferences and lookarounds, which RE2 lacks, are refused
with their line); YAML aliases are refused (an "alias bomb" expands a few lines into
billions of nodes); a file over :data:`MAX_FILE_BYTES` or with more than
:data:`MAX_RULES` rules is refused before it is built.

Other modules own other top-level sections of the same file (notification targets,
digest schedules). They register a loader once, at import time of their module::

    from triage.rules import SectionContext, register_section

    def load_notify(value: Any, ctx: SectionContext) -> NotifyPolicy:
        if value is None:                      # the section is absent
            return NotifyPolicy()
        if not isinstance(value, dict):
            ctx.error("notify", "expected a mapping")   # raises RulesError at that line
        ...

    register_section("notify", load_notify)

The loader gets the section's plain value (``None`` when the file has no such section)
and returns the typed object that ``Rules.section("notify")`` then hands out.
``ctx.error(path, reason)`` raises with the line of ``path`` (dotted, list items by
index: ``"notify.digests.0.at"``) and ``ctx.line_of(path)`` gives that line. The modules
named in :data:`SECTION_MODULES` are imported by :func:`load_rules`, so their sections
are known even to ``triage check-rules``. Unknown top-level keys are refused.
"""

from __future__ import annotations

import argparse
import difflib
import fnmatch
import importlib
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, NoReturn

import re2
import yaml
from yaml.constructor import SafeConstructor

from triage.errors import RulesError, TriageError
from triage.message import Message
from triage.taxonomy import ALLOWED_SEVERITIES, SEVERITIES, TYPES, severity_rank
from triage.verdict import Action, Verdict

DEFAULT_PATH = "rules.yaml"
VERSION = 1

# Limits that keep a mistaken or hostile file from costing minutes and gigabytes: the
# shipped rules.yaml is 12 kB with a few dozen rules.
MAX_FILE_BYTES = 1_000_000
MAX_RULES = 1_000
# RE2's own memory budget per compiled pattern (its default is 8 MB).
MAX_REGEX_MEMORY = 8 << 20

# How the seller hears of a mail; a rule choosing one of these replaces the others.
NOTIFY_KINDS: tuple[str, ...] = ("alert", "digest", "ignore")

# Modules that register top-level sections; imported before a file is read.
SECTION_MODULES: tuple[str, ...] = ("triage.notifypolicy", "triage.targets")

_STR = "tag:yaml.org,2002:str"
_TEXT_TAGS = (_STR, "tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
_BOOL = "tag:yaml.org,2002:bool"
_NUMBER_TAGS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")


def clamp_severity(type_: str, severity: str) -> str:
    """The severity nearest to ``severity`` that the taxonomy allows for ``type_``.

    Ties go to the more urgent level: over-alerting once beats missing a claim.
    """
    allowed = ALLOWED_SEVERITIES[type_]
    if severity in allowed:
        return severity
    wanted = severity_rank(severity)
    return min(allowed, key=lambda s: (abs(severity_rank(s) - wanted), severity_rank(s)))


# --- YAML nodes that remember where they came from -------------------------------------


class Node:
    """A composed YAML node plus the file it came from, so any refusal names the line."""

    def __init__(self, node: yaml.Node, path: str) -> None:
        self.node = node
        self.path = path

    @property
    def line(self) -> int:
        return int(self.node.start_mark.line) + 1

    def error(self, reason: str) -> RulesError:
        return RulesError(self.path, self.line, reason)

    def fields(
        self, allowed: Collection[str], required: Iterable[str] = (), what: str = "key"
    ) -> dict[str, Node]:
        """The mapping's entries, refusing unknown, duplicate and missing keys."""
        if not isinstance(self.node, yaml.MappingNode):
            raise self.error(f"expected a mapping of {_one_of(allowed)}, got {self.kind()}")
        found: dict[str, Node] = {}
        for key_node, value_node in self.node.value:
            key = Node(key_node, self.path)
            name = key.text("a key")
            if name not in allowed:
                raise key.error(f"unknown {what} '{name}' ({_expected(name, allowed)})")
            if name in found:
                raise key.error(f"duplicate key '{name}'")
            found[name] = Node(value_node, self.path)
        missing = [name for name in required if name not in found]
        if missing:
            raise self.error(f"missing key '{missing[0]}'")
        return found

    def items(self) -> list[Node]:
        if not isinstance(self.node, yaml.SequenceNode):
            raise self.error(f"expected a list, got {self.kind()}")
        return [Node(child, self.path) for child in self.node.value]

    def one_or_many(self) -> list[Node]:
        """A scalar or a list of them: ``subject: x`` and ``subject: [x, y]`` both read."""
        return self.items() if isinstance(self.node, yaml.SequenceNode) else [self]

    def text(self, what: str = "text") -> str:
        if not isinstance(self.node, yaml.ScalarNode) or self.node.tag not in _TEXT_TAGS:
            raise self.error(f"expected {what}, got {self.kind()}")
        value = str(self.node.value)
        if not value:
            raise self.error(f"expected {what}, got an empty string")
        return value

    def boolean(self) -> bool:
        if not isinstance(self.node, yaml.ScalarNode) or self.node.tag != _BOOL:
            raise self.error(f"expected true or false, got {self.kind()}")
        return bool(self.plain())

    def number(self, low: float, high: float) -> float:
        if not isinstance(self.node, yaml.ScalarNode) or self.node.tag not in _NUMBER_TAGS:
            raise self.error(f"expected a number from {low} to {high}, got {self.kind()}")
        value = float(self.plain())
        if not low <= value <= high:
            raise self.error(f"expected a number from {low} to {high}, got {value}")
        return value

    def choice(self, names: Sequence[str], what: str) -> str:
        value = self.text(f"a {what} name")
        if value not in names:
            raise self.error(f"unknown {what} '{value}' ({_expected(value, names)})")
        return value

    def plain(self) -> Any:
        """The node as plain Python values (for section loaders)."""
        return SafeConstructor().construct_object(self.node, deep=True)

    def kind(self) -> str:
        if isinstance(self.node, yaml.MappingNode):
            return "a mapping"
        if isinstance(self.node, yaml.SequenceNode):
            return "a list"
        names = {_STR: "text", _BOOL: "a boolean", "tag:yaml.org,2002:null": "nothing"}
        if self.node.tag in names:
            return f"{names[self.node.tag]} '{self.node.value}'" if self.node.value else "nothing"
        return f"'{self.node.value}'"

    def find(self, dotted: str) -> Node:
        """The deepest node along a dotted path (``digests.0.at``)."""
        here = self
        for part in filter(None, dotted.split(".")):
            child = here._child(part)
            if child is None:
                break
            here = child
        return here

    def _child(self, part: str) -> Node | None:
        if isinstance(self.node, yaml.MappingNode):
            for key_node, value_node in self.node.value:
                if isinstance(key_node, yaml.ScalarNode) and key_node.value == part:
                    return Node(value_node, self.path)
        index = int(part) if part.isdigit() else -1
        if isinstance(self.node, yaml.SequenceNode) and 0 <= index < len(self.node.value):
            return Node(self.node.value[index], self.path)
        return None


def compose(text: str, path: str) -> Node:
    """A shipped data file's YAML as a :class:`Node`; an empty file is refused by name."""
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if root is None:
        raise RulesError(path, None, "the file is empty")
    return Node(root, path)


def _one_of(names: Iterable[str]) -> str:
    return ", ".join(names)


def _expected(got: str, names: Iterable[str]) -> str:
    names = list(names)
    close = difflib.get_close_matches(got, names, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"expected one of: {_one_of(names)}{hint}"


# --- what a condition sees ------------------------------------------------------------


@dataclass(frozen=True)
class Facts:
    """Everything a condition may look at: the mail, the verdict so far, where it lies."""

    message: Message
    verdict: Verdict
    folder: str = "INBOX"
    role: str = "inbox"


# --- patterns --------------------------------------------------------------------------


def compile_regex(expression: str) -> Any:
    """A case-insensitive RE2 pattern; raises :class:`ValueError` with RE2's reason."""
    options = re2.Options()
    options.case_sensitive = False
    options.log_errors = False  # the refusal is ours to report, with the file and line
    options.max_mem = MAX_REGEX_MEMORY
    try:
        return re2.compile(expression, options)
    except re2.error as exc:
        reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else exc
        raise ValueError(str(reason)) from exc


@dataclass(frozen=True)
class Pattern:
    """A case-insensitive substring, or a regex written ``/.../`` or ``regex:...``."""

    source: str
    # An RE2 pattern (``re2._Regexp``, which the package does not export for typing).
    regex: Any = None

    @classmethod
    def build(cls, node: Node) -> Pattern:
        source = node.text("a pattern")
        expression = _regex_source(source)
        if expression is None:
            return cls(source)
        try:
            return cls(source, compile_regex(expression))
        except ValueError as exc:
            hint = ""
            if re.search(r"\\[1-9]|\(\?<?[=!]", expression):
                hint = " (backreferences and lookarounds are not supported: they can take " \
                       "exponential time on hostile mail)"
            raise node.error(f"bad regex {source!r}: {exc}{hint}") from exc

    def search(self, text: str) -> bool:
        if self.regex is not None:
            return self.regex.search(text) is not None
        return self.source.casefold() in text.casefold()

    def describe(self) -> str:
        return f"matches {self.source}" if self.regex else f"contains '{self.source}'"


def _regex_source(source: str) -> str | None:
    if source.startswith("regex:"):
        return source.removeprefix("regex:")
    if len(source) >= 2 and source.startswith("/") and source.endswith("/"):
        return source[1:-1]
    return None


@dataclass(frozen=True)
class SenderPattern:
    """An address or domain compared whole, a glob, or a regex."""

    source: str
    regex: Any = None

    @classmethod
    def build(cls, node: Node) -> SenderPattern:
        pattern = Pattern.build(node)
        return cls(pattern.source.lower() if pattern.regex is None else pattern.source,
                   pattern.regex)

    def search(self, address: str, domain: str) -> bool:
        if self.regex is not None:
            return self.regex.search(address) is not None
        if any(c in self.source for c in "*?["):
            return fnmatch.fnmatchcase(address, self.source) or fnmatch.fnmatchcase(
                domain, self.source
            )
        if "@" in self.source:
            return address == self.source
        return domain == self.source or domain.endswith("." + self.source)

    def describe(self) -> str:
        return f"matches {self.source}" if self.regex or "*" in self.source else f"is {self.source}"


# --- conditions ------------------------------------------------------------------------


class Condition:
    """One test on a mail. Subclasses declare the YAML ``KEY`` they answer to."""

    KEY: ClassVar[str]

    @classmethod
    def build(cls, node: Node) -> Condition:
        raise NotImplementedError

    def matches(self, facts: Facts) -> bool:
        raise NotImplementedError

    def describe(self) -> str:
        """What the condition asks, in the seller's words."""
        raise NotImplementedError

    def explain(self, facts: Facts) -> str:
        """Why the condition holds (or not) for this mail; by default what it asks."""
        return self.describe()


CONDITIONS: dict[str, type[Condition]] = {}


def condition(cls: type[Condition]) -> type[Condition]:
    CONDITIONS[cls.KEY] = cls
    return cls


def build_condition(node: Node) -> Condition:
    """One ``match`` mapping; several keys in it must all hold."""
    found = node.fields(CONDITIONS, what="condition")
    if not found:
        raise node.error(f"expected at least one condition ({_one_of(CONDITIONS)})")
    parts = [CONDITIONS[key].build(value) for key, value in found.items()]
    return parts[0] if len(parts) == 1 else AllOf(parts)


class TextCondition(Condition):
    """Base of the text conditions: any of the patterns found in one field of the mail."""

    def __init__(self, patterns: Sequence[Pattern]) -> None:
        self.patterns = tuple(patterns)

    @classmethod
    def build(cls, node: Node) -> Condition:
        return cls([Pattern.build(item) for item in node.one_or_many()])

    def field(self, facts: Facts) -> str:
        raise NotImplementedError

    def matches(self, facts: Facts) -> bool:
        return self._first(facts) is not None

    def describe(self) -> str:
        return f"{self.KEY} " + " or ".join(p.describe() for p in self.patterns)

    def explain(self, facts: Facts) -> str:
        found = self._first(facts)
        return f"{self.KEY} {found.describe()}" if found else self.describe()

    def _first(self, facts: Facts) -> Pattern | None:
        text = self.field(facts)
        return next((p for p in self.patterns if p.search(text)), None)


@condition
class Subject(TextCondition):
    KEY = "subject"

    def field(self, facts: Facts) -> str:
        return facts.message.subject


@condition
class Body(TextCondition):
    KEY = "body"

    def field(self, facts: Facts) -> str:
        return facts.message.text


@condition
class SenderName(TextCondition):
    KEY = "sender_name"

    def field(self, facts: Facts) -> str:
        return facts.message.sender_name


@condition
class Sender(Condition):
    KEY = "sender"

    def __init__(self, patterns: Sequence[SenderPattern]) -> None:
        self.patterns = tuple(patterns)

    @classmethod
    def build(cls, node: Node) -> Condition:
        return cls([SenderPattern.build(item) for item in node.one_or_many()])

    def matches(self, facts: Facts) -> bool:
        return self._first(facts) is not None

    def describe(self) -> str:
        return "sender " + " or ".join(p.describe() for p in self.patterns)

    def explain(self, facts: Facts) -> str:
        found = self._first(facts)
        return f"sender {found.describe()}" if found else self.describe()

    def _first(self, facts: Facts) -> SenderPattern | None:
        message = facts.message
        return next(
            (p for p in self.patterns
             if p.search(message.sender_address, message.sender_domain)),
            None,
        )


# Headers the parser keeps as fields of Message; the rest are in extra_headers,
# by lower-case name.
_HEADER_FIELDS: dict[str, Callable[[Message], str]] = {
    "from": lambda m: f"{m.sender_name} <{m.sender_address}>",
    "reply-to": lambda m: m.reply_to,
    "to": lambda m: m.to,
    "subject": lambda m: m.subject,
    "message-id": lambda m: m.message_id,
    "in-reply-to": lambda m: m.in_reply_to,
    "x-space-notification-type": lambda m: m.notification_type,
    "x-marketplace-id": lambda m: m.marketplace_id,
    "authentication-results": lambda m: "\n".join(m.authentication_results),
}


@condition
class Header(Condition):
    """``header: {name: X-Foo, pattern: bar}``; no pattern means the header is present."""

    KEY = "header"

    def __init__(self, name: str, pattern: Pattern | None) -> None:
        self.name = name
        self.pattern = pattern

    @classmethod
    def build(cls, node: Node) -> Condition:
        found = node.fields(("name", "pattern"), required=("name",))
        pattern = Pattern.build(found["pattern"]) if "pattern" in found else None
        return cls(found["name"].text("a header name"), pattern)

    def value(self, message: Message) -> str:
        wanted = self.name.lower()
        getter = _HEADER_FIELDS.get(wanted)
        return getter(message) if getter else message.extra_headers.get(wanted, "")

    def matches(self, facts: Facts) -> bool:
        value = self.value(facts.message)
        return bool(value) and (self.pattern is None or self.pattern.search(value))

    def describe(self) -> str:
        if self.pattern is None:
            return f"header {self.name} is present"
        return f"header {self.name} {self.pattern.describe()}"


class NameCondition(Condition):
    """Base of ``type`` and ``severity``: the verdict so far has one of the names."""

    NAMES: ClassVar[Sequence[str]]

    def __init__(self, names: Sequence[str]) -> None:
        self.names = tuple(names)

    @classmethod
    def build(cls, node: Node) -> Condition:
        return cls([item.choice(cls.NAMES, cls.KEY) for item in node.one_or_many()])

    def current(self, facts: Facts) -> str:
        raise NotImplementedError

    def matches(self, facts: Facts) -> bool:
        return self.current(facts) in self.names

    def describe(self) -> str:
        return f"{self.KEY} is {' or '.join(self.names)}"

    def explain(self, facts: Facts) -> str:
        return f"{self.KEY} is {self.current(facts)}"


@condition
class Type(NameCondition):
    KEY = "type"
    NAMES = TYPES

    def current(self, facts: Facts) -> str:
        return facts.verdict.type


@condition
class Severity(NameCondition):
    KEY = "severity"
    NAMES = SEVERITIES

    def current(self, facts: Facts) -> str:
        return facts.verdict.severity


@condition
class Folder(Condition):
    """A folder name or role; names compare without regard to case."""

    KEY = "folder"

    def __init__(self, names: Sequence[str]) -> None:
        self.names = tuple(n.casefold() for n in names)

    @classmethod
    def build(cls, node: Node) -> Condition:
        return cls([item.text("a folder name or role") for item in node.one_or_many()])

    def matches(self, facts: Facts) -> bool:
        return facts.folder.casefold() in self.names or facts.role.casefold() in self.names

    def describe(self) -> str:
        return f"folder is {' or '.join(self.names)}"

    def explain(self, facts: Facts) -> str:
        if facts.folder.casefold() in self.names:
            return f"folder is {facts.folder}"
        return f"folder role is {facts.role}"


@condition
class Confidence(Condition):
    """``confidence: {below: 0.6}`` and/or ``{above: 0.9}`` (bounds excluded)."""

    KEY = "confidence"

    def __init__(self, below: float | None, above: float | None) -> None:
        self.below = below
        self.above = above

    @classmethod
    def build(cls, node: Node) -> Condition:
        found = node.fields(("below", "above"))
        if not found:
            raise node.error("expected 'below' and/or 'above'")
        bounds = {key: value.number(0.0, 1.0) for key, value in found.items()}
        return cls(bounds.get("below"), bounds.get("above"))

    def matches(self, facts: Facts) -> bool:
        value = facts.verdict.confidence
        return (self.below is None or value < self.below) and (
            self.above is None or value > self.above
        )

    def bounds(self) -> str:
        bounds = [f"below {self.below}"] if self.below is not None else []
        bounds += [f"above {self.above}"] if self.above is not None else []
        return " and ".join(bounds)

    def describe(self) -> str:
        return f"confidence is {self.bounds()}"

    def explain(self, facts: Facts) -> str:
        return f"confidence {facts.verdict.confidence:.2f} is {self.bounds()}"


class FlagCondition(Condition):
    """Base of the yes/no conditions."""

    def __init__(self, wanted: bool) -> None:
        self.wanted = wanted

    @classmethod
    def build(cls, node: Node) -> Condition:
        return cls(node.boolean())

    def current(self, facts: Facts) -> bool:
        raise NotImplementedError

    def matches(self, facts: Facts) -> bool:
        return self.current(facts) == self.wanted

    def describe(self) -> str:
        return f"{self.KEY} is {str(self.wanted).lower()}"


@condition
class HasOrderId(FlagCondition):
    KEY = "has_order_id"

    def current(self, facts: Facts) -> bool:
        return facts.verdict.order_id is not None or facts.message.order_id is not None


@condition
class Suspicious(FlagCondition):
    KEY = "suspicious"

    def current(self, facts: Facts) -> bool:
        return facts.verdict.suspicious


@condition
class Amazon(FlagCondition):
    KEY = "amazon"

    def current(self, facts: Facts) -> bool:
        return facts.verdict.amazon


@condition
class AllOf(Condition):
    KEY = "all"

    def __init__(self, children: Sequence[Condition]) -> None:
        self.children = tuple(children)

    @classmethod
    def build(cls, node: Node) -> Condition:
        children = [build_condition(item) for item in node.items()]
        if not children:
            raise node.error(f"expected a non-empty list of conditions under '{cls.KEY}'")
        return cls(children)

    def matches(self, facts: Facts) -> bool:
        return all(child.matches(facts) for child in self.children)

    def describe(self) -> str:
        return " and ".join(child.describe() for child in self.children)

    def explain(self, facts: Facts) -> str:
        return " and ".join(child.explain(facts) for child in self.children)


@condition
class AnyOf(AllOf):
    KEY = "any"

    def matches(self, facts: Facts) -> bool:
        return any(child.matches(facts) for child in self.children)

    def describe(self) -> str:
        return "(" + " or ".join(child.describe() for child in self.children) + ")"

    def explain(self, facts: Facts) -> str:
        matched = [c for c in self.children if c.matches(facts)]
        return matched[0].explain(facts) if matched else self.describe()


@condition
class Not(Condition):
    KEY = "not"

    def __init__(self, child: Condition) -> None:
        self.child = child

    @classmethod
    def build(cls, node: Node) -> Condition:
        return cls(build_condition(node))

    def matches(self, facts: Facts) -> bool:
        return not self.child.matches(facts)

    def describe(self) -> str:
        return f"not ({self.child.describe()})"


# --- actions ---------------------------------------------------------------------------


class RuleAction:
    """One entry of a rule's ``actions`` list; subclasses declare their YAML ``KEY``."""

    KEY: ClassVar[str]

    @classmethod
    def build(cls, at: Node, value: Node | None) -> Action:
        """``value`` is what follows ``KEY:``, or None for a bare name."""
        if value is not None:
            raise value.error(f"'{cls.KEY}' takes no value (write it as a bare name)")
        return Action(cls.KEY)


ACTIONS: dict[str, type[RuleAction]] = {}


def action(cls: type[RuleAction]) -> type[RuleAction]:
    ACTIONS[cls.KEY] = cls
    return cls


def build_action(node: Node) -> Action:
    """``alert`` (a bare name) or ``move: Folder`` (a one-key mapping)."""
    if isinstance(node.node, yaml.MappingNode):
        found = node.fields(ACTIONS, what="action")
        if len(found) != 1:
            raise node.error("expected one action per list item")
        ((key, value),) = found.items()
        return ACTIONS[key].build(node, value)
    key = node.text("an action name")
    if key not in ACTIONS:
        raise node.error(f"unknown action '{key}' ({_expected(key, ACTIONS)})")
    return ACTIONS[key].build(node, None)


@action
class Alert(RuleAction):
    """Push a notification now."""

    KEY = "alert"


@action
class Digest(RuleAction):
    """Wait for the next digest."""

    KEY = "digest"


@action
class Ignore(RuleAction):
    """Neither alert nor digest."""

    KEY = "ignore"


@action
class Flag(RuleAction):
    """Mark the mail flagged in the mailbox."""

    KEY = "flag"


@action
class Move(RuleAction):
    """``move: Folder``: file the mail in another folder."""

    KEY = "move"

    @classmethod
    def build(cls, at: Node, value: Node | None) -> Action:
        if value is None:
            raise at.error("'move' needs a folder: 'move: Folder'")
        return Action(cls.KEY, value.text("a folder name"))


def merge_actions(current: Sequence[Action], chosen: Sequence[Action]) -> list[Action]:
    """A later choice of how to notify, or where to move, replaces the earlier one."""
    replaced = {a.kind for a in chosen}
    if replaced & set(NOTIFY_KINDS):
        replaced |= set(NOTIFY_KINDS)
    kept = [a for a in current if a.kind not in replaced]
    return kept + [a for a in chosen if a not in kept]


def _build_actions(node: Node) -> tuple[Action, ...]:
    chosen: list[Action] = []
    for item in node.one_or_many():
        built = build_action(item)
        if built in chosen:
            raise item.error(f"action '{built.describe()}' is listed twice")
        chosen.append(built)
    kinds = {a.kind for a in chosen}
    if "ignore" in kinds and kinds & {"alert", "digest"}:
        raise node.error("'ignore' cannot go with 'alert' or 'digest'")
    if sum(a.kind == "move" for a in chosen) > 1:
        raise node.error("a rule can move a mail to one folder only")
    return tuple(chosen)


# --- rules -----------------------------------------------------------------------------

RULE_KEYS = ("name", "match", "type", "severity", "tags", "actions", "stop")


@dataclass(frozen=True)
class Rule:
    """One entry of ``rules:``: when ``condition`` holds, apply what it sets."""

    name: str
    condition: Condition
    type: str | None = None
    severity: str | None = None
    tags: tuple[str, ...] = ()
    actions: tuple[Action, ...] = ()
    stop: bool = False

    @classmethod
    def build(cls, node: Node) -> Rule:
        found = node.fields(RULE_KEYS, required=("name", "match"))
        does = {"type", "severity", "tags", "actions"} & found.keys()
        if not does and "stop" not in found:
            raise node.error("a rule must set type, severity, tags or actions, or stop")
        return cls(
            name=found["name"].text("a rule name"),
            condition=build_condition(found["match"]),
            type=found["type"].choice(TYPES, "type") if "type" in found else None,
            severity=(
                found["severity"].choice(SEVERITIES, "severity") if "severity" in found else None
            ),
            tags=tuple(t.text("a tag") for t in found["tags"].one_or_many())
            if "tags" in found else (),
            actions=_build_actions(found["actions"]) if "actions" in found else (),
            stop=found["stop"].boolean() if "stop" in found else False,
        )

    def apply(self, verdict: Verdict, facts: Facts) -> Verdict:
        """The verdict after this rule, which is known to match."""
        type_ = self.type or verdict.type
        severity = self.severity or clamp_severity(type_, verdict.severity)
        reason = f"rule '{self.name}': {self.condition.explain(facts)}"
        done = self._changes(verdict, type_, severity)
        return replace(
            verdict,
            type=type_,
            severity=severity,
            decided_by=f"rule:{self.name}",
            reasons=[*verdict.reasons, f"{reason} -> {', '.join(done)}" if done else reason],
            tags=list(dict.fromkeys([*verdict.tags, *self.tags])),
            actions=merge_actions(verdict.actions, self.actions),
        )

    def _changes(self, verdict: Verdict, type_: str, severity: str) -> list[str]:
        done = [f"type {type_}"] if type_ != verdict.type else []
        done += [f"severity {severity}"] if severity != verdict.severity else []
        done += [f"tags {', '.join(self.tags)}"] if self.tags else []
        done += [", ".join(a.describe() for a in self.actions)] if self.actions else []
        return done + (["stop"] if self.stop else [])


@dataclass(frozen=True)
class Defaults:
    """Which severities alert now, wait for the digest, or are ignored."""

    by_severity: Mapping[str, str] = field(
        default_factory=lambda: {s: "alert" if s == "critical" else "digest" for s in SEVERITIES}
    )

    @classmethod
    def build(cls, node: Node) -> Defaults:
        by_severity = {s: "digest" for s in SEVERITIES}
        seen: set[str] = set()
        for kind, value in node.fields(NOTIFY_KINDS).items():
            for item in value.one_or_many():
                severity = item.choice(SEVERITIES, "severity")
                if severity in seen:
                    raise item.error(f"severity '{severity}' is listed twice under defaults")
                seen.add(severity)
                by_severity[severity] = kind
        return cls(by_severity)

    def action_for(self, severity: str) -> Action:
        return Action(self.by_severity.get(severity, "digest"))


# --- top-level sections owned by other modules -----------------------------------------

SectionLoader = Callable[[Any, "SectionContext"], Any]

_SECTIONS: dict[str, SectionLoader] = {}


def register_section(key: str, loader: SectionLoader) -> None:
    """Let a top-level ``key`` of rules.yaml be read by ``loader`` (see the module docstring)."""
    if key in ("version", "defaults", "rules"):
        raise ValueError(f"'{key}' is a section of the rules module itself")
    _SECTIONS[key] = loader


class SectionContext:
    """Hands a section loader the lines of its sub-paths, for refusals a seller can act on."""

    def __init__(self, path: str, key: str, node: Node | None) -> None:
        self.path = path
        self.key = key
        self.node = node

    def line_of(self, path: str = "") -> int | None:
        """The line of a dotted path, from the section (``digests.0.at``) or the file top."""
        if self.node is None:
            return None
        first, _, rest = path.partition(".")
        return self.node.find(rest if first == self.key else path).line

    def error(self, path: str, reason: str) -> NoReturn:
        """Refuse the file at the line of ``path``."""
        raise RulesError(self.path, self.line_of(path), reason)


Check = Callable[["Rules"], list[str]]

_CHECKS: list[Check] = []


def register_check(check: Check) -> None:
    """Let a module add warnings to ``check-rules`` about a file that loads (a route to
    a tag no target has): ``check(rules) -> [warning, ...]``."""
    if check not in _CHECKS:
        _CHECKS.append(check)


def _load_section(loader: SectionLoader, key: str, node: Node | None, path: str) -> Any:
    ctx = SectionContext(path, key, node)
    try:
        return loader(node.plain() if node is not None else None, ctx)
    except TriageError:
        raise
    except (ValueError, TypeError, KeyError) as exc:
        raise RulesError(path, ctx.line_of(key), f"section '{key}': {exc}") from exc


def _import_section_modules() -> None:
    for name in SECTION_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            # A module this install lacks registers nothing; a broken one must not hide.
            if exc.name != name:
                raise


# --- the whole file --------------------------------------------------------------------


@dataclass(frozen=True)
class Rules:
    """A loaded rules file; ``Rules()`` is the policy with no rules and the defaults."""

    rules: tuple[Rule, ...] = ()
    defaults: Defaults = field(default_factory=Defaults)
    sections: Mapping[str, Any] = field(default_factory=dict)
    path: str = "<built-in>"

    def __len__(self) -> int:
        return len(self.rules)

    def section(self, key: str) -> Any:
        """What the registered loader made of ``key`` (its default when the file lacks it)."""
        if key in self.sections:
            return self.sections[key]
        if key not in _SECTIONS:
            raise KeyError(f"no section '{key}' is registered")
        return _load_section(_SECTIONS[key], key, None, self.path)

    def apply(
        self, message: Message, verdict: Verdict, folder: str = "INBOX", role: str = "inbox"
    ) -> Verdict:
        """The verdict after every matching rule, then the defaults for how to notify."""
        for rule in self.rules:
            facts = Facts(message, verdict, folder, role)
            if rule.condition.matches(facts):
                verdict = rule.apply(verdict, facts)
                if rule.stop:
                    break
        return self._notify_default(verdict)

    def _notify_default(self, verdict: Verdict) -> Verdict:
        if any(a.kind in NOTIFY_KINDS for a in verdict.actions):
            return verdict
        chosen = self.defaults.action_for(verdict.severity)
        return replace(
            verdict,
            actions=[*verdict.actions, chosen],
            reasons=[*verdict.reasons, f"defaults: {verdict.severity} -> {chosen.kind}"],
        )


def load_rules(path: str | Path) -> Rules:
    """Read and check a rules file; refuses it with :class:`RulesError`. Pure: no globals kept."""
    try:
        size = Path(path).stat().st_size
        if size > MAX_FILE_BYTES:
            raise RulesError(
                str(path), None,
                f"too large: {size:,} bytes (the limit is {MAX_FILE_BYTES:,}); "
                "a rules file holds a few dozen rules",
            )
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise RulesError(str(path), None, f"cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise RulesError(str(path), None, f"not UTF-8 text: {exc.reason}") from exc
    return parse_rules(text, str(path))


def parse_rules(
    text: str, path: str = "<string>", sections: Mapping[str, SectionLoader] | None = None
) -> Rules:
    """Check rules given as text; ``path`` only names them in errors.

    ``sections`` replaces the registered section loaders (a seam for tests).
    """
    if sections is None:
        _import_section_modules()
        sections = dict(_SECTIONS)
    if len(text) > MAX_FILE_BYTES:
        raise RulesError(path, None, f"too large: {len(text):,} characters "
                                     f"(the limit is {MAX_FILE_BYTES:,})")
    try:
        root = yaml.compose(text, Loader=_NoAliasLoader)
    except _AliasRefused as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark is not None else None
        raise RulesError(path, line, str(exc.problem)) from exc
    except yaml.MarkedYAMLError as exc:
        raise RulesError(path, *_yaml_problem(exc)) from exc
    except yaml.YAMLError as exc:
        raise RulesError(path, None, f"not valid YAML: {exc}") from exc
    if root is None:
        raise RulesError(path, None, f"empty file (expected 'version: {VERSION}' and 'rules:')")
    return _build(Node(root, path), sections)


class _AliasRefused(yaml.MarkedYAMLError):
    pass


class _NoAliasLoader(yaml.SafeLoader):
    """YAML without aliases: ``*name`` is refused where it stands, before it can expand."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise _AliasRefused(
                problem="aliases (*name) are not allowed in a rules file; write the value out",
                problem_mark=event.start_mark,
            )
        return super().compose_node(parent, index)


def _yaml_problem(exc: yaml.MarkedYAMLError) -> tuple[int | None, str]:
    """The line of a YAML error and what went wrong, in one sentence.

    The context mark (where the unfinished mapping or list began) is usually where
    the mistake is; the problem mark is where the parser gave up, often a line later.
    """
    mark = exc.context_mark or exc.problem_mark
    line = mark.line + 1 if mark is not None else None
    reason = f"not valid YAML: {exc.problem or exc}"
    if exc.context and exc.problem_mark is not None:
        reason += f" ({exc.context} on this line; noticed on line {exc.problem_mark.line + 1})"
    return line, reason


def _build(top: Node, loaders: Mapping[str, SectionLoader]) -> Rules:
    found = top.fields(("version", "defaults", "rules", *loaders), required=("version",))
    version = found["version"]
    if version.node.value != str(VERSION) or version.node.tag != "tag:yaml.org,2002:int":
        raise version.error(f"unsupported version (expected {VERSION})")
    items = found["rules"].items() if "rules" in found else []
    if len(items) > MAX_RULES:
        raise items[MAX_RULES].error(f"too many rules: {len(items):,} (the limit is {MAX_RULES:,})")
    rules = tuple(Rule.build(item) for item in items)
    _refuse_duplicate_names(rules, found.get("rules"))
    defaults = Defaults.build(found["defaults"]) if "defaults" in found else Defaults()
    sections = {
        key: _load_section(loader, key, found.get(key), top.path) for key, loader in loaders.items()
    }
    return Rules(rules, defaults, sections, top.path)


def _refuse_duplicate_names(rules: Sequence[Rule], node: Node | None) -> None:
    seen: set[str] = set()
    for index, rule in enumerate(rules):
        if rule.name in seen and node is not None:
            raise node.items()[index].error(f"duplicate rule name '{rule.name}'")
        seen.add(rule.name)


def check_command(args: argparse.Namespace) -> int:
    """``triage check-rules [FILE]``: 0 and "FILE: OK (N rules)", or 1 and the refusal."""
    path = args.file or DEFAULT_PATH
    try:
        rules = load_rules(path)
    except RulesError as exc:
        print(exc)
        return 1
    print(f"{path}: OK ({len(rules)} rule{'' if len(rules) == 1 else 's'})")
    for check in _CHECKS:
        for warning in check(rules):
            print(f"{path}: warning: {warning}")
    return 0
