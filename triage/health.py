"""Is the daemon alive? A heartbeat, ``/healthz`` and ``/metrics``, and ``triage health``.

The daemon loop calls :func:`beat` whenever it completes a pass (a sync or an IDLE
refresh). The daemon counts as healthy while every account's last beat is younger
than ``max_age`` (three IDLE refresh intervals by default) and no problem is
reported through :func:`set_problem`: a critical alert that has waited too long for
a target, or a rules.yaml edit that was refused and not yet replaced. A loop that
turns is not enough: the seller must also be hearing what matters.

Two ways to ask:

* ``/healthz`` on the optional HTTP port (``TRIAGE_HTTP_PORT``, see :func:`start_http`),
  200 ``{"status": "ok", ...}`` or 503; ``/metrics`` serves the Prometheus metrics;
* ``triage health``, the container's health check, which needs no port: :func:`beat`
  also writes ``STATE_DIR/heartbeat`` (at most every few seconds) and the command
  reads it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from triage import metrics, settings
from triage.errors import TriageError
from triage.logs import mask

log = logging.getLogger(__name__)

HEARTBEAT_FILE = "heartbeat"
WRITE_EVERY_SECONDS = 5.0
STALE_AFTER_REFRESHES = 3
DEFAULT_IDLE_REFRESH = 540


def max_age_for(idle_refresh_seconds: int) -> float:
    """How old a beat may get: IDLE wakes at least once per refresh, so three missed is sick."""
    return float(STALE_AFTER_REFRESHES * idle_refresh_seconds)


@dataclass(frozen=True)
class Health:
    """The answer to "is the daemon alive?", with the age of each account's last beat."""

    ok: bool
    reason: str
    ages: Mapping[str, float] = field(default_factory=dict)
    max_age: float = 0.0
    problems: Mapping[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": "ok" if self.ok else "unhealthy",
            "reason": self.reason,
            "max_age_seconds": self.max_age,
            "accounts": {name: round(age, 1) for name, age in self.ages.items()},
            "problems": dict(self.problems),
        }


def judge(
    beats: Mapping[str, float],
    max_age: float,
    now: float,
    problems: Mapping[str, str] | None = None,
) -> Health:
    """Healthy when there is a beat, none is older than ``max_age`` and no problem is open."""
    problems = dict(problems or {})
    ages = {account: max(0.0, now - when) for account, when in beats.items()}
    if not ages:
        return Health(False, "no heartbeat yet", ages, max_age, problems)
    stale = sorted(account for account, age in ages.items() if age > max_age)
    if stale:
        oldest = max(ages[account] for account in stale)
        reason = f"no heartbeat for {oldest:.0f}s from {', '.join(stale)} (limit {max_age:.0f}s)"
        return Health(False, reason, ages, max_age, problems)
    if problems:
        return Health(False, "; ".join(problems[k] for k in sorted(problems)), ages, max_age,
                      problems)
    return Health(True, "alive", ages, max_age)


class Heartbeat:
    """Last beat per account, kept in memory and mirrored to ``state_dir/heartbeat``."""

    def __init__(
        self,
        state_dir: Path | None,
        max_age: float = max_age_for(DEFAULT_IDLE_REFRESH),
        write_every: float = WRITE_EVERY_SECONDS,
    ) -> None:
        self.path = state_dir / HEARTBEAT_FILE if state_dir is not None else None
        self.max_age = max_age
        self.write_every = write_every
        self._beats: dict[str, float] = {}
        self._problems: dict[str, str] = {}
        self._written_at: float | None = None
        self._lock = threading.Lock()

    def beat(self, account: str = "default", now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self._lock:
            self._beats[account] = now
            due = self._written_at is None or now - self._written_at >= self.write_every
            if due:
                self._written_at = now
                beats = dict(self._beats)
        if due:
            self._write(beats, now)

    def set_problem(self, name: str, reason: str | None, now: float | None = None) -> None:
        """Open (``reason``) or close (None) a problem; written out at once if it changed."""
        now = time.time() if now is None else now
        with self._lock:
            before = self._problems.get(name)
            if reason is None:
                self._problems.pop(name, None)
            else:
                self._problems[name] = mask(reason)
            changed = before != self._problems.get(name)
            beats = dict(self._beats)
        if changed:
            self._write(beats, now)

    def check(self, now: float | None = None) -> Health:
        with self._lock:
            beats = dict(self._beats)
            problems = dict(self._problems)
        return judge(beats, self.max_age, time.time() if now is None else now, problems)

    def _write(self, beats: Mapping[str, float], now: float) -> None:
        if self.path is None:
            return
        with self._lock:
            problems = dict(self._problems)
        content = {"pid": os.getpid(), "written_at": now, "max_age": self.max_age,
                   "accounts": beats, "problems": problems}
        tmp = self.path.with_name(f".{HEARTBEAT_FILE}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(content), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError as exc:
            # A full disk must not stop the daemon; the health check will report it.
            log.warning("cannot write heartbeat %s: %s", self.path, exc.strerror)


def read_heartbeat_file(path: Path, now: float | None = None) -> Health:
    """The daemon's health as its heartbeat file tells it (for ``triage health``)."""
    now = time.time() if now is None else now
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
        beats = {str(k): float(v) for k, v in content["accounts"].items()}
        max_age = float(content["max_age"])
        problems = {str(k): str(v) for k, v in content.get("problems", {}).items()}
    except FileNotFoundError:
        return Health(False, f"no heartbeat file at {path}: is the daemon running?")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return Health(False, f"unreadable heartbeat file {path}: {exc}")
    return judge(beats, max_age, now, problems)


_heartbeat = Heartbeat(None)


def configure(state_dir: Path | None, max_age: float) -> Heartbeat:
    """Make :func:`beat` write ``state_dir/heartbeat`` (None: keep beats in memory only)."""
    global _heartbeat
    _heartbeat = Heartbeat(state_dir, max_age)
    return _heartbeat


def start(config: settings.Settings) -> ThreadingHTTPServer | None:
    """What the daemon does once at start-up: point :func:`beat` at the state directory
    and, when ``TRIAGE_HTTP_PORT`` is set, serve ``/healthz`` and ``/metrics``."""
    refresh = config.imap.idle_refresh_seconds if config.imap else DEFAULT_IDLE_REFRESH
    configure(config.state_dir, max_age_for(refresh))
    if config.ops.http_port is None:
        return None
    return start_http(config.ops.http_host, config.ops.http_port)


def beat(account: str = "default") -> None:
    """The daemon loop is alive for ``account``; call after every sync or IDLE wake-up."""
    _heartbeat.beat(account)


def set_problem(name: str, reason: str | None) -> None:
    """Something the seller would notice is wrong (``reason``), or no longer (None)."""
    _heartbeat.set_problem(name, reason)


def current() -> Heartbeat:
    return _heartbeat


def health_command(args: argparse.Namespace) -> int:
    """``triage health``: exit 0 when the daemon is alive, else 1 with one line why."""
    try:
        state_dir = settings.from_env().state_dir
    except TriageError as exc:
        # Docker reserves exit code 2; a broken configuration is simply unhealthy.
        print(f"unhealthy: {mask(str(exc))}")
        return 1
    health = read_heartbeat_file(state_dir / HEARTBEAT_FILE)
    if health.ok:
        return 0
    print(f"unhealthy: {health.reason}")
    return 1


class _Handler(BaseHTTPRequestHandler):
    heartbeat: Heartbeat | None
    metrics: metrics.Metrics

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            # Resolved per request, so configure() may come after start_http().
            health = (self.heartbeat or current()).check()
            body = json.dumps(health.as_dict()).encode()
            self._send(200 if health.ok else 503, "application/json", body)
        elif path == "/metrics":
            self._send(200, metrics.CONTENT_TYPE_LATEST, self.metrics.exposition())
        else:
            self._send(404, "text/plain; charset=utf-8", b"not found: try /healthz or /metrics\n")

    def _send(self, code: int, content_type: str, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        # Scrapes every few seconds would drown the log at INFO.
        log.debug("http %s " + format, self.client_address[0], *args)


def start_http(
    host: str,
    port: int,
    heartbeat: Heartbeat | None = None,
    registry: metrics.Metrics | None = None,
) -> ThreadingHTTPServer:
    """Serve ``/healthz`` and ``/metrics`` from a daemon thread; port 0 picks a free one.

    ``heartbeat`` and ``registry`` default to the process's own (:func:`beat`,
    :func:`triage.metrics.default`). Stop it with :func:`stop`.
    """
    handler = type("HealthHandler", (_Handler,), {
        "heartbeat": heartbeat,
        "metrics": registry if registry is not None else metrics.default(),
    })
    try:
        server = ThreadingHTTPServer((host, port), handler)
    except OSError as exc:
        raise TriageError(f"cannot serve /healthz on {host}:{port}: {exc.strerror}") from exc
    server.daemon_threads = True
    # A short poll keeps stop() quick; the cost is a wake-up every fifth of a second.
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="triage-http",
        daemon=True,
    )
    thread.start()
    log.info("serving /healthz and /metrics on http://%s:%d", *server.server_address[:2])
    return server


def stop(server: ThreadingHTTPServer) -> None:
    server.shutdown()
    server.server_close()
