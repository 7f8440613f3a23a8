"""Settings: one mailbox from the environment, more from a settings file, secrets masked."""

from __future__ import annotations

from pathlib import Path

import pytest

from triage.errors import ConfigError
from triage.settings import from_env

BASE = {"TRIAGE_IMAP_HOST": "imap.example.com", "TRIAGE_IMAP_USER": "seller@example.com"}


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        (BASE, ("imap.example.com", 993, "tls")),
        ({**BASE, "TRIAGE_IMAP_SECURITY": "starttls"}, ("imap.example.com", 143, "starttls")),
        ({**BASE, "TRIAGE_IMAP_SECURITY": "none", "TRIAGE_IMAP_PORT": "1143"},
         ("imap.example.com", 1143, "none")),
    ],
)
def test_mailbox_from_the_environment(env: dict[str, str], expected: tuple | None) -> None:
    imap = from_env(env).imap
    assert (imap and (imap.host, imap.port, imap.security)) == expected


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({**BASE, "TRIAGE_IMAP_SECURITY": "ssl"}, "TRIAGE_IMAP_SECURITY"),
        ({**BASE, "TRIAGE_IMAP_PORT": "nine"}, "TRIAGE_IMAP_PORT"),
        ({"TRIAGE_IMAP_HOST": "imap.example.com"}, "TRIAGE_IMAP_USER"),
        ({**BASE, "TRIAGE_IMAP_PASSWORD_FILE": "/nonexistent/secret"}, "TRIAGE_IMAP_PASSWORD_FILE"),
    ],
)
def test_a_bad_setting_is_refused_by_name(env: dict[str, str], names: str) -> None:
    with pytest.raises(ConfigError, match=names):
        from_env(env)


def test_password_from_a_mounted_file_is_never_shown(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("hunter2-very-secret\n")
    imap = from_env({**BASE, "TRIAGE_IMAP_PASSWORD_FILE": str(secret)}).imap
    assert imap is not None
    assert imap.password == "hunter2-very-secret"
    assert "hunter2" not in imap.describe()
    assert "hunter2" not in repr(imap)


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "settings.yaml"
    path.write_text(text)
    return str(path)


def test_several_mailboxes_from_a_settings_file(tmp_path: Path) -> None:
    secret = tmp_path / "eu-password"
    secret.write_text("eu-secret")
    path = write(tmp_path, f"""
accounts:
  - name: shop-eu
    host: imap.eu.example
    user: eu@shop.example
    password_file: {secret}
    junk_folder: Spam
  - host: imap.us.example
    user: us@shop.example
    password_env: US_PASSWORD
    security: starttls
    folders: [Returns, Claims]
""")
    settings = from_env({**BASE, "TRIAGE_SETTINGS_FILE": path, "US_PASSWORD": "us-secret"})
    accounts = settings.accounts
    assert [a.account for a in accounts] == [
        "seller@example.com@imap.example.com", "shop-eu", "us@shop.example@imap.us.example"]
    assert accounts[1].password == "eu-secret"
    assert accounts[1].junk_folder == "Spam"
    assert accounts[2].password == "us-secret"
    assert accounts[2].folders == ("Returns", "Claims")
    assert accounts[2].port == 143


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("accounts: {}", "expected a list"),
        ("accounts:\n  - host: a\n    user: b\n    pasword_file: x", "unknown key 'pasword_file'"),
        ("accounts:\n  - user: b", "'host' is required"),
        ("accounts:\n  - host: a\n    user: b\n    port: many", "account 1: TRIAGE_IMAP_PORT"),
        ("accounts:\n  - {host: a, user: b, name: x}\n  - {host: c, user: d, name: x}",
         "share a name"),
        ("accounts: [", "TRIAGE_SETTINGS_FILE"),
    ],
)
def test_a_broken_settings_file_is_refused(tmp_path: Path, text: str, reason: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=reason) as refused:
        from_env({"TRIAGE_SETTINGS_FILE": path})
    assert path in str(refused.value)
