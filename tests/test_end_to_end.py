"""The whole product at once: mail arrives in a real Dovecot, ``triage run`` decides it
with the shipped model and rules, and the seller's phone (a local Apprise ``json://``
receiver) is told within seconds; phishing in junk stays there and is never pushed."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path

import pytest
from receivers import HttpReceiver

from triage.screen import OPENING_BYTES
from triage.settings import default_model_dir

WAIT = 30.0

pytestmark = pytest.mark.skipif(
    not (default_model_dir() / "triage-model.json").exists(), reason="no trained model"
)


def notice(sender: str, subject: str, body: str, auth_domain: str | None) -> bytes:
    msg = EmailMessage()
    if auth_domain:
        msg["Authentication-Results"] = (
            f"mx.example.net; dkim=pass header.d={auth_domain}; spf=pass "
            f"smtp.mailfrom={auth_domain}; dmarc=pass header.from={auth_domain}")
    msg["From"] = sender
    msg["To"] = "seller@example.com"
    msg["Subject"] = subject
    msg.set_content(body)
    return bytes(msg)


CLAIM = notice(
    '"Amazon Seller Central" <atoz-guarantee-no-reply@amazon.com>',
    "A-to-z Guarantee claim filed: Order 113-7781204-5530618",
    "A buyer has filed an A-to-z Guarantee claim on order 113-7781204-5530618 (item not "
    "received). Please respond within 3 calendar days.\n"
    "https://sellercentral.amazon.com/gp/guarantee-claims/home.html",
    "amazon.com",
)
PHISH = notice(
    '"Amazon Seller Central" <no-reply@amazon-sellercentral-verify.com>',
    "URGENT: Your Amazon seller account has been suspended",
    "Verify your identity within 24 hours to reactivate your account: "
    "http://amazon-sellercentral-verify.com/reactivate",
    "amazon-sellercentral-verify.com",
)


def wait_until(condition: Callable[[], bool], timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def test_a_claim_is_pushed_and_phishing_stays_in_junk(dovecot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    phone = HttpReceiver()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIAGE_")}
    env.update(dovecot.env())
    # No TRIAGE_RULES and no rules.yaml in its folder: the policy shipped in the package.
    env.update({"TRIAGE_STATE_DIR": str(tmp_path), "TRIAGE_NOTIFY_URLS": phone.url("phone")})
    with (tmp_path / "daemon.log").open("wb") as log:
        daemon = subprocess.Popen([sys.executable, "-m", "triage.cli", "run"], env=env,
                                  stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        time.sleep(1.0)  # let it reach IDLE, so the mail arrives as new mail
        dovecot.append("Junk", PHISH)
        dovecot.append("INBOX", CLAIM)
        assert wait_until(lambda: any("113-7781204-5530618" in m for m in phone.messages)), (
            (tmp_path / "daemon.log").read_text())
        alert = next(m for m in phone.messages if "113-7781204-5530618" in m)
        assert "sellercentral.amazon.com" in alert
        time.sleep(1.0)
        assert not any("suspended" in t.lower() for t in phone.titles + phone.messages)
        assert dovecot.uids("Junk"), "the phishing mail was moved out of junk"
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=15)
        phone.stop()
    assert daemon.returncode == 0


def test_a_backfill_reads_long_amazon_mail_whole_and_settles_long_newsletters(
    dovecot, tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    footer = "Manage your preferences. Our stores are open every day of the week.\n" * 200
    claim = notice(
        '"Amazon Seller Central" <atoz-guarantee-no-reply@amazon.com>',
        "A-to-z Guarantee claim filed: Order 113-7781204-5530618",
        "A buyer has filed an A-to-z Guarantee claim on order 113-7781204-5530618 (item not "
        f"received). Please respond within 3 calendar days.\n{footer}"
        "https://sellercentral.amazon.com/gp/guarantee-claims/home.html",
        "amazon.com",
    )
    news = notice('"Garden Weekly" <news@gardenweekly.example>', "Ten bulbs to plant now",
                  f"Our picks for the autumn.\n{footer}", None)
    assert min(len(claim), len(news)) > OPENING_BYTES + 4096, "longer than the opening"
    dovecot.append("INBOX", claim)
    dovecot.append("INBOX", news)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIAGE_")}
    env.update(dovecot.env())
    env["TRIAGE_STATE_DIR"] = str(tmp_path)
    done = subprocess.run([sys.executable, "-m", "triage.cli", "run", "--once"], env=env,
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(tmp_path / "triage.db") as db:
        rows = {subject: rest for subject, *rest in db.execute(
            "SELECT subject, type, decided_by, link FROM messages")}
    # The claim's link comes after its opening: it was read whole, and not by the screen.
    kind, decided_by, link = rows["A-to-z Guarantee claim filed: Order 113-7781204-5530618"]
    assert (kind, link) == ("claim", "https://sellercentral.amazon.com/gp/guarantee-claims/home.html")
    assert decided_by != "headers"
    assert rows["Ten bulbs to plant now"] == ["other", "headers", ""]
