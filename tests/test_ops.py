"""Operations: masked logs, metrics and health over HTTP, ``triage health``, ``triage status``."""

from __future__ import annotations

import io
import json
import logging
import os
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from triage import health, logs, metrics, status
from triage.errors import ConfigError
from triage.settings import NotifySettings, OpsSettings, Settings, ops_from_env

IMAP_PASSWORD = "Imap-Pa55word!"
TOKEN = "tok-7f3a9c1e"


# --- logs ---------------------------------------------------------------------------


@pytest.fixture
def log_output() -> Iterator[io.StringIO]:
    """Where :func:`logs.setup_logging` writes; the root logger is restored afterwards."""
    root = logging.getLogger()
    level = root.level
    buffer = io.StringIO()
    yield buffer
    for handler in list(root.handlers):
        if handler.formatter and isinstance(
            handler.formatter, logs.TextFormatter | logs.JsonFormatter
        ):
            root.removeHandler(handler)
    root.setLevel(level)


def _log_case(name: str) -> None:
    log = logging.getLogger("triage.test")
    if name == "url with a password":
        log.warning("cannot connect to %s", f"imaps://seller:{IMAP_PASSWORD}@imap.example.com")
    elif name == "secret in the message":
        log.info(f"login as seller with {IMAP_PASSWORD}")
    elif name == "secret as an argument":
        log.info("password is %r", IMAP_PASSWORD)
    elif name == "url-encoded secret":
        log.info("imaps://seller:Imap-Pa55word%21@imap.example.com")
    elif name == "token query value":
        log.info("POST https://hooks.example.com/x?token=%s&format=json", TOKEN)
    elif name == "apikey query value":
        log.info("GET https://api.example.com/v1?user=a&apikey=%s", TOKEN)
    elif name == "pass query value":
        log.info("mailto://smtp.example.com?user=me&pass=%s", TOKEN)
    elif name == "token notifier url":
        log.info("sending to tgram://123456789:%s/987654", TOKEN)
    elif name == "secret in an extra field":
        log.info("target failed", extra={"target": f"json://h/hook?token={TOKEN}"})
    elif name == "exception message":
        try:
            raise ValueError(f"server said: bad password {IMAP_PASSWORD}")
        except ValueError:
            log.exception("login failed")
    elif name == "secret learned later":
        logs.register_secret("late-token-123456")
        log.info("refreshed token late-token-123456")


LOG_CASES = [
    ("url with a password", IMAP_PASSWORD, "imaps://seller:****@imap.example.com"),
    ("secret in the message", IMAP_PASSWORD, "login as seller with ****"),
    ("secret as an argument", IMAP_PASSWORD, "password is '****'"),
    ("url-encoded secret", "Imap-Pa55word%21", "seller:****@"),
    ("token query value", TOKEN, "?token=****&format=json"),
    ("apikey query value", TOKEN, "&apikey=****"),
    ("pass query value", TOKEN, "&pass=****"),
    ("token notifier url", TOKEN, "tgram://****"),
    ("secret in an extra field", TOKEN, "token=****"),
    ("exception message", IMAP_PASSWORD, "bad password ****"),
    ("secret learned later", "late-token-123456", "refreshed token ****"),
]


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
@pytest.mark.parametrize(("case", "secret", "shown"), LOG_CASES, ids=[c[0] for c in LOG_CASES])
def test_secrets_never_reach_the_log(
    log_output: io.StringIO, as_json: bool, case: str, secret: str, shown: str
) -> None:
    logs.setup_logging("DEBUG", json=as_json, secrets=[IMAP_PASSWORD], stream=log_output)
    _log_case(case)
    written = log_output.getvalue()
    assert secret not in written
    assert shown in written
    if as_json:
        assert all(json.loads(line)["level"] for line in written.splitlines())


def test_a_secret_quoted_for_imap_is_masked(log_output: io.StringIO) -> None:
    secret = 'pa"ss\\word1'
    logs.setup_logging("DEBUG", secrets=[secret], stream=log_output)
    logging.getLogger("imapclient").debug('> LOGIN seller "pa\\"ss\\\\word1"')
    assert "word1" not in log_output.getvalue()
    assert 'LOGIN seller "****"' in log_output.getvalue()


def test_json_log_lines_parse_with_their_fields(log_output: io.StringIO) -> None:
    logs.setup_logging("INFO", json=True, stream=log_output)
    log = logging.getLogger("triage.sync")
    log.info("synced %d messages", 3, extra={"account": "shop", "folder": "INBOX"})
    log.debug("not shown at INFO")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("sync failed")
    lines = [json.loads(line) for line in log_output.getvalue().splitlines()]
    assert [line["msg"] for line in lines] == ["synced 3 messages", "sync failed"]
    first = lines[0]
    assert first["level"] == "INFO" and first["logger"] == "triage.sync"
    assert (first["account"], first["folder"]) == ("shop", "INBOX")
    assert datetime.fromisoformat(first["ts"]).tzinfo is not None
    assert "RuntimeError: boom" in lines[1]["exc"]


def test_text_log_shows_extra_fields(log_output: io.StringIO) -> None:
    logs.setup_logging("INFO", stream=log_output)
    logging.getLogger("triage.sync").info("synced", extra={"account": "shop"})
    assert log_output.getvalue().rstrip().endswith("triage.sync: synced account=shop")


def test_logs_go_to_stderr_as_it_is_now(
    log_output: io.StringIO, capsys: pytest.CaptureFixture[str]
) -> None:
    logs.setup_logging("INFO")
    logging.getLogger("triage").warning("cannot reach imaps://seller:pw-12345@imap.example.com")
    err = capsys.readouterr().err
    assert "seller:****@imap.example.com" in err and "pw-12345" not in err


def test_setting_up_twice_logs_each_line_once(log_output: io.StringIO) -> None:
    logs.setup_logging("INFO", stream=io.StringIO())
    logs.setup_logging("INFO", stream=log_output)
    logging.getLogger("triage").info("once")
    assert log_output.getvalue().count("once") == 1


# --- metrics and /healthz over HTTP -------------------------------------------------------


def _get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read().decode()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, health.Heartbeat]]:
    heartbeat = health.Heartbeat(tmp_path, max_age=60)
    server = health.start_http("127.0.0.1", 0, heartbeat=heartbeat)
    host, port = server.server_address[:2]
    yield f"http://{host}:{port}", heartbeat
    health.stop(server)


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_are_served_after_counting(served: tuple[str, health.Heartbeat]) -> None:
    url, _ = served
    account = "metrics-test"
    metrics.count_message(account, "claim", "critical", suspicious=False, rescued=True)
    metrics.count_message(account, "claim", "critical", suspicious=True, rescued=False)
    metrics.count_alert(account, ok=True)
    metrics.count_alert(account, ok=False)
    metrics.count_reconnect(account)
    metrics.set_open_clocks(account, 4)
    metrics.count_breach(account)
    metrics.mark_sync(account, datetime(2030, 1, 1, tzinfo=UTC))
    metrics.count_rules_reload(ok=False)

    code, content_type, body = _get(f"{url}/metrics")
    assert code == 200 and content_type.startswith("text/plain")
    samples = _samples(body)
    acct = frozenset({("account", account)})
    claims = acct | {("type", "claim"), ("severity", "critical")}
    assert samples[("triage_messages_total", claims)] == 2
    assert samples[("triage_rescued_total", acct)] == 1
    assert samples[("triage_suspicious_total", acct)] == 1
    assert samples[("triage_alerts_sent_total", acct)] == 1
    assert samples[("triage_alerts_failed_total", acct)] == 1
    assert samples[("triage_imap_reconnects_total", acct)] == 1
    assert samples[("triage_reply_clocks_open", acct)] == 4
    assert samples[("triage_reply_clocks_breached_total", acct)] == 1
    assert samples[("triage_last_sync_timestamp_seconds", acct)] == 1893456000
    assert samples[("triage_rules_reload_total", frozenset({("result", "error")}))] >= 1


def test_separate_registries_do_not_share_counts() -> None:
    one, two = metrics.Metrics(), metrics.Metrics()
    one.alerts_sent.labels(account="a").inc()
    assert b'triage_alerts_sent_total{account="a"} 1.0' in one.exposition()
    assert b"triage_alerts_sent_total{" not in two.exposition()


def test_healthz_follows_the_heartbeat(served: tuple[str, health.Heartbeat]) -> None:
    url, heartbeat = served
    code, _, body = _get(f"{url}/healthz")
    assert code == 503 and json.loads(body)["status"] == "unhealthy"

    heartbeat.beat("shop")
    code, content_type, body = _get(f"{url}/healthz")
    assert code == 200 and content_type == "application/json"
    assert json.loads(body)["status"] == "ok"
    assert "shop" in json.loads(body)["accounts"]

    heartbeat.beat("shop", now=time.time() - 3600)
    code, _, body = _get(f"{url}/healthz")
    assert code == 503 and "shop" in json.loads(body)["reason"]


def test_other_paths_are_not_found(served: tuple[str, health.Heartbeat]) -> None:
    url, _ = served
    assert _get(f"{url}/")[0] == 404


def test_a_busy_port_is_a_triage_error(served: tuple[str, health.Heartbeat]) -> None:
    url, _ = served
    port = int(url.rsplit(":", 1)[1])
    with pytest.raises(health.TriageError, match="cannot serve"):
        health.start_http("127.0.0.1", port)


def test_start_serves_and_beats_from_the_settings(tmp_path: Path) -> None:
    config = Settings(
        imap=None,
        notify=NotifySettings(),
        state_dir=tmp_path,
        rules_path=tmp_path / "rules.yaml",
        ops=OpsSettings(http_port=0),
    )
    server = health.start(config)
    assert server is not None
    try:
        url = "http://{}:{}/healthz".format(*server.server_address[:2])
        assert _get(url)[0] == 503
        health.beat("shop")
        assert _get(url)[0] == 200
        assert health.read_heartbeat_file(tmp_path / health.HEARTBEAT_FILE).ok
    finally:
        health.stop(server)
        health.configure(None, health.max_age_for(health.DEFAULT_IDLE_REFRESH))


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, OpsSettings()),
        (
            {"TRIAGE_LOG_LEVEL": "debug", "TRIAGE_LOG_FORMAT": "JSON"},
            OpsSettings(log_level="DEBUG", log_json=True),
        ),
        (
            {"TRIAGE_HTTP_PORT": "9464", "TRIAGE_HTTP_HOST": "0.0.0.0"},
            OpsSettings(http_host="0.0.0.0", http_port=9464),
        ),
    ],
)
def test_ops_settings_from_the_environment(env: dict[str, str], expected: OpsSettings) -> None:
    assert ops_from_env(env) == expected


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"TRIAGE_LOG_LEVEL": "loud"}, "TRIAGE_LOG_LEVEL"),
        ({"TRIAGE_LOG_FORMAT": "xml"}, "TRIAGE_LOG_FORMAT"),
        ({"TRIAGE_HTTP_PORT": "http"}, "TRIAGE_HTTP_PORT"),
        ({"TRIAGE_HTTP_PORT": "70000"}, "TRIAGE_HTTP_PORT"),
    ],
)
def test_bad_ops_settings_are_refused_by_name(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        ops_from_env(env)


# --- the commands ------------------------------------------------------------------------


def _triage(state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIAGE_")}
    env["TRIAGE_STATE_DIR"] = str(state_dir)
    return subprocess.run(
        [sys.executable, "-m", "triage.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_health_command_follows_the_heartbeat_file(tmp_path: Path) -> None:
    missing = _triage(tmp_path, "health")
    assert missing.returncode == 1
    assert len(missing.stdout.strip().splitlines()) == 1 and "no heartbeat" in missing.stdout

    health.Heartbeat(tmp_path, max_age=60).beat("shop", now=time.time() - 3600)
    stale = _triage(tmp_path, "health")
    assert stale.returncode == 1 and "shop" in stale.stdout

    health.Heartbeat(tmp_path, max_age=60).beat("shop")
    fresh = _triage(tmp_path, "health")
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr


def test_a_live_loop_with_an_open_problem_is_unhealthy(tmp_path: Path) -> None:
    heartbeat = health.Heartbeat(tmp_path, max_age=60)
    heartbeat.beat("shop")
    heartbeat.set_problem("rules", "the last rules.yaml edit was refused: rules.yaml:3: bad")
    sick = _triage(tmp_path, "health")
    assert sick.returncode == 1
    assert "rules.yaml edit was refused: rules.yaml:3: bad" in sick.stdout
    assert not heartbeat.check().ok
    heartbeat.set_problem("rules", None)
    assert _triage(tmp_path, "health").returncode == 0
    assert heartbeat.check().ok


def test_beats_are_written_at_most_every_few_seconds(tmp_path: Path) -> None:
    heartbeat = health.Heartbeat(tmp_path, max_age=60, write_every=5)
    heartbeat.beat("shop", now=1000.0)
    heartbeat.beat("shop", now=1001.0)
    written = health.read_heartbeat_file(tmp_path / health.HEARTBEAT_FILE, now=1001.0)
    assert written.ages == {"shop": 1.0}
    heartbeat.beat("shop", now=1006.0)
    written = health.read_heartbeat_file(tmp_path / health.HEARTBEAT_FILE, now=1006.0)
    assert written.ages == {"shop": 0.0}


NOW = datetime.now(UTC).replace(microsecond=0)

# The tables of the sync and the notifier, as those modules create them.
SCHEMA = """
CREATE TABLE messages (
    id INTEGER PRIMARY KEY, account TEXT NOT NULL DEFAULT 'default', folder TEXT NOT NULL,
    uidvalidity INTEGER, uid INTEGER, fingerprint TEXT NOT NULL, received_at TEXT NOT NULL,
    processed_at TEXT NOT NULL, type TEXT NOT NULL, severity TEXT NOT NULL
);
CREATE TABLE folders (
    account TEXT NOT NULL, folder TEXT NOT NULL, uidvalidity INTEGER NOT NULL,
    last_uid INTEGER NOT NULL DEFAULT 0, last_sync_at TEXT, first_sync_at TEXT NOT NULL,
    PRIMARY KEY (account, folder)
);
CREATE TABLE reply_clocks (
    id INTEGER PRIMARY KEY, message_row INTEGER NOT NULL UNIQUE, order_id TEXT,
    buyer_name TEXT NOT NULL DEFAULT '', subject TEXT NOT NULL DEFAULT '',
    opened_at TEXT NOT NULL, due_at TEXT NOT NULL, answered_at TEXT
);
CREATE TABLE notifications (id INTEGER PRIMARY KEY, created_at TEXT NOT NULL);
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY, notification_id INTEGER NOT NULL REFERENCES notifications (id),
    target_label TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL, sent_at TEXT, last_error TEXT
);
"""


def _ago(**delta: float) -> str:
    return (NOW - timedelta(**delta)).isoformat()


def _populate(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA)
    messages = [
        (1, "shop", "INBOX", _ago(hours=2), "buyer_message", "high"),
        (2, "shop", "INBOX", _ago(hours=3), "buyer_message", "high"),
        (3, "shop", "Junk", _ago(hours=5), "claim", "critical"),
        (4, "shop", "INBOX", _ago(hours=30), "marketing", "low"),
    ]
    conn.executemany(
        "INSERT INTO messages (id, account, folder, fingerprint, received_at, processed_at, "
        "type, severity) VALUES (?, ?, ?, 'f' || ?1, ?4, ?4, ?5, ?6)",
        messages,
    )
    conn.executemany(
        "INSERT INTO folders VALUES ('shop', ?, 7, ?, ?, ?)",
        [("INBOX", 120, _ago(minutes=3), _ago(days=2)), ("Junk", 9, _ago(minutes=4), _ago(days=2))],
    )
    conn.executemany(
        "INSERT INTO reply_clocks (message_row, order_id, buyer_name, subject, opened_at, due_at,"
        " answered_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (
                1,
                "111-1234567-1234567",
                "Jane",
                "Where is my parcel?",
                _ago(hours=2),
                _ago(hours=-22),
                None,
            ),
            (2, "222-1234567-1234567", "Max", "Invoice", _ago(hours=30), _ago(hours=6), None),
            (4, None, "Done", "Answered", _ago(hours=30), _ago(hours=6), _ago(hours=20)),
        ],
    )
    conn.executemany(
        "INSERT INTO notifications (id, created_at) VALUES (?, ?)",
        [(1, _ago(minutes=10)), (2, _ago(minutes=2)), (3, _ago(hours=1))],
    )
    conn.executemany(
        "INSERT INTO outbox (notification_id, target_label, attempts, next_attempt_at, sent_at,"
        " last_error) VALUES (?, ?, ?, ?, ?, ?)",
        [
            (1, "phone", 0, _ago(minutes=10), None, None),
            (2, "phone", 0, _ago(minutes=2), None, None),
            (3, "chat", 2, _ago(minutes=-5), None, f"json://hooks.example.com/?token={TOKEN}: 500"),
            (3, "phone", 1, _ago(hours=1), _ago(hours=1), None),
        ],
    )
    conn.commit()
    conn.close()


def test_status_of_an_empty_database_says_none(tmp_path: Path) -> None:
    sqlite3.connect(tmp_path / "triage.db").close()
    result = _triage(tmp_path, "status")
    assert result.returncode == 0, result.stderr
    for section in ("Last sync", "Open reply clocks", "Messages in the last 24 h"):
        assert f"{section}: none" in result.stdout
    assert "Outbox: 0 pending, 0 failed, 0 sent" in result.stdout


def test_status_without_a_database_is_an_error(tmp_path: Path) -> None:
    result = _triage(tmp_path, "status")
    assert result.returncode == 2 and "no state database" in result.stderr
    assert not (tmp_path / "triage.db").exists()


def test_status_command_reads_a_populated_database(tmp_path: Path) -> None:
    _populate(tmp_path / "triage.db")
    result = _triage(tmp_path, "status")
    assert result.returncode == 0, result.stderr
    assert "shop / INBOX: " in result.stdout and "last UID 120" in result.stdout
    assert "Open reply clocks: 2" in result.stdout
    assert "Outbox: 2 pending, 1 failed, 1 sent" in result.stdout
    assert "Messages in the last 24 h: 3" in result.stdout


def _status_at_now(tmp_path: Path) -> status.Status:
    _populate(tmp_path / "triage.db")
    conn = sqlite3.connect(tmp_path / "triage.db")
    try:
        return status.collect(conn, now=NOW)
    finally:
        conn.close()


def test_status_text_shows_ages_and_time_left(tmp_path: Path) -> None:
    text = status.render(_status_at_now(tmp_path))
    assert "shop / INBOX: " in text and "(3m ago), last UID 120" in text
    lines = text.splitlines()
    clocks = lines[lines.index("Open reply clocks: 2") + 1 :][:2]
    # Least time left first: the breached clock leads.
    assert clocks[0].startswith("  OVERDUE by 6h 0m") and "222-1234567-1234567" in clocks[0]
    assert clocks[1].startswith("  22h 0m left") and "Jane" in clocks[1]
    assert "Outbox: 2 pending, 1 failed, 1 sent" in text
    assert "oldest unsent: " in text and "(1h 0m ago)" in text
    assert "last error: json://hooks.example.com/?token=****" in text
    assert TOKEN not in text
    assert "Messages in the last 24 h: 3" in text
    # Types in taxonomy order; a message older than 24 hours is not counted.
    assert text.index("buyer_message") < text.index("claim")
    assert "marketing" not in text


def test_status_as_json(tmp_path: Path) -> None:
    _populate(tmp_path / "triage.db")
    result = _triage(tmp_path, "status", "--json")
    report = json.loads(result.stdout)
    assert [f["folder"] for f in report["folders"]] == ["INBOX", "Junk"]
    assert [c["buyer_name"] for c in report["reply_clocks"]] == ["Max", "Jane"]
    assert {c["account"] for c in report["reply_clocks"]} == {"shop"}
    assert report["outbox"]["pending"] == 2
    assert report["recent"] == {"buyer_message": {"high": 2}, "claim": {"critical": 1}}


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (40, "40s"),
        (12 * 60 + 5, "12m"),
        (5 * 3600 + 20 * 60, "5h 20m"),
        (2 * 86400 + 3 * 3600, "2d 3h"),
        (-7200, "2h 0m"),
    ],
)
def test_durations_read_like_a_person_would_write_them(seconds: float, shown: str) -> None:
    assert status.duration(seconds) == shown


@pytest.mark.parametrize("command", [("status",), ("digest", "--now")])
def test_a_state_folder_under_a_file_is_a_clear_error(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    (tmp_path / "file").write_text("not a folder", encoding="utf-8")
    result = _triage(tmp_path / "file" / "state", *command)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert str(tmp_path / "file" / "state") in result.stdout + result.stderr
