"""No secret of any kind in any output, log or table, whatever the seller runs.

Four kinds: the IMAP password, a password in a notifier URL, a token in an Apprise
header parameter (``?+X-Api-Key=``) and a token in a URL path (in TRIAGE_NOTIFY_URLS
and in an Apprise config file). The commands run as a
seller runs them, at debug level, against a real Dovecot and real receivers (one up,
one down, so failures are logged too); then every output, every file of the state
folder and every row of every table is searched for each secret.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from hostile import claim_mail
from receivers import HttpReceiver, _free_port

URL_PASSWORD = "UrlPassw0rdSecret"
HEADER_TOKEN = "HeaderT0kenSecret"
PATH_TOKEN = "PathT0kenSecret42"
QUERY_TOKEN = "QueryT0kenSecret"
CONFIG_TOKEN = "ConfigT0kenSecret"


def notify_urls(http: HttpReceiver) -> str:
    up = (f"json://shop:{URL_PASSWORD}@127.0.0.1:{http.port}/hooks/{PATH_TOKEN}"
          f"?+X-Api-Key={HEADER_TOKEN}")
    down = (f"phone=json://127.0.0.1:{_free_port()}/hooks/{PATH_TOKEN}"
            f"?+Authorization={HEADER_TOKEN}&-token={QUERY_TOKEN}")
    return f"{up} {down}"


def triage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "triage.cli", "--verbose", *args], env=env, text=True,
        capture_output=True, timeout=120, check=False,
    )
    return f"$ triage {' '.join(args)} -> {result.returncode}\n{result.stdout}{result.stderr}"


def everything_written(state_dir: Path) -> str:
    texts = []
    for path in state_dir.rglob("*"):
        if path.is_file() and not path.name.startswith("triage.db"):
            texts.append(path.read_bytes().decode("utf-8", "replace"))
    conn = sqlite3.connect(state_dir / "triage.db")
    try:
        texts.extend(conn.iterdump())
    finally:
        conn.close()
    return "\n".join(texts)


def test_no_secret_anywhere(dovecot, tmp_path: Path, http: HttpReceiver) -> None:  # type: ignore[no-untyped-def]
    password = dovecot.password
    assert len(password) >= 4
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIAGE_")}
    env.update(dovecot.env())
    env.update({
        "TRIAGE_STATE_DIR": str(tmp_path / "state"),
        "TRIAGE_NOTIFY_URLS": notify_urls(http),
        "TRIAGE_RULES": str(tmp_path / "rules.yaml"),
        "TRIAGE_LOG_LEVEL": "DEBUG",
        "TRIAGE_APPRISE_CONFIG": str(tmp_path / "apprise.txt"),
    })
    (tmp_path / "apprise.txt").write_text(
        f"digest=json://127.0.0.1:{http.port}/hooks/{CONFIG_TOKEN}?+X-Token={CONFIG_TOKEN}\n",
        encoding="utf-8")
    (tmp_path / "rules.yaml").write_text(
        "version: 1\nnotify:\n  route:\n    critical: [phone]\n", encoding="utf-8")
    dovecot.append("INBOX", claim_mail("byte-in-boundary"))
    outputs = [
        triage(env, "notify", "--test"),
        triage(env, "run", "--once"),
        triage(env, "run", "--dry-run"),
        triage(env, "status"),
        triage(env, "status", "--json"),
        triage(env, "digest", "--now"),
        triage(env, "health"),
        triage(env, "check-rules", str(tmp_path / "rules.yaml")),
    ]
    wrong = dict(env, TRIAGE_IMAP_PASSWORD=password + "-wrong")
    outputs.append(triage(wrong, "run", "--once"))
    seen = "\n".join(outputs) + everything_written(tmp_path / "state")
    # The commands did their work: the claim reached the receiver that is up...
    assert any("113-7781204-5530618" in m for m in http.messages), seen
    assert "FAILED" in outputs[0] and "ok" in outputs[0]
    # ...and no secret shows anywhere.
    for secret in (password, URL_PASSWORD, HEADER_TOKEN, PATH_TOKEN, QUERY_TOKEN, CONFIG_TOKEN):
        assert secret not in seen, f"{secret!r} leaked:\n" + "\n".join(
            line for line in seen.splitlines() if secret in line)
