"""Where a notification goes: Apprise targets, their tags, the default targets.

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
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import apprise

from triage import chat, logs, rules
from triage.errors import ConfigError, NotifyError
from triage.notifypolicy import NotifyPolicy
from triage.rules import Rules
from triage.settings import Settings

log = logging.getLogger(__name__)

# Query parameters Apprise adds that say how, not where or with what secret.
SHOWN_PARAMETERS = frozenset(
    ("format", "overflow", "method", "retry", "wait", "optional", "cto", "rto", "verify",
     "from", "to", "smtp", "mode", "priority")
)
# Path segments this short, without digits, are words ("hooks", "api"), not tokens.
TOKEN_MIN_CHARS = 8
TAGGED_URL = re.compile(
    r"^(?P<tags>[A-Za-z0-9_-]+(?:\+[A-Za-z0-9_-]+)*)=(?P<url>[a-z0-9+.-]+://.*)$"
)


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



def route(targets: Sequence[Target], tags: Sequence[str], title: str) -> list[Target]:
    """The targets that take one of ``tags``; else, with a warning, the default targets."""
    chosen = [t for t in targets if t.wants(tags)]
    if not chosen:
        chosen = default_targets(targets)
        log.warning(
            "no notification target takes the tags %s of %r: sent to the default "
            "target(s) instead; give a target one of these tags or route them in "
            "rules.yaml (notify: route:)",
            ", ".join(tags), title,
        )
    return chosen


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
