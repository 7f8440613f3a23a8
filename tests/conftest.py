"""Shared fixtures.

IMAP (see ``tests/dovecot.py``): Dovecot servers start once per test session and
every test gets a fresh, empty account on one of them.

- ``dovecot``: an account on a server with every capability (SPECIAL-USE Junk/Sent).
- ``dovecot_without_move``: the same on a server that does not announce MOVE.
- ``dovecot_servers.account(without=(...), tls=..., special_use=...)``: other
  variants: fewer capabilities; TLS (STARTTLS on ``port``, IMAPS on ``tls_port``,
  a self-signed certificate); special folders known only by their names.

Tests that use them are marked ``imap`` automatically.

Also ``db`` (a fresh state database) and ``http`` (a receiver of Apprise ``json://``
posts, see ``tests/receivers.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import dovecot as dovecot_lib
import pytest
from oauth_server import OAuthServer
from receivers import HttpReceiver

from triage.state import Database

IMAP_FIXTURES = {"dovecot", "dovecot_without_move", "dovecot_servers", "oauth_dovecot"}


class DovecotServers:
    """Dovecot servers of this session, one per variant (see ``DovecotServer``)."""

    def __init__(self) -> None:
        self._servers: dict[tuple[object, ...], dovecot_lib.DovecotServer] = {}

    def account(
        self, without: Iterable[str] = (), tls: bool = False, special_use: bool = True,
        introspection_url: str = "", oauth_mechanisms: str = "xoauth2 oauthbearer",
    ) -> dovecot_lib.Account:
        """A fresh account on a server lacking ``without``; ``tls`` adds STARTTLS and IMAPS;
        ``special_use=False`` names the special folders without marking them;
        ``introspection_url`` lets it log in with OAuth2 tokens that URL vouches for
        (through ``oauth_mechanisms``)."""
        if tls and not dovecot_lib.tls_available():
            pytest.skip("openssl is not installed: no certificate for a TLS server")
        caps = tuple(sorted(cap.upper() for cap in without))
        key = (caps, tls, special_use, introspection_url, oauth_mechanisms)
        if key not in self._servers:
            self._servers[key] = dovecot_lib.DovecotServer(
                caps, tls=tls, special_use=special_use, introspection_url=introspection_url,
                oauth_mechanisms=oauth_mechanisms,
            )
        server = self._servers[key]
        # A previous test may have stopped it (a reconnect test that failed midway).
        server.start()
        return server.new_user()

    def close(self) -> None:
        for server in self._servers.values():
            server.destroy()


@pytest.fixture(scope="session")
def dovecot_servers() -> Iterator[DovecotServers]:
    if not dovecot_lib.available():
        pytest.skip("the dovecot binary is not installed (apt-get install dovecot-imapd)")
    servers = DovecotServers()
    try:
        yield servers
    finally:
        servers.close()


@pytest.fixture
def dovecot(dovecot_servers: DovecotServers) -> Iterator[dovecot_lib.Account]:
    account = dovecot_servers.account()
    yield account
    account.start()


@pytest.fixture
def dovecot_without_move(dovecot_servers: DovecotServers) -> Iterator[dovecot_lib.Account]:
    account = dovecot_servers.account(without=("MOVE",))
    yield account
    account.start()


@pytest.fixture(scope="session")
def oauth_server() -> Iterator[OAuthServer]:
    """The test OAuth2 authorisation server (token, device and introspection endpoints)."""
    server = OAuthServer(lifetime=3600)
    yield server
    server.stop()


@pytest.fixture
def oauth_dovecot(
    dovecot_servers: DovecotServers, oauth_server: OAuthServer
) -> Iterator[dovecot_lib.Account]:
    """An account on a server whose ``oauth2`` passdb asks ``oauth_server`` about tokens."""
    account = dovecot_servers.account(introspection_url=f"{oauth_server.url}/introspect")
    yield account
    account.start()


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    """A fresh state database in the test's own folder."""
    database = Database(tmp_path / "triage.db")
    yield database
    database.close()


@pytest.fixture
def http() -> Iterator[HttpReceiver]:
    """A local HTTP server receiving Apprise ``json://`` posts."""
    receiver = HttpReceiver()
    yield receiver
    receiver.stop()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if IMAP_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.imap)
