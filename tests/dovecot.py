"""A real Dovecot IMAP server on a loopback port, for the integration tests.

Each :class:`DovecotServer` owns a throwaway directory holding its configuration,
its Maildir storage, its runtime sockets and its log. Users live in a passwd-file
written before start, so one server can hand every test a fresh, empty account
(:meth:`DovecotServer.new_user`) without restarting.

Dovecot 2.3 is assumed (Debian bookworm's ``dovecot-imapd``); it must run as root
because the mail processes switch to the unprivileged ``nobody`` user.
"""

from __future__ import annotations

import contextlib
import grp
import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from imapclient import IMAPClient

from triage.settings import ImapSettings

PASSWORD = "correct horse battery staple"
START_TIMEOUT = 20.0
USERS = 1000

CONFIG = """\
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
{ssl}
disable_plaintext_auth = no
auth_mechanisms = {auth_mechanisms}
default_login_user = dovenull
default_internal_user = dovecot
first_valid_uid = 1
mail_location = maildir:~/Maildir
mail_fsync = never
auth_failure_delay = 0
{capability}

{oauth2_passdb}passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/home/%u
}}

namespace inbox {{
  inbox = yes
{mailboxes}
}}

service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
  }}
}}
service anvil {{
  chroot =
  # No auth penalty: wrong-password tests must not slow down the tests after them.
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
"""


# The special folders every new account gets: (name, SPECIAL-USE flag or "").
SPECIAL_USE_FOLDERS = (("Junk", "\\Junk"), ("Sent", "\\Sent"))
# As on servers that do not mark them, where only the name tells (Yahoo, Exchange...).
NAMED_FOLDERS = (("Bulk Mail", ""), ("Sent Items", ""))


# Dovecot 2.3's oauth2 passdb asking the test OAuth2 server whether a token is live
# (RFC 7662 introspection, the token POSTed as a form).
OAUTH2_PASSDB = """\
passdb {{
  driver = oauth2
  mechanisms = {mechanisms}
  args = {root}/dovecot-oauth2.conf.ext
}}
"""
OAUTH2_CONFIG = """\
introspection_mode = post
introspection_url = {url}
force_introspection = yes
username_attribute = username
active_attribute = active
active_value = true
"""


def _mailbox_block(name: str, special_use: str) -> str:
    flag = f"    special_use = {special_use}\n" if special_use else ""
    return f'  mailbox "{name}" {{\n{flag}    auto = create\n  }}'


def available() -> bool:
    """Whether the ``dovecot`` binary is installed on this machine."""
    return shutil.which("dovecot") is not None


def version() -> tuple[int, int]:
    """Dovecot's major and minor version, e.g. ``(2, 3)``."""
    out = subprocess.run(["dovecot", "--version"], capture_output=True, text=True, check=True)
    major, minor = out.stdout.split()[0].split(".")[:2]
    return int(major), int(minor)


def tls_available() -> bool:
    """Whether a certificate can be made for a TLS server (``openssl``, a dovecot dependency)."""
    return shutil.which("openssl") is not None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _mail_owner() -> tuple[int, int]:
    """The unprivileged uid/gid the mail processes run as."""
    uid = pwd.getpwnam("nobody").pw_uid
    for group in ("nogroup", "nobody"):
        with contextlib.suppress(KeyError):
            return uid, grp.getgrnam(group).gr_gid
    return uid, pwd.getpwnam("nobody").pw_gid


@dataclass(frozen=True)
class Account:
    """One IMAP account on a test server, with helpers to put mail into it.

    The server's life cycle is reachable from here too (:meth:`restart`,
    :meth:`stop`, :meth:`start`, :meth:`reset_uidvalidity`), so a test needs one
    object only.
    """

    server: DovecotServer = field(repr=False)
    user: str
    password: str

    @property
    def host(self) -> str:
        return self.server.host

    @property
    def port(self) -> int:
        return self.server.port

    def start(self) -> None:
        self.server.start()

    def stop(self) -> None:
        self.server.stop()

    def restart(self) -> None:
        self.server.restart()

    def reset_uidvalidity(self, folder: str) -> None:
        self.server.reset_uidvalidity(self, folder)

    def maildir(self, folder: str) -> Path:
        return self.server.maildir(self, folder)

    def imap_settings(self, **overrides: object) -> ImapSettings:
        values: dict[str, object] = {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password,
            "security": "none",
        }
        values.update(overrides)
        return ImapSettings(**values)  # type: ignore[arg-type]

    def tls_settings(self, security: str, **overrides: object) -> ImapSettings:
        """Settings for a ``tls`` server: implicit TLS or STARTTLS, trusting its certificate."""
        port = self.server.tls_port if security == "tls" else self.server.port
        values: dict[str, object] = {"ca_file": str(self.server.certificate), "port": port}
        values.update(overrides)
        return self.imap_settings(security=security, **values)

    def env(self) -> dict[str, str]:
        """The ``TRIAGE_IMAP_*`` variables that point ``triage`` at this account."""
        return {
            "TRIAGE_IMAP_HOST": self.host,
            "TRIAGE_IMAP_PORT": str(self.port),
            "TRIAGE_IMAP_USER": self.user,
            "TRIAGE_IMAP_PASSWORD": self.password,
            "TRIAGE_IMAP_SECURITY": "none",
        }

    @contextlib.contextmanager
    def client(self) -> Iterator[IMAPClient]:
        """A logged-in imapclient connection, independent of the code under test."""
        client = IMAPClient(self.host, port=self.port, ssl=False, timeout=10)
        try:
            client.login(self.user, self.password)
            yield client
        finally:
            with contextlib.suppress(Exception):
                client.logout()

    def append(
        self,
        folder: str,
        raw: bytes,
        flags: Sequence[str] = (),
        date: datetime | None = None,
    ) -> int:
        """Store one message in ``folder``; returns its UID."""
        with self.client() as client:
            response = client.append(folder, raw, flags=flags, msg_time=date)
        return _appended_uid(response)

    def create_folder(self, name: str) -> None:
        with self.client() as client:
            client.create_folder(name)

    def uids(self, folder: str) -> list[int]:
        with self.client() as client:
            client.select_folder(folder, readonly=True)
            return sorted(client.search("ALL"))

    def flags(self, folder: str, uid: int) -> tuple[str, ...]:
        with self.client() as client:
            client.select_folder(folder, readonly=True)
            found = client.get_flags([uid]).get(uid, ())
        return tuple(flag.decode() if isinstance(flag, bytes) else flag for flag in found)


def _appended_uid(response: bytes | str) -> int:
    """The UID from an ``[APPENDUID validity uid]`` response code."""
    text = response.decode() if isinstance(response, bytes) else response
    if "APPENDUID" not in text:
        raise AssertionError(f"server gave no APPENDUID: {text!r}")
    return int(text.split("APPENDUID", 1)[1].split("]", 1)[0].split()[1])


class DovecotServer:
    """A Dovecot instance in the foreground, in its own temporary directory.

    Every account has INBOX, Junk (SPECIAL-USE ``\\Junk``) and Sent (``\\Sent``);
    with ``special_use=False`` it has "Bulk Mail" and "Sent Items" instead, unmarked.

    ``without_capabilities`` names capabilities the server must not announce
    (``("MOVE",)`` for the copy-and-expunge fallback); Dovecot still executes
    those commands, but a client that checks capabilities will not use them.
    """

    def __init__(
        self,
        without_capabilities: Iterable[str] = (),
        tls: bool = False,
        special_use: bool = True,
        introspection_url: str = "",
        oauth_mechanisms: str = "xoauth2 oauthbearer",
    ) -> None:
        if version() >= (2, 4):
            # 2.4 renamed most settings; this configuration is written for 2.3.
            raise RuntimeError(f"the Dovecot test server speaks 2.3 settings, found {version()}")
        if os.geteuid() != 0:
            raise RuntimeError("the Dovecot test server must run as root (it switches users)")
        self.host = "127.0.0.1"
        self.folders = SPECIAL_USE_FOLDERS if special_use else NAMED_FOLDERS
        self.port = free_port()
        self.tls = tls
        self.tls_port = free_port() if tls else 0
        self.without_capabilities = tuple(cap.upper() for cap in without_capabilities)
        # Set: accounts may log in with XOAUTH2/OAUTHBEARER tokens this URL vouches for.
        self.introspection_url = introspection_url
        self.oauth_mechanisms = oauth_mechanisms
        self.root = Path(tempfile.mkdtemp(prefix="triage-dovecot-"))
        self._process: subprocess.Popen[bytes] | None = None
        self._users = itertools.count(1)
        self._capability_line = ""
        self._prepare()

    # -- life cycle -------------------------------------------------------

    def start(self) -> None:
        if self._process is not None:
            return
        if self.without_capabilities and not self._capability_line:
            self._capability_line = self._reduced_capabilities()
            self._write_config()
        self._spawn()

    def stop(self) -> None:
        """Stop the server and drop every connection, as a restart or crash would.

        The master alone would leave running client sessions alive, serving on.
        """
        process, self._process = self._process, None
        if process is None:
            return
        self._kill_group(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        self._kill_group(process.pid, signal.SIGKILL)

    @staticmethod
    def _kill_group(pgid: int, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)

    def restart(self) -> None:
        """Stop and start again on the same port and storage (a reconnect test)."""
        self.stop()
        self.start()

    def destroy(self) -> None:
        """Kill the server outright (a graceful stop costs a second) and delete its files."""
        process, self._process = self._process, None
        if process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        shutil.rmtree(self.root, ignore_errors=True)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    # -- accounts and storage ---------------------------------------------

    def new_user(self) -> Account:
        """A fresh, empty account (its folders appear at first login)."""
        number = next(self._users)
        if number > USERS:
            raise RuntimeError(f"all {USERS} test accounts of this server are used")
        return Account(self, f"seller{number}", PASSWORD)

    def maildir(self, account: Account, folder: str) -> Path:
        """The Maildir++ directory that stores ``folder`` of ``account``."""
        base = self.root / "home" / account.user / "Maildir"
        return base if folder.upper() == "INBOX" else base / f".{folder}"

    def reset_uidvalidity(self, account: Account, folder: str) -> None:
        """Make the server give ``folder`` a new UIDVALIDITY, keeping its messages.

        Dovecot keeps UIDVALIDITY in the folder's uidlist and index files; without
        them it rebuilds the folder from the Maildir files and numbers them afresh,
        as a server does after a restore from backup.
        """
        self.stop()
        # UIDVALIDITY is a timestamp: wait so the new one cannot equal the old one.
        time.sleep(1.1)
        directory = self.maildir(account, folder)
        for path in directory.glob("dovecot*"):
            if path.is_file() and (path.name == "dovecot-uidlist" or "index" in path.name):
                path.unlink()
        self.start()

    def log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""

    # -- internals ---------------------------------------------------------

    def _prepare(self) -> None:
        uid, gid = _mail_owner()
        # The mail processes run as nobody and must reach their home below root.
        self.root.chmod(0o755)
        for name in ("run", "state"):
            (self.root / name).mkdir()
        home = self.root / "home"
        home.mkdir()
        os.chown(home, uid, gid)
        # Every account is written before start: Dovecot notices a changed
        # passwd-file only now and then, so accounts added later may be refused.
        lines = (f"seller{n}:{{PLAIN}}{PASSWORD}::::::\n" for n in range(1, USERS + 1))
        (self.root / "passwd").write_text("".join(lines), encoding="utf-8")
        (self.root / "passwd").chmod(0o644)
        if self.tls:
            self._make_certificate()
        if self.introspection_url:
            conf = self.root / "dovecot-oauth2.conf.ext"
            conf.write_text(OAUTH2_CONFIG.format(url=self.introspection_url), encoding="utf-8")
        self._write_config()

    @property
    def certificate(self) -> Path:
        """The self-signed certificate of a ``tls`` server (its own CA file)."""
        return self.root / "cert.pem"

    def _make_certificate(self) -> None:
        subprocess.run(
            [
                "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                "-keyout", str(self.root / "key.pem"), "-out", str(self.certificate),
            ],
            check=True,
            capture_output=True,
        )  # fmt: skip

    def _ssl_lines(self) -> str:
        if not self.tls:
            return "ssl = no"
        return f"ssl = yes\nssl_cert = <{self.certificate}\nssl_key = <{self.root / 'key.pem'}"

    def _write_config(self) -> None:
        uid, gid = _mail_owner()
        text = CONFIG.format(
            root=self.root,
            port=self.port,
            tls_port=self.tls_port,
            uid=uid,
            gid=gid,
            capability=self._capability_line,
            ssl=self._ssl_lines(),
            auth_mechanisms=f"{self.oauth_mechanisms} plain login" if self.introspection_url
            else "plain login",
            oauth2_passdb=OAUTH2_PASSDB.format(root=self.root, mechanisms=self.oauth_mechanisms)
            if self.introspection_url else "",
            mailboxes="\n".join(_mailbox_block(name, flag) for name, flag in self.folders),
        )
        (self.root / "dovecot.conf").write_text(text, encoding="utf-8")

    def _spawn(self) -> None:
        with (self.root / "stderr.log").open("ab") as stderr:
            self._popen(stderr)
        self._wait_until_ready()

    def _popen(self, stderr: BinaryIO) -> None:
        self._process = subprocess.Popen(
            ["dovecot", "-F", "-c", str(self.root / "dovecot.conf")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            # Its own process group, so destroy() can take the children down with it.
            start_new_session=True,
        )

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeError(f"dovecot exited at start-up:\n{self._diagnostics()}")
            if self._greets():
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"dovecot did not answer on port {self.port}:\n{self._diagnostics()}")

    def _greets(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=1) as sock:
                return sock.recv(64).startswith(b"* OK")
        except OSError:
            return False

    def _diagnostics(self) -> str:
        stderr = self.root / "stderr.log"
        text = stderr.read_text(errors="replace") if stderr.exists() else ""
        return text + self.log()

    def _reduced_capabilities(self) -> str:
        """An ``imap_capability`` line: what this Dovecot announces, minus the removed ones."""
        self._spawn()
        try:
            account = self.new_user()
            with account.client() as client:
                announced = [cap.decode() for cap in client.capabilities()]
        finally:
            self.stop()
        kept = [cap for cap in announced if cap.upper() not in self.without_capabilities]
        return "imap_capability = " + " ".join(kept)
