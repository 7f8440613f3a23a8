"""rules.yaml's ``notify:`` section: where and when the seller hears about mail.

Loaded through the rules registry (``rules.register_section``), so a mistake is refused
with the file and line like any rule. The section's keys and an example are in
:mod:`triage.notify`'s docstring and the shipped ``rules.yaml``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import time, timedelta
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from triage import replyclock, rules
from triage.errors import ConfigError, RulesError
from triage.schedule import DigestSchedule
from triage.settings import Settings
from triage.taxonomy import SEVERITIES, TYPES

DEFAULT_DIGESTS: tuple[DigestSchedule, ...] = (
    DigestSchedule("hourly", severities=("high",), every=timedelta(hours=1)),
    DigestSchedule("daily", at=time(8, 0)),
    DigestSchedule("weekly", at=time(8, 0), weekday=0),
)
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
DURATION_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


@dataclass(frozen=True)
class NotifyPolicy:
    """What is pushed at once, what waits for which digest, and when not to disturb."""

    alert_severities: tuple[str, ...] = ("critical",)
    alert_types: tuple[str, ...] = ()
    routes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    digests: tuple[DigestSchedule, ...] = DEFAULT_DIGESTS
    reminders: tuple[timedelta, ...] = replyclock.DEFAULT_REMINDERS
    silence_after: timedelta = timedelta(hours=72)
    quiet_hours: tuple[time, time] | None = None
    max_chars: int = 3500

    def tags_for(self, *names: str) -> tuple[str, ...]:
        extra = [tag for name in names for tag in self.routes.get(name, ())]
        return tuple(dict.fromkeys([*names, *extra]))


POLICY_KEYS = (
    "alert",
    "route",
    "digests",
    "reminders",
    "silence_after",
    "quiet_hours",
    "max_chars",
)


class _Where(Protocol):
    path: str

    def line_of(self, path: str = "") -> int | None: ...


def load_policy(data: Any, where: _Where | None = None) -> NotifyPolicy:
    """Validate a ``notify:`` mapping; a bad key or value names the file and line."""
    path = where.path if where else "rules.yaml"

    def fail(key: str, reason: str) -> RulesError:
        line = where.line_of(f"notify.{key}" if key != "notify" else "notify") if where else None
        return RulesError(path, line, f"notify: {reason}")

    if data is None:
        return NotifyPolicy()
    if not isinstance(data, Mapping):
        raise fail("notify", "expected a mapping of settings")
    unknown = sorted(set(data) - set(POLICY_KEYS))
    if unknown:
        raise fail(
            unknown[0], f"unknown key {unknown[0]!r}; expected one of {', '.join(POLICY_KEYS)}"
        )
    try:
        return _policy(data)
    except ValueError as exc:
        key = str(exc).split(":", 1)[0]
        raise fail(key if key in POLICY_KEYS else "notify", str(exc)) from exc


def _policy(data: Mapping[str, Any]) -> NotifyPolicy:
    default = NotifyPolicy()
    alert = data.get("alert") or {}
    if not isinstance(alert, Mapping) or set(alert) - {"severities", "types"}:
        raise ValueError("alert: expected a mapping with 'severities' and/or 'types'")
    return NotifyPolicy(
        alert_severities=_names("alert", alert.get("severities", ["critical"]), SEVERITIES),
        alert_types=_names("alert", alert.get("types", []), TYPES),
        routes=_routes(data.get("route") or {}),
        digests=_schedules(data["digests"]) if "digests" in data else default.digests,
        reminders=tuple(
            _duration("reminders", v) for v in data.get("reminders", ["12h", "4h", "1h"])
        ),
        silence_after=_duration("silence_after", data.get("silence_after", "72h")),
        quiet_hours=_quiet_hours(data["quiet_hours"]) if data.get("quiet_hours") else None,
        max_chars=_positive("max_chars", data.get("max_chars", default.max_chars)),
    )


def _names(key: str, values: Any, allowed: Sequence[str]) -> tuple[str, ...]:
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ValueError(f"{key}: expected a list of names")
    for value in values:
        if value not in allowed:
            raise ValueError(f"{key}: unknown name {value!r}; expected one of {', '.join(allowed)}")
    return tuple(values)


def _routes(data: Any) -> dict[str, tuple[str, ...]]:
    if not isinstance(data, Mapping):
        raise ValueError("route: expected a mapping of severity or type to a list of tags")
    routes = {}
    for name, tags in data.items():
        _names("route", [name], (*SEVERITIES, *TYPES))
        if not isinstance(tags, list) or not all(isinstance(t, str) and t for t in tags):
            raise ValueError(f"route: {name}: expected a list of Apprise tags")
        routes[name] = tuple(tags)
    return routes


def _schedules(data: Any) -> tuple[DigestSchedule, ...]:
    if not isinstance(data, list):
        raise ValueError("digests: expected a list of digests")
    schedules = tuple(_schedule(item) for item in data)
    names = [s.name for s in schedules]
    if len(set(names)) != len(names):
        raise ValueError("digests: two digests have the same name")
    return schedules


def _schedule(item: Any) -> DigestSchedule:
    allowed = {"name", "every", "at", "weekday", "monthday", "severities", "tags", "max_items"}
    if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
        raise ValueError("digests: each digest needs a 'name'")
    if set(item) - allowed:
        bad = sorted(set(item) - allowed)[0]
        raise ValueError(f"digests: {item['name']}: unknown key {bad!r}")
    if ("every" in item) == ("at" in item):
        raise ValueError(f"digests: {item['name']}: give either 'every' or 'at'")
    weekday = item.get("weekday")
    if weekday is not None and str(weekday).lower() not in WEEKDAYS:
        raise ValueError(f"digests: {item['name']}: weekday must be one of {', '.join(WEEKDAYS)}")
    monthday = _monthday(item)
    return DigestSchedule(
        name=item["name"],
        severities=_names("digests", item.get("severities", list(SEVERITIES)), SEVERITIES),
        tags=tuple(item.get("tags", ["digest"])),
        every=_duration("digests", item["every"]) if "every" in item else None,
        at=_clock_time("digests", item["at"]) if "at" in item else None,
        weekday=WEEKDAYS.index(str(weekday).lower()) if weekday is not None else None,
        max_items=_positive("digests", item.get("max_items", 25)),
        monthday=monthday,
    )


def _monthday(item: Mapping[str, Any]) -> int | None:
    """``monthday: 1`` (1 to 31) makes a daily ``at`` digest monthly."""
    if "monthday" not in item:
        return None
    value = item["monthday"]
    if "weekday" in item or "at" not in item:
        raise ValueError(f"digests: {item['name']}: monthday goes with 'at' and not 'weekday'")
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 31:
        raise ValueError(f"digests: {item['name']}: monthday must be a day from 1 to 31")
    return value


def _duration(key: str, value: Any) -> timedelta:
    match = DURATION.match(str(value))
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"{key}: expected a duration such as 90m, 12h or 3d, got {value!r}")
    return timedelta(**{DURATION_UNITS[match.group(2)]: int(match.group(1))})


def _clock_time(key: str, value: Any) -> time:
    if isinstance(value, int):  # YAML 1.1 reads an unquoted 08:00 as sexagesimal minutes
        return time(value // 60 % 24, value % 60)
    try:
        return time.fromisoformat(str(value))
    except ValueError as exc:
        raise ValueError(f'{key}: expected a time such as "08:00", got {value!r}') from exc


def _quiet_hours(value: Any) -> tuple[time, time]:
    if not isinstance(value, Mapping) or set(value) != {"from", "to"}:
        raise ValueError('quiet_hours: expected {from: "22:00", to: "07:00"}')
    return _clock_time("quiet_hours", value["from"]), _clock_time("quiet_hours", value["to"])


def _positive(key: str, value: Any) -> int:
    if not isinstance(value, int) or value <= 0:
        raise ValueError(f"{key}: expected a positive whole number, got {value!r}")
    return value


def policy_from_file(path: Path) -> NotifyPolicy:
    """The ``notify:`` section of a rules file (the defaults when the file has none)."""
    if not path.exists():
        return NotifyPolicy()
    policy: NotifyPolicy = rules.load_rules(path).section("notify")
    return policy


rules.register_section("notify", load_policy)


def timezone(settings: Settings) -> ZoneInfo:
    try:
        return ZoneInfo(settings.notify.timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(
            f"TRIAGE_TIMEZONE: unknown time zone {settings.notify.timezone!r}"
        ) from exc
