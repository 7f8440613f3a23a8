"""The seller's IMAP mailbox behind a small interface of our own.

The daemon speaks of folders and their roles, new UIDs, fetching, moving,
flagging and waiting for mail; this module turns that into IMAP through
imapclient, checks capabilities before the commands that need them (MOVE,
UIDPLUS, IDLE), and wraps every library, socket and TLS error into
:class:`MailboxError` (or :class:`LoginError`) with one clear line that never
contains the password.
"""

from __future__ import annotations

import argparse
import contextlib
import imaplib
import logging
import socket
import ssl
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from imapclient import IMAPClient, SocketTimeout
from imapclient import exceptions as imap_errors

from triage.errors import ConfigError, LoginError, MailboxError
from triage.oauth import TokenSource
from triage.settings import ImapSettings, from_env, mask

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 20.0
# Long enough for a slow server to answer a big FETCH, short enough that a dead
# peer is noticed; IDLE waits are timed separately and are not bound by it.
READ_TIMEOUT = 120.0
# How often a server without IDLE is asked for news.
POLL_SECONDS = 30.0
# Upper bound of message bytes asked for by one FETCH batch (imaplib holds about
# three times as much while it parses the answer).
MAX_BATCH_BYTES = 8 * 1024 * 1024

ROLES = ("inbox", "junk", "sent", "extra", "other")

# Names a junk or sent folder goes by when the server does not mark it with
# SPECIAL-USE; compared without case and without an "INBOX." / "INBOX/" prefix.
JUNK_NAMES = (
    "junk",
    "spam",
    "[gmail]/spam",
    "[google mail]/spam",
    "junk e-mail",
    "junk email",
    "junk mail",
    "bulk mail",
    "bulk",
    "spamverdacht",
    "courrier indésirable",
)
SENT_NAMES = (
    "sent",
    "sent items",
    "sent mail",
    "sent messages",
    "[gmail]/sent mail",
    "[google mail]/sent mail",
    "gesendet",
    "gesendete elemente",
    "envoyés",
)

NOT_JUNK = "$NotJunk"
JUNK = "$Junk"
DELETED = "\\Deleted"

ClientFactory = Callable[..., IMAPClient]


@dataclass(frozen=True)
class Folder:
    """A mailbox folder and the role triage gives it."""

    name: str
    role: str
    flags: tuple[str, ...] = ()


@dataclass(frozen=True)
class FolderStatus:
    uidvalidity: int
    uidnext: int
    messages: int


@dataclass(frozen=True)
class Fetched:
    """One fetched message: at most ``max_fetch_bytes`` of it, ``truncated`` if cut."""

    uid: int
    raw: bytes
    size: int
    flags: tuple[str, ...]
    internaldate: datetime | None
    truncated: bool


# -- folder roles ------------------------------------------------------------


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _server_text(exc: BaseException) -> str:
    """The server's words from an imaplib error, without the ``b'...'`` of its bytes."""
    text = str(exc.args[0]) if exc.args else str(exc)
    if text[:2] in ("b'", 'b"') and text[-1:] == text[1]:
        text = text[2:-1]
    return text


def _plain_name(name: str, delimiter: str) -> str:
    """``INBOX.Junk`` -> ``junk``: the name as a seller would say it."""
    lowered = name.lower()
    for prefix in ("inbox" + delimiter, "inbox.", "inbox/"):
        if delimiter and lowered.startswith(prefix):
            return lowered[len(prefix) :]
    return lowered


def _by_special_use(folders: Sequence[Folder], flag: str) -> str | None:
    wanted = flag.lower()
    for folder in folders:
        if wanted in (f.lower() for f in folder.flags):
            return folder.name
    return None


def _by_name(
    folders: Sequence[Folder], delimiters: dict[str, str], names: Sequence[str]
) -> str | None:
    plain = {
        folder.name: _plain_name(folder.name, delimiters.get(folder.name, "")) for folder in folders
    }
    for wanted in names:
        for folder in folders:
            if plain[folder.name] == wanted:
                return folder.name
    return None


def _require_present(names: Iterable[str], present: set[str], variable: str) -> None:
    missing = [name for name in names if name not in present]
    if missing:
        raise ConfigError(
            f"{variable}: the server has no folder named {', '.join(map(repr, missing))}"
        )


def assign_roles(
    listing: Iterable[tuple[Sequence[bytes | str], bytes | str | None, str]],
    settings: ImapSettings,
) -> list[Folder]:
    """Folders from a LIST response (``(flags, delimiter, name)``), each with its role.

    INBOX is ``inbox``. Junk is the configured ``junk_folder``, else the folder
    marked ``\\Junk`` (SPECIAL-USE), else the first folder with a usual junk name;
    sent likewise with ``\\Sent``. Configured ``folders`` are ``extra``; the rest
    ``other``. A configured folder the server does not have is a ConfigError.
    """
    folders: list[Folder] = []
    delimiters: dict[str, str] = {}
    for flags, delimiter, name in listing:
        folders.append(Folder(name=name, role="other", flags=tuple(_text(f) for f in flags)))
        delimiters[name] = _text(delimiter) if delimiter else ""
    selectable = [f for f in folders if "\\noselect" not in (x.lower() for x in f.flags)]
    names = {f.name for f in selectable}
    if settings.junk_folder:
        _require_present([settings.junk_folder], names, "TRIAGE_IMAP_JUNK_FOLDER")
    _require_present(settings.folders, names, "TRIAGE_IMAP_FOLDERS")

    roles: dict[str, str] = {}
    for folder in selectable:
        if folder.name.upper() == "INBOX":
            roles[folder.name] = "inbox"
    candidates = [f for f in selectable if f.name not in roles]
    junk = settings.junk_folder or _by_special_use(candidates, "\\Junk")
    junk = junk or _by_name(candidates, delimiters, JUNK_NAMES)
    if junk:
        roles[junk] = "junk"
    candidates = [f for f in candidates if f.name not in roles]
    sent = _by_special_use(candidates, "\\Sent") or _by_name(candidates, delimiters, SENT_NAMES)
    if sent:
        roles[sent] = "sent"
    for name in settings.folders:
        roles.setdefault(name, "extra")
    return [Folder(f.name, roles.get(f.name, "other"), f.flags) for f in folders]


def _uid_set(uids: Iterable[int]) -> list[int]:
    return sorted({int(uid) for uid in uids})


def _seq(uids: Iterable[int]) -> str:
    """An IMAP sequence set: ``[1, 2, 3, 7]`` -> ``"1:3,7"``."""
    ranges: list[list[int]] = []
    for uid in _uid_set(uids):
        if ranges and uid == ranges[-1][1] + 1:
            ranges[-1][1] = uid
        else:
            ranges.append([uid, uid])
    return ",".join(f"{a}:{b}" if a != b else str(a) for a, b in ranges)


def _batches(items: Sequence[int], size: int) -> Iterator[Sequence[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# -- the mailbox -----------------------------------------------------------------


class Mailbox:
    """One IMAP connection to the seller's mailbox.

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

    def __enter__(self) -> Mailbox:
        self.connect()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- connection ---------------------------------------------------------

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
        self._client = client
        self._selected = None
        with self._wrap("cannot read the server's capabilities"):
            self._capabilities = frozenset(_text(c).upper() for c in client.capabilities())
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

    # -- folders ------------------------------------------------------------

    def folders(self) -> list[Folder]:
        """Every folder with its role (see :func:`assign_roles`)."""
        client = self._live()
        with self._wrap("cannot list folders"):
            listing = client.list_folders()
        return assign_roles(listing, self.settings)

    def watched(self) -> list[Folder]:
        """The folders triage reads: inbox, junk, sent, then the configured extras."""
        folders = self.folders()
        order = {role: rank for rank, role in enumerate(ROLES)}
        chosen = [f for f in folders if f.role in ("inbox", "junk", "sent", "extra")]
        return sorted(chosen, key=lambda f: order[f.role])

    def delimiter(self) -> str:
        """The server's hierarchy delimiter (``/`` for a server without hierarchy)."""
        client = self._live()
        with self._wrap("cannot list folders"):
            listing = client.list_folders("", "INBOX")
        for _, delimiter, _ in listing:
            if delimiter:
                return _text(delimiter)
        return "/"

    def ensure_folders(self, names: Sequence[str]) -> list[str]:
        """Create and subscribe the folders the server lacks (parents first); the created."""
        client = self._live()
        created = []
        with self._wrap("cannot create folders"):
            present = {_text(name) for _, _, name in client.list_folders()}
            for name in names:
                if name not in present:
                    client.create_folder(name)
                    client.subscribe_folder(name)  # mail clients show subscribed folders
                    created.append(name)
        return created

    def status(self, folder: str) -> FolderStatus:
        """UIDVALIDITY, UIDNEXT and count without selecting the folder."""
        client = self._live()
        with self._wrap(f"cannot read the status of {folder!r}"):
            found = client.folder_status(folder, ["UIDVALIDITY", "UIDNEXT", "MESSAGES"])
        return FolderStatus(
            uidvalidity=int(found[b"UIDVALIDITY"]),
            uidnext=int(found[b"UIDNEXT"]),
            messages=int(found[b"MESSAGES"]),
        )

    def select(self, folder: str) -> FolderStatus:
        client = self._live()
        with self._wrap(f"cannot open {folder!r}"):
            response = client.select_folder(folder)
        self._selected = folder
        permanent = response.get(b"PERMANENTFLAGS")
        # Without PERMANENTFLAGS every flag is kept (RFC 3501, 7.1).
        self._permanent_flags = None if permanent is None else tuple(_text(f) for f in permanent)
        uidnext = response.get(b"UIDNEXT")
        if uidnext is None:  # optional before IMAP4rev2; STATUS always has it
            uidnext = self.status(folder).uidnext
        return FolderStatus(
            uidvalidity=int(response[b"UIDVALIDITY"]),
            uidnext=int(uidnext),
            messages=int(response[b"EXISTS"]),
        )

    def _open_folder(self, folder: str) -> IMAPClient:
        if self._selected != folder:
            self.select(folder)
        return self._live()

    # -- reading ---------------------------------------------------------------

    def uids_after(self, folder: str, last_uid: int, since: date | None = None) -> list[int]:
        """UIDs above ``last_uid`` (received on or after ``since``, if given), ascending."""
        client = self._open_folder(folder)
        criteria: list[Any] = ["UID", f"{last_uid + 1}:*"]
        if since is not None:
            criteria += ["SINCE", since]
        with self._wrap(f"cannot search {folder!r}"):
            found = client.search(criteria)
        # "N:*" always matches the highest UID, even one at or below N.
        return sorted(uid for uid in found if uid > last_uid)

    def fetch(self, folder: str, uids: Sequence[int]) -> Iterator[Fetched]:
        """The messages, in UID order, without marking them read; UIDs gone are skipped.

        Only the first ``max_fetch_bytes`` of each are downloaded, and batches are
        sized so one holds at most ``MAX_BATCH_BYTES``.
        """
        cap = self.settings.max_fetch_bytes
        size = max(1, min(self.settings.fetch_batch, MAX_BATCH_BYTES // max(cap, 1)))
        items = [f"BODY.PEEK[]<0.{cap}>", "RFC822.SIZE", "FLAGS", "INTERNALDATE"]
        for batch in _batches(_uid_set(uids), size):
            client = self._open_folder(folder)
            with self._wrap(f"cannot fetch from {folder!r}"):
                response = client.fetch(batch, items)
            for uid in batch:
                if uid in response:
                    yield _fetched(uid, response[uid], cap)

    def flags(self, folder: str, uids: Iterable[int]) -> dict[int, tuple[str, ...]]:
        client = self._open_folder(folder)
        wanted = _uid_set(uids)
        if not wanted:
            return {}
        with self._wrap(f"cannot read flags in {folder!r}"):
            found = client.get_flags(wanted)
        return {uid: tuple(_text(f) for f in flags) for uid, flags in found.items()}

    # -- changing ----------------------------------------------------------------

    def add_flags(self, folder: str, uids: Iterable[int], flags: Iterable[str]) -> None:
        self._store(folder, uids, flags, add=True)

    def remove_flags(self, folder: str, uids: Iterable[int], flags: Iterable[str]) -> None:
        self._store(folder, uids, flags, add=False)

    def _store(self, folder: str, uids: Iterable[int], flags: Iterable[str], add: bool) -> None:
        client = self._open_folder(folder)
        wanted = _uid_set(uids)
        allowed = [f for f in flags if self._may_store(f)]
        if not wanted or not allowed:
            return
        with self._wrap(f"cannot change flags in {folder!r}"):
            if add:
                client.add_flags(wanted, allowed, silent=True)
            else:
                client.remove_flags(wanted, allowed, silent=True)

    def _may_store(self, flag: str) -> bool:
        """Whether the selected folder keeps ``flag`` (its PERMANENTFLAGS)."""
        if self._permanent_flags is None:
            return True
        permanent = {f.lower() for f in self._permanent_flags}
        if flag.lower() in permanent or (not flag.startswith("\\") and "\\*" in permanent):
            return True
        log.debug("%s does not keep the flag %s; not setting it", self._selected, flag)
        return False

    def move(self, folder: str, uids: Iterable[int], dest: str) -> None:
        """Move messages; UIDs already gone are skipped, so a retry is harmless.

        MOVE when the server has it; else COPY, flag ``\\Deleted`` and expunge just
        those UIDs (UIDPLUS); else a plain EXPUNGE, but only when no other message
        in the folder is flagged ``\\Deleted`` (it would be erased with ours).
        """
        wanted = _uid_set(uids)
        # Moving within a folder would give the messages new UIDs: never idempotent.
        if not wanted or dest == folder:
            return
        client = self._open_folder(folder)
        with self._wrap(f"cannot move messages from {folder!r} to {dest!r}"):
            present = _uid_set(client.search(["UID", _seq(wanted)]))
            if not present:
                log.debug("nothing left to move from %s: %s", folder, wanted)
                return
            if self._has("MOVE"):
                client.move(present, dest)
            else:
                self._copy_and_expunge(client, folder, present, dest)
        log.info("moved %d message(s) from %s to %s", len(present), folder, dest)

    def _copy_and_expunge(
        self, client: IMAPClient, folder: str, present: list[int], dest: str
    ) -> None:
        # Messages already flagged \Deleted were copied by an interrupted earlier
        # attempt (or deleted by the seller): copying them again would duplicate them.
        to_copy = _uid_set(client.search(["UID", _seq(present), "NOT", "DELETED"]))
        if to_copy:
            client.copy(to_copy, dest)
            client.add_flags(to_copy, [DELETED], silent=True)
        if self._has("UIDPLUS"):
            client.uid_expunge(present)
            return
        others = set(client.search(["DELETED"])) - set(present)
        if others:
            log.warning(
                "%s: left %d moved message(s) flagged \\Deleted; expunging would also erase "
                "%d other deleted message(s) and the server lacks UIDPLUS",
                folder,
                len(present),
                len(others),
            )
            return
        client.expunge()

    def rescue(self, folder: str, uids: Iterable[int], dest: str) -> None:
        """Mark messages as not junk and move them (to the inbox, usually)."""
        wanted = _uid_set(uids)
        self.add_flags(folder, wanted, [NOT_JUNK])
        self.remove_flags(folder, wanted, [JUNK])
        self.move(folder, wanted, dest)

    # -- waiting ---------------------------------------------------------------------

    def idle(self, folder: str, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the folder to change.

        True when the server announced new or expunged mail. Without IDLE the
        folder is polled every ``POLL_SECONDS``. MailboxError when the server says BYE or
        the connection dies.
        """
        client = self._open_folder(folder)
        if not self._has("IDLE"):
            return self._poll(client, folder, timeout)
        deadline = time.monotonic() + timeout
        with self._wrap(f"lost the connection while waiting on {folder!r}"):
            # Mail that came since the last command is not announced when IDLE
            # starts (Dovecot tells only at its next check, up to 30 s later).
            _, responses = client.noop()
            if _announces_mail(responses):
                return True
            while True:
                client.idle()
                try:
                    seen = _idle_until(client, deadline)
                except BaseException:
                    # Cut short (a signal): the session is still in IDLE and would not
                    # answer a LOGOUT, so close() must not wait for one.
                    self._lost()
                    raise
                if any(_says_bye(r) for r in seen):
                    self._lost()
                    raise MailboxError(f"{self.settings.host} closed the connection")
                # DONE also tells a quiet timeout from a peer that hung up (it raises).
                _, more = client.idle_done()
                if _announces_mail([*seen, *more]):
                    return True
                if time.monotonic() >= deadline:
                    return False

    def _poll(self, client: IMAPClient, folder: str, timeout: float) -> bool:
        """The IDLE stand-in: a NOOP every ``POLL_SECONDS`` until mail shows or time is up."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, POLL_SECONDS))
            with self._wrap(f"cannot poll {folder!r}"):
                _, responses = client.noop()
            if _announces_mail(responses):
                return True
        return False


def _bearer_login(client: IMAPClient) -> Callable[[str, str], Any]:
    """XOAUTH2 (what Microsoft and Google take), or the standard OAUTHBEARER (RFC 7628)
    when the server offers only that."""
    if client.has_capability("AUTH=OAUTHBEARER") and not client.has_capability("AUTH=XOAUTH2"):
        return client.oauthbearer_login
    return client.oauth2_login


def _idle_until(client: IMAPClient, deadline: float) -> list[Any]:
    """IDLE responses until mail is announced, the deadline, or an empty wake-up."""
    seen: list[Any] = []
    while (left := deadline - time.monotonic()) > 0:
        responses = client.idle_check(timeout=left)
        if not responses:
            break  # the timeout, or end of stream: idle_done() tells which
        seen += responses
        if _announces_mail(responses) or any(_says_bye(r) for r in responses):
            break
    return seen


def _fetched(uid: int, data: dict[bytes, Any], cap: int) -> Fetched:
    raw = b""
    for key, value in data.items():
        if key.startswith(b"BODY[") and value is not None:
            raw = bytes(value)
    size = int(data.get(b"RFC822.SIZE", len(raw)))
    internaldate = data.get(b"INTERNALDATE")
    return Fetched(
        uid=uid,
        raw=raw,
        size=size,
        flags=tuple(_text(f) for f in data.get(b"FLAGS", ())),
        internaldate=internaldate if isinstance(internaldate, datetime) else None,
        truncated=size > cap,
    )


def _announces_mail(responses: Iterable[Any]) -> bool:
    for response in responses:
        if (
            isinstance(response, tuple)
            and len(response) >= 2
            and response[1] in (b"EXISTS", b"EXPUNGE")
        ):
            return True
    return False


def _says_bye(response: Any) -> bool:
    return isinstance(response, tuple) and bool(response) and response[0] == b"BYE"


# -- triage folders -----------------------------------------------------------------


def folders_command(args: argparse.Namespace) -> int:
    """``triage folders``: each folder of the configured mailbox and its role."""
    settings = from_env().imap
    if settings is None:
        raise ConfigError("TRIAGE_IMAP_HOST is not set: there is no mailbox to list")
    with Mailbox(settings) as mailbox:
        folders = mailbox.folders()
    order = {role: rank for rank, role in enumerate(ROLES)}
    rows = sorted(folders, key=lambda f: (order[f.role], f.name.lower()))
    width = max([len("FOLDER"), *(len(f.name) for f in rows)])
    print(f"{'ROLE':<6}  {'FOLDER':<{width}}  FLAGS")
    for folder in rows:
        print(f"{folder.role:<6}  {folder.name:<{width}}  {' '.join(folder.flags)}")
    return 0
