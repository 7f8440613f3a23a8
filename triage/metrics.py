"""Prometheus metrics: what triage saw, rescued and sent, per mailbox account.

The daemon's modules call the plain functions below (``count_message``,
``count_alert``, ...); ``/metrics`` (see :mod:`triage.health`) serves them. They
live in a :class:`Metrics` of their own registry, not prometheus-client's global
one, so several daemons or tests in one process never collide; the default one is
created on first use.
"""

from __future__ import annotations

import threading
from datetime import datetime

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge
from prometheus_client import generate_latest as _generate_latest

__all__ = [
    "CONTENT_TYPE_LATEST",
    "Metrics",
    "count_alert",
    "count_breach",
    "count_message",
    "count_reconnect",
    "count_rules_reload",
    "default",
    "exposition",
    "mark_sync",
    "set_open_clocks",
]


class Metrics:
    """Every triage metric, registered on ``registry`` (a fresh one by default)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.messages = Counter(
            "triage_messages_total", "Messages decided, by type and severity",
            ["account", "type", "severity"], registry=r,
        )
        self.rescued = Counter(
            "triage_rescued_total", "Genuine Amazon messages moved out of junk",
            ["account"], registry=r,
        )
        self.suspicious = Counter(
            "triage_suspicious_total", "Messages presenting as Amazon without authentication",
            ["account"], registry=r,
        )
        self.alerts_sent = Counter(
            "triage_alerts_sent_total", "Notifications delivered", ["account"], registry=r,
        )
        self.alerts_failed = Counter(
            "triage_alerts_failed_total", "Notification attempts that failed",
            ["account"], registry=r,
        )
        self.reconnects = Counter(
            "triage_imap_reconnects_total", "IMAP reconnections", ["account"], registry=r,
        )
        self.clocks_open = Gauge(
            "triage_reply_clocks_open", "Buyer messages awaiting a reply", ["account"],
            registry=r,
        )
        self.clocks_breached = Counter(
            "triage_reply_clocks_breached_total", "Buyer messages left unanswered past 24 hours",
            ["account"], registry=r,
        )
        self.last_sync = Gauge(
            "triage_last_sync_timestamp_seconds", "Unix time of the last completed sync",
            ["account"], registry=r,
        )
        self.rules_reloads = Counter(
            "triage_rules_reload_total", "Rules file reloads, by result (ok or error)",
            ["result"], registry=r,
        )

    def start_account(self, account: str) -> None:
        """Show every per-account series at zero, so alerts on rates work from the start."""
        for counter in (
            self.rescued, self.suspicious, self.alerts_sent, self.alerts_failed,
            self.reconnects, self.clocks_breached,
        ):
            counter.labels(account=account)
        self.clocks_open.labels(account=account)

    def exposition(self) -> bytes:
        """The Prometheus text format of every metric."""
        return _generate_latest(self.registry)


_default: Metrics | None = None
_default_lock = threading.Lock()


def default() -> Metrics:
    """The process's metrics, created on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Metrics()
        return _default


def exposition() -> bytes:
    return default().exposition()


def count_message(
    account: str, type: str, severity: str, suspicious: bool = False, rescued: bool = False
) -> None:
    """One decided message; ``type`` and ``severity`` are taxonomy names."""
    m = default()
    m.messages.labels(account=account, type=type, severity=severity).inc()
    if suspicious:
        m.suspicious.labels(account=account).inc()
    if rescued:
        m.rescued.labels(account=account).inc()


def count_alert(account: str, ok: bool) -> None:
    """One notification attempt, delivered or not."""
    m = default()
    (m.alerts_sent if ok else m.alerts_failed).labels(account=account).inc()


def count_reconnect(account: str) -> None:
    default().reconnects.labels(account=account).inc()


def set_open_clocks(account: str, n: int) -> None:
    default().clocks_open.labels(account=account).set(n)


def count_breach(account: str) -> None:
    default().clocks_breached.labels(account=account).inc()


def mark_sync(account: str, when: datetime | float) -> None:
    """A sync finished at ``when`` (an aware datetime or Unix seconds)."""
    seconds = when.timestamp() if isinstance(when, datetime) else float(when)
    default().last_sync.labels(account=account).set(seconds)


def count_rules_reload(ok: bool) -> None:
    default().rules_reloads.labels(result="ok" if ok else "error").inc()
