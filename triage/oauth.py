"""OAuth2 access tokens for IMAP (XOAUTH2), from a refresh token.

:class:`TokenSource` trades the refresh token at the provider's token endpoint for a
short-lived access token, keeps it in the state folder (mode 0600) so a restart does
not ask again, refreshes it a minute before it expires and at once when the server
says it is no good, and saves the new refresh token a provider may hand back. A
refresh token the provider refuses (revoked, expired, password changed) raises
:class:`GrantRevoked`, whose ``first_report`` is true only the first time that token is
found dead, so the seller is told once.

No token is ever logged or put in an error message.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from triage import logs
from triage.errors import LoginError, MailboxError
from triage.settings import OAuthSettings

if TYPE_CHECKING:
    import requests

log = logging.getLogger(__name__)

# Refresh this long before the provider's expiry, so a login never races the clock.
EXPIRY_MARGIN_SECONDS = 60
HTTP_TIMEOUT = 30.0
# One refresh at a time per cache file: two watchers refreshing at once would both
# spend the same refresh token, and a provider that rotates them refuses the second.
_LOCKS: dict[Path, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


class OAuthError(MailboxError):
    """The token endpoint could not be reached or gave an answer we cannot use.

    A mailbox error: the daemon retries it with backoff like a server that is down.
    """


class GrantRevoked(LoginError):
    """The provider refused the refresh token: the seller must log in again."""

    def __init__(self, message: str, first_report: bool) -> None:
        super().__init__(message)
        self.first_report = first_report


def _digest(token: str) -> str:
    """Names a refresh token in the cache without keeping a second copy of it."""
    return hashlib.sha256(token.encode()).hexdigest()


def _lock(path: Path) -> threading.Lock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(path, threading.Lock())


def write_private(path: Path, data: dict[str, Any]) -> None:
    """Write JSON readable by the owner only, replacing the file in one step."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(data, out)
    os.chmod(tmp, 0o600)  # an older file of that name may have had wider rights
    os.replace(tmp, path)


@dataclass
class _Cache:
    """The cache file: the access token, and the refresh token now in force."""

    source: str = ""  # digest of the configured refresh token the rest derives from
    refresh_token: str = ""
    access_token: str = ""
    expires_at: float = 0.0
    revoked: str = ""  # digest of a refresh token already reported as refused

    @classmethod
    def read(cls, path: Path) -> _Cache:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError) as exc:
            log.warning("ignoring the unreadable token cache %s (%s)", path, type(exc).__name__)
            return cls()
        if not isinstance(data, dict):
            return cls()
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})

    def write(self, path: Path) -> None:
        write_private(path, asdict(self))


class TokenSource:
    """Access tokens for one account; safe to share between threads."""

    def __init__(
        self,
        settings: OAuthSettings,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        import requests  # only an OAuth account needs HTTP: not imported at start-up

        self.settings = settings
        self.session = session or requests.Session()
        self.clock = clock

    def access_token(self) -> str:
        """A token valid for at least a minute more, refreshed when needed."""
        with _lock(self.settings.cache_path):
            cache = self._cache()
            if cache.access_token and cache.expires_at - EXPIRY_MARGIN_SECONDS > self.clock():
                return cache.access_token
            return self._refresh(cache)

    def invalidate(self, token: str) -> None:
        """The server refused ``token``: the next :meth:`access_token` gets a new one."""
        with _lock(self.settings.cache_path):
            cache = self._cache()
            if cache.access_token == token:
                cache.access_token, cache.expires_at = "", 0.0
                cache.write(self.settings.cache_path)

    def secrets(self) -> tuple[str, ...]:
        """Every token this source may hold, for scrubbing server messages."""
        cache = _Cache.read(self.settings.cache_path)
        values = (self.settings.refresh_token, self.settings.client_secret,
                  cache.refresh_token, cache.access_token)
        return tuple(v for v in values if v)

    # -- internals ----------------------------------------------------------------------

    def _cache(self) -> _Cache:
        """The cache, unless it belongs to another configured refresh token (a new login)."""
        cache = _Cache.read(self.settings.cache_path)
        source = _digest(self.settings.refresh_token)
        if cache.source != source:
            cache = _Cache(source=source, refresh_token=self.settings.refresh_token,
                           revoked=cache.revoked)
        for token in (self.settings.refresh_token, cache.refresh_token, cache.access_token):
            if token:
                logs.register_secret(token)  # masked in any log line, should one carry it
        return cache

    def _refresh(self, cache: _Cache) -> str:
        refresh_token = cache.refresh_token or self.settings.refresh_token
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token,
                "client_id": self.settings.client_id}
        if self.settings.client_secret:
            form["client_secret"] = self.settings.client_secret
        if self.settings.scope:
            form["scope"] = self.settings.scope
        answer = post_form(self.session, self.settings.token_url, form)
        if answer.get("error") == "invalid_grant":
            self._revoked(cache, refresh_token, str(answer.get("error")))
        token = answer.get("access_token")
        if not isinstance(token, str) or not token:
            raise OAuthError(f"{self.settings.token_url} gave no access token "
                             f"({answer.get('error') or 'no error code'})")
        logs.register_secret(token)
        cache.access_token = token
        lifetime = float(answer.get("expires_in") or 3600)
        cache.expires_at = self.clock() + lifetime
        rotated = answer.get("refresh_token")
        if isinstance(rotated, str) and rotated and rotated != refresh_token:
            logs.register_secret(rotated)
            cache.refresh_token = rotated
            log.info("the provider issued a new refresh token; saved it")
        cache.revoked = ""
        cache.write(self.settings.cache_path)
        log.info("OAuth2 access token refreshed (valid %d s)", lifetime)
        return token

    def _revoked(self, cache: _Cache, refresh_token: str, error: str) -> None:
        digest = _digest(refresh_token)
        first = cache.revoked != digest
        if first:
            cache.revoked = digest
            cache.access_token, cache.expires_at = "", 0.0
            cache.write(self.settings.cache_path)
        raise GrantRevoked(
            f"the mail provider refused the saved OAuth2 authorisation ({error}): it was "
            "revoked or has expired. Log in again: `triage login --provider microsoft|google`, "
            "or set a new TRIAGE_OAUTH_REFRESH_TOKEN",
            first_report=first,
        )


def post_form(session: requests.Session, url: str, form: dict[str, str]) -> dict[str, Any]:
    """POST a form to an OAuth2 endpoint; its JSON answer, errors included (RFC 6749 5.2)."""
    import requests

    try:
        response = session.post(url, data=form, timeout=HTTP_TIMEOUT,
                                headers={"Accept": "application/json"})
    except requests.RequestException as exc:
        raise OAuthError(f"cannot reach {url}: {type(exc).__name__}") from exc
    try:
        answer = response.json()
    except ValueError as exc:
        raise OAuthError(f"{url} answered HTTP {response.status_code}, not JSON") from exc
    if not isinstance(answer, dict):
        raise OAuthError(f"{url} answered HTTP {response.status_code} with no JSON object")
    if response.status_code >= 400 and "error" not in answer:
        raise OAuthError(f"{url} answered HTTP {response.status_code}")
    return answer
