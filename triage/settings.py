"""Typed settings, read once at start-up from the environment (and an optional file).

Nothing downstream reads a raw dict or ``os.environ``. Secrets are read from the
environment or a mounted file and are masked wherever settings are shown.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from triage import providers, resources
from triage.errors import ConfigError

SECURITY_MODES = providers.SECURITY_MODES
AUTH_METHODS = providers.AUTH_METHODS
# What ``triage login`` saves in the state folder (mode 0600): the token endpoint, the
# client and the refresh token, so the daemon needs no OAuth variables after it.
LOGIN_FILE = "oauth-login.json"


def mask(secret: str) -> str:
    """What to show instead of a secret: never any of its characters."""
    return "****" if secret else ""


@dataclass(frozen=True)
class OAuthSettings:
    """How to get IMAP access tokens: a refresh token traded at the token endpoint."""

    token_url: str
    client_id: str
    refresh_token: str = field(repr=False)
    client_secret: str = field(default="", repr=False)
    scope: str = ""
    # Where the access token and a rotated refresh token are kept (mode 0600).
    cache_path: Path = Path("oauth-token.json")


@dataclass(frozen=True)
class ImapSettings:
    host: str
    user: str
    password: str = field(repr=False)
    port: int = 993
    security: str = "tls"
    verify_certificate: bool = True
    ca_file: str | None = None
    folders: tuple[str, ...] = ()
    junk_folder: str | None = None
    rescue_folder: str = "INBOX"
    idle_refresh_seconds: int = 540
    max_connections: int = 2
    backfill_days: int = 30
    history_grace_hours: int = 24
    fetch_batch: int = 200
    max_fetch_bytes: int = 256 * 1024
    # Names the account in the state database, logs and metrics; user@host when unset.
    name: str = ""
    # "password" (LOGIN) or "oauth2" (XOAUTH2 with an access token from ``oauth``).
    auth: str = "password"
    oauth: OAuthSettings | None = None

    @property
    def account(self) -> str:
        return self.name or f"{self.user}@{self.host}"

    def describe(self) -> str:
        where = f"{self.user}@{self.host}:{self.port} ({self.security})"
        if self.auth == "oauth2":
            return f"{where}, OAuth2"
        return f"{where}, password {mask(self.password)}"


@dataclass(frozen=True)
class NotifySettings:
    urls: tuple[str, ...] = field(default=(), repr=False)
    apprise_config: str | None = None
    timezone: str = "UTC"


@dataclass(frozen=True)
class Settings:
    imap: ImapSettings | None
    notify: NotifySettings
    state_dir: Path
    rules_path: Path
    trusted_authserv_ids: tuple[str, ...] = ()
    dry_run: bool = False
    ops: OpsSettings = field(default_factory=lambda: OpsSettings())
    # Processes besides this one that parse and classify large batches (0: none).
    decode_workers: int = 1
    # Further mailboxes from the settings file; ``imap`` (from the environment) comes first.
    more_accounts: tuple[ImapSettings, ...] = ()
    # Seconds after an account's last correction before its learned model is refitted
    # (one refit for a run of corrections); 0: never by itself, only `triage learn`.
    learn_after_seconds: int = 120

    @property
    def accounts(self) -> tuple[ImapSettings, ...]:
        """Every mailbox this daemon watches, the environment's first."""
        return ((self.imap,) if self.imap else ()) + self.more_accounts

    @property
    def database_path(self) -> Path:
        return self.state_dir / "triage.db"


def _read_secret(env: Mapping[str, str], name: str) -> str:
    """``NAME`` or the contents of the file named by ``NAME_FILE`` (a mounted secret)."""
    if env.get(name):
        return env[name]
    path = env.get(f"{name}_FILE")
    if not path:
        return ""
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{name}_FILE: cannot read {path}: {exc.strerror}") from exc


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    value = env.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a whole number, got {value!r}") from exc


def _split(value: str) -> tuple[str, ...]:
    return tuple(part for part in value.replace(",", " ").split() if part)


def _preset(env: Mapping[str, str]) -> dict[str, str]:
    """The ``TRIAGE_IMAP_*`` defaults of ``TRIAGE_IMAP_PROVIDER``; set variables win."""
    name = env.get("TRIAGE_IMAP_PROVIDER", "")
    if not name:
        return {}
    preset = providers.preset(name)
    values = {
        "TRIAGE_IMAP_HOST": preset.host,
        "TRIAGE_IMAP_PORT": str(preset.port),
        "TRIAGE_IMAP_SECURITY": preset.security,
        "TRIAGE_IMAP_AUTH": preset.auth,
    }
    # Not the junk folder's name: servers mark it (SPECIAL-USE) and a name that differs
    # by language or account type would stop the daemon; `triage doctor` suggests it.
    return {key: value for key, value in values.items() if value}


def state_dir_from_env(env: Mapping[str, str]) -> Path:
    return Path(env.get("TRIAGE_STATE_DIR") or Path.home() / ".local/state/triage")


def imap_from_env(env: Mapping[str, str]) -> ImapSettings | None:
    """IMAP settings, or None when no host is configured (``triage run`` then refuses)."""
    env = {**_preset(env), **{k: v for k, v in env.items() if v != ""}}
    host = env.get("TRIAGE_IMAP_HOST", "")
    if not host:
        return None
    security = env.get("TRIAGE_IMAP_SECURITY", "tls").lower()
    if security not in SECURITY_MODES:
        choices = ", ".join(SECURITY_MODES)
        raise ConfigError(f"TRIAGE_IMAP_SECURITY must be one of {choices}, got {security!r}")
    user = env.get("TRIAGE_IMAP_USER", "")
    if not user:
        raise ConfigError("TRIAGE_IMAP_USER (your e-mail address) is required with a mailbox")
    default_port = 993 if security == "tls" else 143
    auth = env.get("TRIAGE_IMAP_AUTH", "password").lower()
    if auth not in AUTH_METHODS:
        choices = ", ".join(AUTH_METHODS)
        raise ConfigError(f"TRIAGE_IMAP_AUTH must be one of {choices}, got {auth!r}")
    name = env.get("TRIAGE_ACCOUNT_NAME", "")
    return ImapSettings(
        host=host,
        user=user,
        password=_read_secret(env, "TRIAGE_IMAP_PASSWORD"),
        port=_int(env, "TRIAGE_IMAP_PORT", default_port),
        security=security,
        verify_certificate=env.get("TRIAGE_IMAP_VERIFY", "1").lower() not in ("0", "false", "no"),
        ca_file=env.get("TRIAGE_IMAP_CA_FILE") or None,
        folders=_split(env.get("TRIAGE_IMAP_FOLDERS", "")),
        junk_folder=env.get("TRIAGE_IMAP_JUNK_FOLDER") or None,
        rescue_folder=env.get("TRIAGE_RESCUE_FOLDER", "INBOX"),
        idle_refresh_seconds=_int(env, "TRIAGE_IDLE_REFRESH", 540),
        max_connections=_int(env, "TRIAGE_IMAP_MAX_CONNECTIONS", 2),
        backfill_days=_int(env, "TRIAGE_BACKFILL_DAYS", 30),
        history_grace_hours=_int(env, "TRIAGE_HISTORY_GRACE_HOURS", 24),
        name=name,
        auth=auth,
        oauth=oauth_from_env(env, name or f"{user}@{host}") if auth == "oauth2" else None,
    )


def _login_file(env: Mapping[str, str]) -> dict[str, str]:
    """What ``triage login`` saved, or nothing."""
    path = state_dir_from_env(env) / LOGIN_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read the saved login ({exc}); "
                          "run `triage login` again") from exc
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


@dataclass(frozen=True)
class OAuthClient:
    """The app registration ``triage login`` signs in with, and where it saves the result."""

    client_id: str
    client_secret: str = field(repr=False)
    scope: str
    state_dir: Path


def oauth_client_from_env(env: Mapping[str, str] | None = None) -> OAuthClient:
    """``TRIAGE_OAUTH_CLIENT_ID``, ``..._CLIENT_SECRET[_FILE]``, ``..._SCOPE``, the state dir."""
    env = os.environ if env is None else env
    return OAuthClient(
        client_id=env.get("TRIAGE_OAUTH_CLIENT_ID", ""),
        client_secret=_read_secret(env, "TRIAGE_OAUTH_CLIENT_SECRET"),
        scope=env.get("TRIAGE_OAUTH_SCOPE", ""),
        state_dir=state_dir_from_env(env),
    )


def oauth_from_env(env: Mapping[str, str], account: str) -> OAuthSettings:
    """``TRIAGE_OAUTH_*``, else what ``triage login`` saved in the state folder."""
    saved = _login_file(env)
    token_url = env.get("TRIAGE_OAUTH_TOKEN_URL") or saved.get("token_url", "")
    client_id = env.get("TRIAGE_OAUTH_CLIENT_ID") or saved.get("client_id", "")
    refresh = _read_secret(env, "TRIAGE_OAUTH_REFRESH_TOKEN") or saved.get("refresh_token", "")
    missing = [name for name, value in (("TRIAGE_OAUTH_TOKEN_URL", token_url),
                                        ("TRIAGE_OAUTH_CLIENT_ID", client_id),
                                        ("TRIAGE_OAUTH_REFRESH_TOKEN", refresh)) if not value]
    if missing:
        raise ConfigError(
            f"TRIAGE_IMAP_AUTH=oauth2 needs {', '.join(missing)}: "
            "run `triage login --provider microsoft|google`, or set them"
        )
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", account)
    return OAuthSettings(
        token_url=token_url,
        client_id=client_id,
        refresh_token=refresh,
        client_secret=_read_secret(env, "TRIAGE_OAUTH_CLIENT_SECRET")
        or saved.get("client_secret", ""),
        scope=env.get("TRIAGE_OAUTH_SCOPE") or saved.get("scope", ""),
        cache_path=state_dir_from_env(env) / f"oauth-token-{slug}.json",
    )


def from_env(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every setting; raises :class:`ConfigError` with the variable's name."""
    env = os.environ if env is None else env
    state_dir = state_dir_from_env(env)
    return Settings(
        imap=imap_from_env(env),
        notify=NotifySettings(
            urls=_split(_read_secret(env, "TRIAGE_NOTIFY_URLS")),
            apprise_config=env.get("TRIAGE_APPRISE_CONFIG") or None,
            timezone=env.get("TRIAGE_TIMEZONE", "UTC"),
        ),
        state_dir=state_dir,
        rules_path=rules_path_from_env(env),
        trusted_authserv_ids=_split(env.get("TRIAGE_TRUSTED_AUTHSERV_IDS", "")),
        ops=ops_from_env(env),
        more_accounts=accounts_from_file(env.get("TRIAGE_SETTINGS_FILE"), env),
        decode_workers=_int(env, "TRIAGE_DECODE_WORKERS", 1),
        learn_after_seconds=_learn_after(env),
    )


def _learn_after(env: Mapping[str, str]) -> int:
    seconds = _int(env, "TRIAGE_LEARN_AFTER_SECONDS", 120)
    if seconds < 0:
        raise ConfigError(f"TRIAGE_LEARN_AFTER_SECONDS must be 0 or more, got {seconds}")
    return seconds


# Settings-file keys of an account and the environment variable each stands for, so
# one validation serves both (a file entry is read as if it were the environment).
ACCOUNT_KEYS = {
    "provider": "TRIAGE_IMAP_PROVIDER",
    "host": "TRIAGE_IMAP_HOST",
    "port": "TRIAGE_IMAP_PORT",
    "user": "TRIAGE_IMAP_USER",
    "password_file": "TRIAGE_IMAP_PASSWORD_FILE",
    "security": "TRIAGE_IMAP_SECURITY",
    "auth": "TRIAGE_IMAP_AUTH",
    "verify": "TRIAGE_IMAP_VERIFY",
    "ca_file": "TRIAGE_IMAP_CA_FILE",
    "folders": "TRIAGE_IMAP_FOLDERS",
    "junk_folder": "TRIAGE_IMAP_JUNK_FOLDER",
    "rescue_folder": "TRIAGE_RESCUE_FOLDER",
    "idle_refresh": "TRIAGE_IDLE_REFRESH",
    "max_connections": "TRIAGE_IMAP_MAX_CONNECTIONS",
    "backfill_days": "TRIAGE_BACKFILL_DAYS",
    "history_grace_hours": "TRIAGE_HISTORY_GRACE_HOURS",
    "oauth_token_url": "TRIAGE_OAUTH_TOKEN_URL",
    "oauth_client_id": "TRIAGE_OAUTH_CLIENT_ID",
    "oauth_client_secret_file": "TRIAGE_OAUTH_CLIENT_SECRET_FILE",
    "oauth_scope": "TRIAGE_OAUTH_SCOPE",
    "oauth_refresh_token_file": "TRIAGE_OAUTH_REFRESH_TOKEN_FILE",
}


def accounts_from_file(path: str | None, env: Mapping[str, str]) -> tuple[ImapSettings, ...]:
    """Mailboxes listed under ``accounts:`` in the YAML settings file, validated.

    Example::

        accounts:
          - name: shop-eu
            host: imap.gmail.com
            user: eu@shop.example
            password_file: /run/secrets/shop_eu   # or password_env: SHOP_EU_PASSWORD
            junk_folder: "[Gmail]/Spam"
    """
    if not path:
        return ()
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"TRIAGE_SETTINGS_FILE {path}: {exc}") from exc
    entries = data.get("accounts") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ConfigError(f"{path}: expected a list under 'accounts:'")
    accounts = tuple(_account(entry, f"{path}: account {n}", env)
                     for n, entry in enumerate(entries, start=1))
    names = [a.account for a in accounts]
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: two accounts share a name; give each a unique 'name'")
    return accounts


def _account(entry: Any, where: str, env: Mapping[str, str]) -> ImapSettings:
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected a mapping of settings")
    unknown = set(entry) - set(ACCOUNT_KEYS) - {"name", "password_env"}
    if unknown:
        allowed = ", ".join(sorted([*ACCOUNT_KEYS, "name", "password_env"]))
        key = sorted(unknown)[0]
        raise ConfigError(f"{where}: unknown key {key!r} (expected one of: {allowed})")
    values = {ACCOUNT_KEYS[k]: _plain(v) for k, v in entry.items() if k in ACCOUNT_KEYS}
    if env.get("TRIAGE_STATE_DIR"):
        values["TRIAGE_STATE_DIR"] = env["TRIAGE_STATE_DIR"]
    if "password_env" in entry:
        values["TRIAGE_IMAP_PASSWORD"] = env.get(str(entry["password_env"]), "")
    try:
        account = imap_from_env(values)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    if account is None:
        raise ConfigError(f"{where}: 'host' is required")
    return replace(account, name=str(entry.get("name") or ""))


def _plain(value: Any) -> str:
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def default_rules_path() -> Path:
    """rules.yaml in the working directory, else the default policy shipped with triage."""
    local = Path("rules.yaml")
    return local if local.exists() else resources.default_rules_path()


def rules_path_from_env(env: Mapping[str, str] | None = None) -> Path:
    """``TRIAGE_RULES``, else :func:`default_rules_path`: the same for every command."""
    env = os.environ if env is None else env
    return Path(env.get("TRIAGE_RULES") or default_rules_path())


def default_model_dir(env: Mapping[str, str] | None = None) -> Path:
    """``TRIAGE_MODEL_DIR``, else the model shipped inside the package."""
    env = os.environ if env is None else env
    return Path(env.get("TRIAGE_MODEL_DIR") or resources.default_model_dir())


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("text", "json")


@dataclass(frozen=True)
class OpsSettings:
    """How triage logs, and the optional HTTP port serving /healthz and /metrics."""

    log_level: str = "INFO"
    log_json: bool = False
    http_host: str = "127.0.0.1"
    http_port: int | None = None


def ops_from_env(env: Mapping[str, str] | None = None) -> OpsSettings:
    """``TRIAGE_LOG_LEVEL``, ``TRIAGE_LOG_FORMAT``, ``TRIAGE_HTTP_HOST``, ``TRIAGE_HTTP_PORT``."""
    env = os.environ if env is None else env
    level = (env.get("TRIAGE_LOG_LEVEL") or "INFO").upper()
    if level not in LOG_LEVELS:
        raise ConfigError(f"TRIAGE_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {level!r}")
    log_format = (env.get("TRIAGE_LOG_FORMAT") or "text").lower()
    if log_format not in LOG_FORMATS:
        choices = ", ".join(LOG_FORMATS)
        raise ConfigError(f"TRIAGE_LOG_FORMAT must be one of {choices}, got {log_format!r}")
    port = _int(env, "TRIAGE_HTTP_PORT", 0)
    if not 0 <= port <= 65535:
        raise ConfigError(f"TRIAGE_HTTP_PORT must be between 1 and 65535, got {port}")
    return OpsSettings(
        log_level=level,
        log_json=log_format == "json",
        http_host=env.get("TRIAGE_HTTP_HOST") or "127.0.0.1",
        http_port=port or None,
    )


def secrets_from_env(env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """Every secret value the settings hold, for the log filter to mask."""
    env = os.environ if env is None else env
    password = _read_secret(env, "TRIAGE_IMAP_PASSWORD")
    urls = _split(_read_secret(env, "TRIAGE_NOTIFY_URLS"))
    oauth = (_read_secret(env, "TRIAGE_OAUTH_REFRESH_TOKEN"),
             _read_secret(env, "TRIAGE_OAUTH_CLIENT_SECRET"))
    return tuple(value for value in (password, *urls, *oauth) if value)
