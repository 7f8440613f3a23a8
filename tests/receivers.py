"""Real notification receivers for tests: an HTTP server and an SMTP server on loopback.

``HttpReceiver`` takes the posts of Apprise's ``json://`` notifier; it can answer
with an error or stop listening altogether, to play a target that is down.
``SmtpReceiver`` is an aiosmtpd server taking Apprise's ``mailto://`` mail in plain
SMTP (no TLS) with a login it accepts.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class HttpReceiver:
    """Collects JSON posts at ``json://127.0.0.1:PORT/PATH``."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.status = 200
        # Seconds to hang before answering; a hung request is dropped, not recorded
        # (a client with a shorter timeout sees a timeout).
        self.delay = 0.0
        # Called after a post is recorded and before it is answered (a crash there is
        # the worst case: the seller has it, the sender never learns).
        self.on_post: Callable[[], None] | None = None
        self.port = _free_port()
        self._server: ThreadingHTTPServer | None = None
        self.start()

    def url(self, path: str = "hook", **params: str) -> str:
        query = "&".join(f"{k}={v}" for k, v in params.items())
        return f"json://127.0.0.1:{self.port}/{path}" + (f"?{query}" if query else "")

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                if receiver.delay:
                    time.sleep(receiver.delay)
                elif receiver.status == 200:
                    receiver.posts.append(json.loads(body))
                    receiver.paths.append(self.path)
                    if receiver.on_post is not None:
                        receiver.on_post()
                self.send_response(receiver.status)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output clean; the posts are the record

        # The same port after a restart: the target "comes back".
        for _ in range(50):
            try:
                self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
                break
            except OSError:
                time.sleep(0.05)
        else:
            raise RuntimeError(f"port {self.port} stays busy")
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def messages(self) -> list[str]:
        return [post.get("message", "") for post in self.posts]

    @property
    def titles(self) -> list[str]:
        return [post.get("title", "") for post in self.posts]


@dataclass
class Mail:
    sender: str
    recipients: list[str]
    message: EmailMessage

    def body(self, subtype: str = "html") -> str:
        part = self.message.get_body(preferencelist=(subtype,))
        return part.get_content() if part is not None else ""


class _Handler:
    def __init__(self, inbox: list[Mail]) -> None:
        self.inbox = inbox

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(
            envelope.original_content or envelope.content, policy=policy.default
        )
        assert isinstance(message, EmailMessage)
        self.inbox.append(Mail(envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 OK"


def _accept_login(
    server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and auth_data.password == b"secret-pass"
    return AuthResult(success=ok)


class SmtpReceiver:
    """Collects mail at ``mailto://user:secret-pass@127.0.0.1:PORT`` (plain SMTP)."""

    def __init__(self) -> None:
        self.inbox: list[Mail] = []
        self.port = _free_port()
        self._controller = Controller(
            _Handler(self.inbox),
            hostname="127.0.0.1",
            port=self.port,
            authenticator=_accept_login,
            auth_require_tls=False,
        )
        self._controller.start()

    def url(self, to: str = "seller@example.com", **params: str) -> str:
        query = "&".join(
            [
                "mode=insecure",
                "from=triage@example.com",
                f"to={to}",
                *(f"{k}={v}" for k, v in params.items()),
            ]
        )
        return f"mailto://user:secret-pass@127.0.0.1:{self.port}?{query}"

    def stop(self) -> None:
        self._controller.stop()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --- recording mail the way the sync does -----------------------------------------------


def record(
    db: Any,
    message: Any,
    verdict: Any,
    *,
    received_at: Any,
    now: Any,
    folder_role: str = "inbox",
    history: bool = False,
    uid: int = 0,
) -> int:
    """Insert a ``messages`` row as the sync writes it, then call the notifier's hook."""
    from triage import notify

    rescued = any(a.kind == "rescue" for a in verdict.actions) and not verdict.suspicious
    link = "" if verdict.suspicious or not message.links else message.links[0]
    with db.transaction() as conn:
        cursor = conn.execute(
            """
            INSERT INTO messages (folder, folder_role, uidvalidity, uid, message_id, fingerprint,
                received_at, processed_at, sender, sender_name, reply_to, subject, order_id,
                buyer_name, link, type, severity, confidence, suspicious, amazon, actions,
                rescued, history)
            VALUES (?, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0.9, ?, ?, ?, ?, ?)
            """,
            (
                "Sent" if folder_role == "sent" else "INBOX",
                folder_role,
                uid or None,
                message.message_id,
                f"fp-{time.monotonic_ns()}",
                received_at.isoformat(),
                now.isoformat(),
                message.sender_address,
                message.sender_name,
                message.reply_to,
                message.subject,
                verdict.order_id or message.order_id,
                message.buyer_name,
                link,
                verdict.type,
                verdict.severity,
                int(verdict.suspicious),
                int(verdict.amazon),
                json.dumps([a.describe() for a in verdict.actions]),
                int(rescued),
                int(history),
            ),
        )
        row_id = int(cursor.lastrowid or 0)
        notify.after_verdict(conn, row_id, message, verdict, history=history, now=now)
    return row_id


def run_cli(tmp_path: Path, *args: str, urls: str = "") -> subprocess.CompletedProcess[str]:
    """``triage ARGS`` as a seller runs it: state in ``tmp_path``, an empty rules file,
    the given notification URLs and no settings inherited from the developer's shell."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIAGE_")}
    env.update({
        "TRIAGE_NOTIFY_URLS": urls,
        "TRIAGE_STATE_DIR": str(tmp_path),
        "TRIAGE_RULES": str(tmp_path / "rules.yaml"),
        "TRIAGE_TIMEZONE": "Europe/London",
    })
    (tmp_path / "rules.yaml").write_text("version: 1\n", encoding="utf-8")
    return subprocess.run(
        [sys.executable, "-m", "triage.cli", *args],
        env=env, text=True, capture_output=True, timeout=120, check=False,
    )
