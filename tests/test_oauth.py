"""OAuth2 logins against a real Dovecot whose ``oauth2`` passdb asks a local OAuth2 server.

``triage run --once`` with ``TRIAGE_IMAP_AUTH=oauth2`` and only the generic
``TRIAGE_OAUTH_*`` settings logs in with XOAUTH2, rescues genuine Amazon mail from junk
and alerts the seller; after the access token expired the next run refreshes it; a
rotated refresh token is kept; a revoked one is reported to the seller once; and no
token shows in any output, log or state table.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
from email.message import EmailMessage
from pathlib import Path

import pytest
from oauth_server import CLIENT_ID, OAuthServer
from receivers import HttpReceiver

from triage.settings import default_model_dir

pytestmark = pytest.mark.skipif(
    not (default_model_dir() / "triage-model.json").exists(), reason="no trained model"
)


def mail(sender: str, subject: str, body: str, auth_domain: str) -> bytes:
    msg = EmailMessage()
    msg["Authentication-Results"] = (
        f"mx.example.net; dkim=pass header.d={auth_domain}; spf=pass "
        f"smtp.mailfrom={auth_domain}; dmarc=pass header.from={auth_domain}")
    msg["From"] = sender
    msg["To"] = "seller@example.com"
    msg["Subject"] = subject
    msg.set_content(body)
    return bytes(msg)


CLAIM = mail(
    '"Amazon Seller Central" <atoz-guarantee-no-reply@amazon.com>',
    "A-to-z Guarantee claim filed: Order 113-7781204-5530618",
    "A buyer has filed an A-to-z Guarantee claim on order 113-7781204-5530618 (item not "
    "received). Please respond within 3 calendar days.\n"
    "https://sellercentral.amazon.com/gp/guarantee-claims/home.html",
    "amazon.com",
)
PHISH = mail(
    '"Amazon Seller Central" <no-reply@amazon-sellercentral-verify.com>',
    "URGENT: Your Amazon seller account has been suspended",
    "Verify your identity within 24 hours to reactivate your account: "
    "http://amazon-sellercentral-verify.com/reactivate",
    "amazon-sellercentral-verify.com",
)


def oauth_env(account, server: OAuthServer, refresh_token: str, tmp_path: Path,  # type: ignore[no-untyped-def]
              phone: HttpReceiver) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIAGE_")}
    env.update({
        "TRIAGE_IMAP_HOST": account.host,
        "TRIAGE_IMAP_PORT": str(account.port),
        "TRIAGE_IMAP_USER": account.user,
        "TRIAGE_IMAP_SECURITY": "none",
        "TRIAGE_IMAP_AUTH": "oauth2",
        "TRIAGE_OAUTH_TOKEN_URL": f"{server.url}/token",
        "TRIAGE_OAUTH_CLIENT_ID": CLIENT_ID,
        "TRIAGE_OAUTH_SCOPE": "https://outlook.office.com/IMAP.AccessAsUser.All offline_access",
        "TRIAGE_OAUTH_REFRESH_TOKEN": refresh_token,
        "TRIAGE_STATE_DIR": str(tmp_path / "state"),
        "TRIAGE_NOTIFY_URLS": phone.url("phone"),
    })
    return env


def triage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "triage.cli", *args], env=env, text=True,
                          capture_output=True, timeout=120, check=False)


def everything_written(state: Path, *runs: subprocess.CompletedProcess[str]) -> str:
    """Every output, log line and state table row a seller could ever see."""
    texts = [r.stdout + r.stderr for r in runs]
    with sqlite3.connect(state / "triage.db") as conn:
        tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master "
                                                 "WHERE type = 'table'")]
        for table in tables:
            texts += [repr(row) for row in conn.execute(f'SELECT * FROM "{table}"')]
    return "\n".join(texts)


@pytest.fixture
def phone() -> HttpReceiver:
    receiver = HttpReceiver()
    yield receiver  # type: ignore[misc]
    receiver.stop()


def test_run_once_logs_in_with_oauth2_rescues_alerts_and_refreshes(  # type: ignore[no-untyped-def]
    oauth_dovecot, oauth_server: OAuthServer, phone: HttpReceiver, tmp_path: Path
) -> None:
    refresh_token = oauth_server.issue_refresh_token(oauth_dovecot.user)
    env = oauth_env(oauth_dovecot, oauth_server, refresh_token, tmp_path, phone)
    oauth_dovecot.append("Junk", CLAIM)
    oauth_dovecot.append("Junk", PHISH)
    grants = len(oauth_server.grants)

    first = triage(env, "run", "--once")

    assert first.returncode == 0, first.stderr
    assert len(oauth_server.grants) == grants + 1  # one access token for the run
    assert len(oauth_dovecot.uids("INBOX")) == 1, "the genuine claim was not rescued"
    assert len(oauth_dovecot.uids("Junk")) == 1, "the phishing mail left junk"
    assert any("113-7781204-5530618" in m for m in phone.messages)
    cache = next((tmp_path / "state").glob("oauth-token-*.json"))
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600

    # Within its lifetime the cached token serves the next run: no new grant.
    again = triage(env, "run", "--once")
    assert again.returncode == 0, again.stderr
    assert len(oauth_server.grants) == grants + 1

    # Expired on the provider's side: the server refuses it, triage gets a new one.
    oauth_server.expire_access_tokens()
    oauth_dovecot.append("INBOX", CLAIM.replace(b"5530618", b"5530619"))
    second = triage(env, "run", "--once")

    assert second.returncode == 0, second.stderr
    assert len(oauth_server.grants) == grants + 2
    assert any("113-7781204-5530619" in m for m in phone.messages)
    written = everything_written(tmp_path / "state", first, again, second)
    tokens = [refresh_token, *oauth_server.access_tokens]
    assert not [t for t in tokens if t in written], "a token was shown"


def test_a_rotated_refresh_token_is_kept_and_used(  # type: ignore[no-untyped-def]
    oauth_dovecot, oauth_server: OAuthServer, phone: HttpReceiver, tmp_path: Path
) -> None:
    first_token = oauth_server.issue_refresh_token(oauth_dovecot.user)
    env = oauth_env(oauth_dovecot, oauth_server, first_token, tmp_path, phone)
    oauth_server.rotate = True  # every refresh spends the refresh token and issues a new one
    try:
        for _ in range(3):
            run = triage(env, "run", "--once")
            assert run.returncode == 0, run.stderr
            oauth_server.expire_access_tokens()
    finally:
        oauth_server.rotate = False
    # The configured token was spent by the first run; the later runs used the new ones.
    assert first_token not in oauth_server.refresh_tokens
    assert "new refresh token" in run.stderr


def test_a_revoked_refresh_token_is_reported_to_the_seller_once(  # type: ignore[no-untyped-def]
    oauth_dovecot, oauth_server: OAuthServer, phone: HttpReceiver, tmp_path: Path
) -> None:
    refresh_token = oauth_server.issue_refresh_token(oauth_dovecot.user)
    env = oauth_env(oauth_dovecot, oauth_server, refresh_token, tmp_path, phone)
    oauth_server.revoke(refresh_token)

    runs = [triage(env, "run", "--once") for _ in range(2)]

    assert [r.returncode for r in runs] == [2, 2]
    for run in runs:
        assert "triage login" in run.stderr
        assert "Traceback" not in run.stderr
    told = [m for m in phone.messages if "log in again" in m.lower()]
    assert len(told) == 1, phone.messages
    assert refresh_token not in everything_written(tmp_path / "state", *runs)


# -- the token source on its own, against the same OAuth2 server --------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def source(server: OAuthServer, refresh_token: str, tmp_path: Path, clock: Clock):  # type: ignore[no-untyped-def]
    from triage.oauth import TokenSource
    from triage.settings import OAuthSettings

    return TokenSource(OAuthSettings(token_url=f"{server.url}/token", client_id=CLIENT_ID,
                                     refresh_token=refresh_token,
                                     cache_path=tmp_path / "oauth-token.json"), clock=clock)


def test_the_access_token_is_renewed_a_minute_before_it_expires(
    oauth_server: OAuthServer, tmp_path: Path
) -> None:
    clock = Clock()
    tokens = source(oauth_server, oauth_server.issue_refresh_token("seller-x"), tmp_path, clock)
    first = tokens.access_token()
    clock.now += oauth_server.lifetime - 61
    assert tokens.access_token() == first  # still more than a minute left
    clock.now += 2
    renewed = tokens.access_token()
    assert renewed != first
    assert oauth_server.access_tokens[renewed][0] == "seller-x"


def test_a_new_login_replaces_the_cached_authorisation(
    oauth_server: OAuthServer, tmp_path: Path
) -> None:
    clock = Clock()
    old = source(oauth_server, oauth_server.issue_refresh_token("seller-y"), tmp_path, clock)
    old_token = old.access_token()
    new = source(oauth_server, oauth_server.issue_refresh_token("seller-z"), tmp_path, clock)
    token = new.access_token()
    assert token != old_token
    assert oauth_server.access_tokens[token][0] == "seller-z"


def test_a_server_that_offers_only_oauthbearer_gets_it(  # type: ignore[no-untyped-def]
    dovecot_servers, oauth_server: OAuthServer, phone: HttpReceiver, tmp_path: Path
) -> None:
    account = dovecot_servers.account(introspection_url=f"{oauth_server.url}/introspect",
                                      oauth_mechanisms="oauthbearer")
    env = oauth_env(account, oauth_server, oauth_server.issue_refresh_token(account.user),
                    tmp_path, phone)
    account.append("INBOX", CLAIM)
    run = triage(env, "run", "--once")
    assert run.returncode == 0, run.stderr
    assert any("113-7781204-5530618" in m for m in phone.messages)


def test_doctor_checks_an_oauth2_login_and_says_to_sign_in_again_when_revoked(  # type: ignore[no-untyped-def]
    oauth_dovecot, oauth_server: OAuthServer, phone: HttpReceiver, tmp_path: Path
) -> None:
    refresh_token = oauth_server.issue_refresh_token(oauth_dovecot.user)
    env = oauth_env(oauth_dovecot, oauth_server, refresh_token, tmp_path, phone)
    working = triage(env, "doctor")
    assert working.returncode == 0, working.stdout
    assert "ok    login" in working.stdout and "OAuth2" in working.stdout
    oauth_server.revoke(refresh_token)  # its access tokens die with it
    revoked = triage(env, "doctor")
    assert revoked.returncode == 1
    assert "FAIL  login" in revoked.stdout and "triage login" in revoked.stdout
    assert refresh_token not in working.stdout + revoked.stdout + revoked.stderr
