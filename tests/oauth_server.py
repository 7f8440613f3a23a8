"""A small OAuth2 authorisation server on loopback, for the OAuth2 login tests.

It plays the mail provider's identity service:

- ``POST /token``: the ``refresh_token`` grant (a short-lived access token; with
  ``rotate`` set, a new refresh token too) and the device-code grant (RFC 8628);
- ``POST /device``: the device authorisation endpoint (a user code to type in);
- ``POST /introspect``: what Dovecot's ``oauth2`` passdb asks (RFC 7662): whether a
  token is active and whose it is.

A test can expire every access token, revoke a refresh token, approve a device code
and count the grants it served.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from receivers import _free_port

CLIENT_ID = "triage-test-client"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


@dataclass
class _Device:
    user: str
    user_code: str
    approved: bool = False
    used: bool = False


class OAuthServer:
    """Token, device and introspection endpoints at ``http://127.0.0.1:PORT``."""

    def __init__(self, lifetime: int = 3600, rotate: bool = False) -> None:
        self.lifetime = lifetime
        self.rotate = rotate
        self.port = _free_port()
        self.refresh_tokens: dict[str, str] = {}  # refresh token -> user
        self.access_tokens: dict[str, tuple[str, float]] = {}  # token -> (user, expiry)
        self.devices: dict[str, _Device] = {}  # device code -> request
        self.grants: list[str] = []  # grant types served, in order
        self.introspections = 0
        self._next_user = ""
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- what a test does ------------------------------------------------------------

    def issue_refresh_token(self, user: str) -> str:
        token = "rt-" + secrets.token_urlsafe(24)
        self.refresh_tokens[token] = user
        return token

    def expire_access_tokens(self) -> None:
        """Every access token issued so far stops working, as after its lifetime."""
        with self._lock:
            self.access_tokens = {t: (u, 0.0) for t, (u, _) in self.access_tokens.items()}

    def revoke(self, refresh_token: str) -> None:
        """The seller withdrew triage's access: the refresh token and its tokens die."""
        with self._lock:
            user = self.refresh_tokens.pop(refresh_token, None)
            self.access_tokens = {t: v for t, v in self.access_tokens.items() if v[0] != user}

    def approve(self, user_code: str) -> None:
        """The seller typed the code on the provider's page and said yes."""
        for device in self.devices.values():
            if device.user_code == user_code:
                device.approved = True

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- the endpoints ----------------------------------------------------------------

    def _token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        grant = form.get("grant_type", "")
        self.grants.append(grant)
        if form.get("client_id") != CLIENT_ID:
            return 401, {"error": "invalid_client"}
        if grant == "refresh_token":
            user = self.refresh_tokens.get(form.get("refresh_token", ""))
            if user is None:
                return 400, {"error": "invalid_grant", "error_description": "token revoked"}
            answer = self._access(user)
            if self.rotate:
                del self.refresh_tokens[form["refresh_token"]]
                answer["refresh_token"] = self.issue_refresh_token(user)
            return 200, answer
        if grant == DEVICE_GRANT:
            device = self.devices.get(form.get("device_code", ""))
            if device is None or device.used:
                return 400, {"error": "expired_token"}
            if not device.approved:
                return 400, {"error": "authorization_pending"}
            device.used = True
            return 200, {**self._access(device.user),
                         "refresh_token": self.issue_refresh_token(device.user)}
        return 400, {"error": "unsupported_grant_type"}

    def _access(self, user: str) -> dict[str, Any]:
        token = "at-" + secrets.token_urlsafe(24)
        with self._lock:
            self.access_tokens[token] = (user, time.time() + self.lifetime)
        return {"access_token": token, "token_type": "Bearer", "expires_in": self.lifetime}

    def device_for(self, user: str) -> None:
        """The next device authorisation belongs to ``user`` (the account that will approve)."""
        self._next_user = user

    def _device(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        code = secrets.token_urlsafe(16)
        user_code = secrets.token_hex(4).upper()
        self.devices[code] = _Device(self._next_user, user_code)
        return 200, {
            "device_code": code,
            "user_code": user_code,
            "verification_uri": f"{self.url}/device/verify",
            "expires_in": 600,
            "interval": 1,
        }

    def _introspect(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        self.introspections += 1
        user, expiry = self.access_tokens.get(form.get("token", ""), ("", 0.0))
        if not user or expiry < time.time():
            return 200, {"active": False}
        return 200, {"active": True, "username": user}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        routes = {"/token": self._token, "/device": self._device, "/introspect": self._introspect}

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length).decode()
                form = {k: v[0] for k, v in parse_qs(body).items()}
                route = routes.get(self.path.split("?")[0])
                status, answer = route(form) if route else (404, {"error": "not_found"})
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
