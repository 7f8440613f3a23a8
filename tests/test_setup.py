"""The newcomer's path: --version and --help, `triage init`, provider presets,
`triage login` (the device-code flow, against the local OAuth2 server) and `triage doctor`
against a real Dovecot and a real notification receiver."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from oauth_server import CLIENT_ID, OAuthServer
from receivers import HttpReceiver

from triage import providers
from triage.errors import ConfigError
from triage.settings import from_env


def triage(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None
           ) -> subprocess.CompletedProcess[str]:
    """``triage ARGS`` with no TRIAGE_ setting inherited from the developer's shell."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TRIAGE_")}
    return subprocess.run([sys.executable, "-m", "triage.cli", *args], env={**clean, **(env or {})},
                          cwd=cwd, text=True, capture_output=True, timeout=120, check=False)


# -- first contact ----------------------------------------------------------------------


def test_version_and_a_help_written_for_sellers() -> None:
    version = triage("--version")
    assert version.returncode == 0
    assert re.fullmatch(r"triage \d+\.\d+\.\d+\n", version.stdout)
    helped = triage("--help")
    assert helped.returncode == 0
    assert "Amazon seller mailbox" in helped.stdout
    for step in ("triage demo", "triage init", "triage doctor", "triage run"):
        assert step in helped.stdout
    assert "thin shell" not in helped.stdout  # not the developers' docstring


# -- init ---------------------------------------------------------------------------------


def test_init_writes_rules_and_settings_then_check_rules_accepts_them(tmp_path: Path) -> None:
    folder = tmp_path / "shop"
    made = triage("init", str(folder), "--provider", "gmail", "--user", "shop@gmail.com",
                  cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert "triage doctor" in made.stdout  # the next step is said
    env_file = (folder / "triage.env").read_text()
    assert "TRIAGE_IMAP_PROVIDER=gmail" in env_file
    assert "TRIAGE_IMAP_USER=shop@gmail.com" in env_file
    assert "app password" in env_file
    assert (folder / "rules.yaml").read_text().startswith("# triage rules")
    checked = triage("check-rules", str(folder / "rules.yaml"), cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout
    assert "OK" in checked.stdout


def test_init_never_overwrites_the_sellers_files(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text("version: 1\n# mine\n")
    (tmp_path / "triage.env").write_text("TRIAGE_IMAP_USER=me@example.com\n")
    made = triage("init", str(tmp_path), "--provider", "outlook")
    assert made.returncode == 0
    assert (tmp_path / "rules.yaml").read_text() == "version: 1\n# mine\n"
    assert (tmp_path / "triage.env").read_text() == "TRIAGE_IMAP_USER=me@example.com\n"
    assert made.stdout.count("not changed") == 2
    assert "triage login --provider microsoft" in made.stdout


def test_check_rules_reads_the_file_triage_rules_names(tmp_path: Path) -> None:
    broken = tmp_path / "mine.yaml"
    broken.write_text("version: 1\nrules:\n  - name: x\n    match: {colour: red}\n")
    checked = triage("check-rules", env={"TRIAGE_RULES": str(broken)}, cwd=tmp_path)
    assert checked.returncode == 1
    assert "mine.yaml:3" in checked.stdout


# -- provider presets -------------------------------------------------------------------


def test_every_provider_the_sellers_use_has_a_preset() -> None:
    names = set(providers.presets())
    assert {"gmail", "google-workspace", "outlook", "microsoft365", "yahoo", "icloud", "gmx",
            "webde", "fastmail", "zoho", "other"} <= names
    assert providers.preset("microsoft365").auth == "oauth2"
    assert providers.preset("outlook").auth == "oauth2"


@pytest.mark.parametrize(
    ("text", "refusal"),
    [
        ("x:\n  label: X\n", "providers.yaml:2: provider 'x': 'host' is missing"),
        ("x:\n  label: X\n  host: h\n  port: 993\n  security: ssl\n  junk_folder: J\n"
         "  auth: password\n  notes: n\n", "'security' must be one of tls, starttls, none"),
        ("x:\n  label: X\n  host: h\n  port: '993'\n  security: tls\n  junk_folder: J\n"
         "  auth: password\n  notes: n\n", "'port' must be a int"),
        ("x:\n  label: X\n  host: h\n  port: 993\n  security: tls\n  junk_folder: J\n"
         "  auth: password\n  notes: n\n  colour: red\n", "unknown key 'colour'"),
    ],
)
def test_a_bad_preset_is_refused_with_file_and_line(text: str, refusal: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(refusal)):
        providers.parse(text, "providers.yaml")


def test_a_damaged_presets_file_is_one_line_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A damaged install cannot be made with a real file without editing the installed
    # package, so the reading of it is replaced.
    from triage import cli

    monkeypatch.setattr(providers, "presets",
                        lambda: providers.parse("gmail: [", "triage/providers.yaml"))
    assert cli.main(["--version"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("triage: triage/providers.yaml: not valid YAML")
    assert "Traceback" not in err


def test_a_provider_name_fills_in_the_server_and_explicit_settings_win() -> None:
    oauth = {"TRIAGE_OAUTH_TOKEN_URL": "https://login.example/token",
             "TRIAGE_OAUTH_CLIENT_ID": "app", "TRIAGE_OAUTH_REFRESH_TOKEN": "secret-rt"}
    imap = from_env({"TRIAGE_IMAP_PROVIDER": "outlook", "TRIAGE_IMAP_USER": "me@outlook.com",
                     **oauth}).imap
    assert imap is not None
    assert (imap.host, imap.port, imap.security, imap.auth) == (
        "outlook.office365.com", 993, "tls", "oauth2")
    assert "secret-rt" not in repr(imap) and "secret-rt" not in imap.describe()
    mine = from_env({"TRIAGE_IMAP_PROVIDER": "gmail", "TRIAGE_IMAP_USER": "me@gmail.com",
                     "TRIAGE_IMAP_HOST": "imap.proxy.example", "TRIAGE_IMAP_PORT": "1993"}).imap
    assert mine is not None
    assert (mine.host, mine.port, mine.auth) == ("imap.proxy.example", 1993, "password")
    with pytest.raises(ConfigError, match="TRIAGE_OAUTH_TOKEN_URL"):
        from_env({"TRIAGE_IMAP_PROVIDER": "microsoft365", "TRIAGE_IMAP_USER": "me@shop.example"})
    with pytest.raises(ConfigError, match="unknown provider 'hotmale'"):
        from_env({"TRIAGE_IMAP_PROVIDER": "hotmale", "TRIAGE_IMAP_USER": "me@hotmail.com"})


# -- login ------------------------------------------------------------------------------


def test_login_device_code_then_run_with_the_saved_authorisation(  # type: ignore[no-untyped-def]
    oauth_dovecot, oauth_server: OAuthServer, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    oauth_server.device_for(oauth_dovecot.user)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TRIAGE_")}
    login = subprocess.Popen(
        [sys.executable, "-m", "triage.cli", "login", "--provider", "google",
         "--client-id", CLIENT_ID, "--device-url", f"{oauth_server.url}/device",
         "--token-url", f"{oauth_server.url}/token"],
        env={**clean, "TRIAGE_STATE_DIR": str(state)}, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    assert login.stdout is not None
    shown = login.stdout.readline() + login.stdout.readline()
    code = re.search(r"enter the code (\w+)", shown)
    assert code, shown
    assert f"{oauth_server.url}/device/verify" in shown
    oauth_server.approve(code.group(1))
    rest, err = login.communicate(timeout=60)
    assert login.returncode == 0, err
    saved = state / "oauth-login.json"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    refresh_tokens = [t for t, u in oauth_server.refresh_tokens.items() if u == oauth_dovecot.user]
    assert refresh_tokens and not any(t in shown + rest + err for t in refresh_tokens)

    run = triage("run", "--once", env={
        "TRIAGE_IMAP_HOST": oauth_dovecot.host, "TRIAGE_IMAP_PORT": str(oauth_dovecot.port),
        "TRIAGE_IMAP_USER": oauth_dovecot.user, "TRIAGE_IMAP_SECURITY": "none",
        "TRIAGE_IMAP_AUTH": "oauth2", "TRIAGE_STATE_DIR": str(state)})
    assert run.returncode == 0, run.stderr
    assert "connected to" in run.stderr


# -- doctor -----------------------------------------------------------------------------


def doctor_env(account, state: Path, urls: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {**account.env(), "TRIAGE_STATE_DIR": str(state), "TRIAGE_NOTIFY_URLS": urls}


def test_doctor_passes_on_a_working_setup(dovecot, http: HttpReceiver, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    checked = triage("doctor", env=doctor_env(dovecot, tmp_path, http.url("phone")), cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    out = checked.stdout
    for line in ("ok    login", "ok    inbox folder: INBOX", "ok    junk folder: Junk",
                 "ok    sent folder: Sent", "ok    rules", "ok    model"):
        assert line in out, out
    assert http.messages == ["triage can reach you here."]
    assert dovecot.password not in out


def test_doctor_names_each_failure_with_its_fix(  # type: ignore[no-untyped-def]
    dovecot, http: HttpReceiver, tmp_path: Path
) -> None:
    http.status = 500
    env = {**doctor_env(dovecot, tmp_path, http.url("phone")),
           "TRIAGE_IMAP_PASSWORD": "wrong-password-123", "TRIAGE_RULES": str(tmp_path / "r.yaml")}
    (tmp_path / "r.yaml").write_text("version: 1\ndefaults: {alert: [urgent]}\n")
    checked = triage("doctor", env=env, cwd=tmp_path)
    out = checked.stdout
    assert checked.returncode == 1
    assert "FAIL  login" in out and "app password" in out
    assert "FAIL  notify json://127.0.0.1" in out
    assert "FAIL  rules" in out and "r.yaml:2" in out
    assert out.count("fix:") >= 3
    assert "wrong-password-123" not in out + checked.stderr


def test_doctor_without_a_mailbox_says_how_to_configure_one(tmp_path: Path) -> None:
    checked = triage("doctor", env={"TRIAGE_STATE_DIR": str(tmp_path)}, cwd=tmp_path)
    assert checked.returncode == 1
    assert "FAIL  mailbox: no mailbox configured" in checked.stdout
    assert "triage init" in checked.stdout


def test_a_mailbox_of_the_settings_file_may_log_in_with_oauth2(tmp_path: Path) -> None:
    token = tmp_path / "refresh"
    token.write_text("rt-from-a-file\n")
    accounts = tmp_path / "accounts.yaml"
    accounts.write_text(
        "accounts:\n"
        "  - name: shop-us\n"
        "    provider: microsoft365\n"
        "    user: us@shop.example\n"
        "    oauth_token_url: https://login.example/token\n"
        "    oauth_client_id: app-id\n"
        f"    oauth_refresh_token_file: {token}\n"
    )
    settings = from_env({"TRIAGE_SETTINGS_FILE": str(accounts),
                         "TRIAGE_STATE_DIR": str(tmp_path / "state")})
    (account,) = settings.accounts
    assert (account.host, account.auth) == ("outlook.office365.com", "oauth2")
    assert account.oauth is not None
    assert account.oauth.refresh_token == "rt-from-a-file"
    assert account.oauth.cache_path.parent == tmp_path / "state"
    assert "rt-from-a-file" not in repr(settings)
