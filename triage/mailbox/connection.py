"""The connection: open it, secure it (TLS or STARTTLS), log in, and keep it honest.

Logging in takes the password, or an OAuth2 access token from :mod:`triage.oauth`
(XOAUTH2, or OAUTHBEARER where the server offers only that). Every library, socket
and TLS error is wrapped into :class:`MailboxError` (or :class:`LoginError`) with one
clear line that never contains the password or a token; a connection found dead is
dropped, so the next command reconnects rather than talks to a corpse.
"""

from __future__ import annotations

import contextlib
import imaplib
import logging
import socket
import ssl
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Self

from imapclient import IMAPClient, SocketTimeout
from imapclient import exceptions as imap_errors

from triage.errors import LoginError, MailboxError
from triage.oauth import TokenSource
from triage.settings import ImapSettings, mask

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 20.0
# Long enough for a slow server to answer a big FETCH, short enough that a dead
# peer is noticed; IDLE waits are timed separately and are not bound by it.
READ_TIMEOUT = 120.0

ClientFactory = Callable[..., IMAPClient]


def as_text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def uid_set(uids: Iterable[int]) -> list[int]:
    return sorted({int(uid) for uid in uids})


def _quiet_imaplib(client: IMAPClient) -> None:
    """Turn off imaplib's own tracing unless someone reads it.

    imapclient sets it on every connection (debug level 5, sent to the
    ``imapclient.imaplib`` logger), and imaplib then formats the repr of every
    fetched message, and of each FETCH's whole answer, for log lines that are dropped
    unless that logger is at DEBUG: about a tenth of a backfill's time.
    """
    if logging.getLogger("imapclient.imaplib").isEnabledFor(logging.DEBUG):
        return
    imap = getattr(client, "_imap", None)  # imapclient's imaplib connection
    if imap is not None:
        imap.debug = 0


def _server_text(exc: BaseException) -> str:
    """The server's words from an imaplib error, without the ``b'...'`` of its bytes."""
    text = str(exc.args[0]) if exc.args else str(exc)
    if text[:2] in ("b'", 'b"') and text[-1:] == text[1]:
        text = text[2:-1]
    return text



class Connection:
    """One IMAP connection, logged in; the base every part of the mailbox stands on.

    ``client_factory`` builds the imapclient connection (``host`` and the keyword
    arguments ``port``, ``ssl``, ``ssl_context``, ``timeout``); tests may pass their own.
    """

    def __init__(self, settings: ImapSettings, client_factory: ClientFactory | None = None) -> None:
        self.settings = settings
        self._factory: ClientFactory = client_factory or IMAPClient
        self._client: IMAPClient | None = None
        self._selected: str | None = None
        self._permanent_flags: tuple[str, ...] | None = None
        self._capabilities: frozenset[str] = frozenset()
        self._tokens = TokenSource(settings.oauth) if settings.oauth is not None else None

    def __enter__(self) -> Self:
        self.connect()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def connect(self) -> None:
        """Open the connection and log in; LoginError for a refused password or token."""
        if self._client is not None:
            self.close()
        settings = self.settings
        where = f"{settings.host}:{settings.port}"
        with self._wrap(f"cannot connect to {where}"):
            client = self._open()
            refuses_plain = client.has_capability("LOGINDISABLED")
        if refuses_plain:
            self._quit(client)
            raise MailboxError(
                f"{where} accepts no password over an unencrypted connection; "
                "use TRIAGE_IMAP_SECURITY=starttls or tls"
            )
        try:
            self._login(client)
        except imap_errors.LoginError as exc:
            self._quit(client)
            reason = self._scrub(_server_text(exc))
            what = "OAuth2 token" if settings.auth == "oauth2" else "user name or password"
            raise LoginError(
                f"{settings.user}@{where}: the server refused the {what} ({reason})"
            ) from exc
        except (imaplib.IMAP4.error, OSError) as exc:
            self._discard(client)
            raise MailboxError(f"cannot log in to {where}: {self._scrub(str(exc))}") from exc
        except BaseException:
            self._discard(client)
            raise
        client.normalise_times = False  # keep INTERNALDATE's time zone
        _quiet_imaplib(client)
        self._client = client
        self._selected = None
        with self._wrap("cannot read the server's capabilities"):
            self._capabilities = frozenset(as_text(c).upper() for c in client.capabilities())
        log.info("connected to %s", settings.describe())

    def _login(self, client: IMAPClient) -> None:
        """LOGIN with the password, or an OAuth2 access token.

        A token the server refuses may have been revoked early or expired on a clock
        that differs from ours: one new token is tried before giving up.
        """
        if self._tokens is None:
            client.login(self.settings.user, self.settings.password)
            return
        bearer = _bearer_login(client)
        token = self._tokens.access_token()
        try:
            bearer(self.settings.user, token)
        except imap_errors.LoginError:
            log.info("the server refused the OAuth2 access token; getting a new one")
            self._tokens.invalidate(token)
            bearer(self.settings.user, self._tokens.access_token())

    def _open(self) -> IMAPClient:
        settings = self.settings
        timeout = SocketTimeout(connect=CONNECT_TIMEOUT, read=READ_TIMEOUT)
        implicit_tls = settings.security == "tls"
        context = self._ssl_context() if settings.security != "none" else None
        client = self._factory(
            settings.host,
            port=settings.port,
            ssl=implicit_tls,
            ssl_context=context if implicit_tls else None,
            timeout=timeout,
        )
        if settings.security == "starttls":
            try:
                client.starttls(context)
            except imap_errors.CapabilityError as exc:
                self._discard(client)
                raise MailboxError(
                    f"{settings.host}:{settings.port} does not offer STARTTLS; "
                    "use TRIAGE_IMAP_SECURITY=tls or none"
                ) from exc
            except BaseException:
                self._discard(client)
                raise
        return client

    def _ssl_context(self) -> ssl.SSLContext:
        try:
            context = ssl.create_default_context(cafile=self.settings.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise MailboxError(f"cannot read the CA file {self.settings.ca_file}: {exc}") from exc
        if not self.settings.verify_certificate:
            log.warning("TLS certificate verification is off for %s", self.settings.host)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def close(self) -> None:
        """Log out; a connection that is already dead is simply dropped."""
        client, self._client = self._client, None
        self._selected = None
        if client is not None:
            self._quit(client)

    def _quit(self, client: IMAPClient) -> None:
        try:
            client.logout()
        except (imaplib.IMAP4.error, OSError) as exc:
            log.debug("logout failed on a dead connection: %s", exc)
            self._discard(client)

    @staticmethod
    def _discard(client: IMAPClient) -> None:
        try:
            client.shutdown()
        except (imaplib.IMAP4.error, OSError) as exc:
            log.debug("closing the socket failed: %s", exc)

    def _scrub(self, text: str) -> str:
        secrets = [self.settings.password] if self.settings.password else []
        if self._tokens is not None:
            secrets += self._tokens.secrets()
        for secret in secrets:
            text = text.replace(secret, mask(secret))
        return text

    @contextlib.contextmanager
    def _wrap(self, what: str) -> Iterator[None]:
        """Turn library, socket and TLS errors into MailboxError; drop a dead connection."""
        try:
            yield
        except imaplib.IMAP4.abort as exc:
            self._lost()
            raise MailboxError(f"{what}: connection lost: {self._scrub(str(exc))}") from exc
        except imaplib.IMAP4.error as exc:
            raise MailboxError(f"{what}: {self._scrub(str(exc))}") from exc
        except ssl.SSLCertVerificationError as exc:
            raise MailboxError(
                f"{what}: the server's TLS certificate is not trusted ({exc.verify_message})"
            ) from exc
        except socket.gaierror as exc:
            raise MailboxError(f"{what}: unknown host ({exc.strerror})") from exc
        except TimeoutError as exc:
            hint = self._hint() if self._client is None else ""
            self._lost()
            raise MailboxError(f"{what}: the server did not answer in time{hint}") from exc
        except ssl.SSLError as exc:
            hint = self._hint() if self._client is None else ""
            self._lost()
            raise MailboxError(f"{what}: TLS failed ({exc.reason or exc}){hint}") from exc
        except OSError as exc:
            reason = exc.strerror or str(exc) or type(exc).__name__
            if self._client is not None:
                self._lost()
                reason = f"connection lost ({reason})"
            raise MailboxError(f"{what}: {reason}") from exc

    def _hint(self) -> str:
        """Why a connection may fail at the start: the security mode does not fit the port."""
        if self.settings.security == "tls":
            return " (if this port speaks plain text first, try TRIAGE_IMAP_SECURITY=starttls)"
        if self.settings.security == "none":
            return " (if this port speaks TLS, try TRIAGE_IMAP_SECURITY=tls)"
        return ""

    def _lost(self) -> None:
        client, self._client = self._client, None
        self._selected = None
        if client is not None:
            self._discard(client)

    def _live(self) -> IMAPClient:
        if self._client is None:
            raise MailboxError(f"not connected to {self.settings.host}:{self.settings.port}")
        return self._client

    def capabilities(self) -> frozenset[str]:
        self._live()
        return self._capabilities

    def _has(self, capability: str) -> bool:
        return capability.upper() in self._capabilities


def _bearer_login(client: IMAPClient) -> Callable[[str, str], Any]:
    """XOAUTH2 (what Microsoft and Google take), or the standard OAUTHBEARER (RFC 7628)
    when the server offers only that."""
    if client.has_capability("AUTH=OAUTHBEARER") and not client.has_capability("AUTH=XOAUTH2"):
        return client.oauthbearer_login
    return client.oauth2_login

