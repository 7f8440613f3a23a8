"""``triage classify``: files, folders and mbox in; one verdict per message out."""

from __future__ import annotations

import json
import mailbox
import os
import subprocess
import sys
from email.message import EmailMessage
from pathlib import Path

import pytest

from triage.classify_cmd import Source, table_row
from triage.message import parse
from triage.settings import default_model_dir
from triage.verdict import Verdict

ROOT = Path(__file__).resolve().parent.parent
FIELDS = {"source", "type", "severity", "suspicious", "amazon", "confidence", "order_id",
          "decided_by"}

pytestmark = pytest.mark.skipif(
    not (default_model_dir() / "triage-model.json").exists(), reason="no trained model"
)


def claim_mail() -> bytes:
    msg = EmailMessage()
    msg["Authentication-Results"] = (
        "mx.example.net; dkim=pass header.i=@amazon.com; spf=pass smtp.mailfrom=amazon.com; "
        "dmarc=pass header.from=amazon.com")
    msg["From"] = '"Amazon Seller Central" <atoz-guarantee-no-reply@amazon.com>'
    msg["To"] = "seller@example.com"
    msg["Subject"] = "A-to-z Guarantee claim filed: Order 113-7781204-5530618"
    msg.set_content("A buyer has filed an A-to-z Guarantee claim on order 113-7781204-5530618. "
                    "Please respond within 3 calendar days.")
    return bytes(msg)


def classify(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIAGE_")}
    return subprocess.run(
        [sys.executable, "-m", "triage.cli", "classify", *args],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=120, check=False,
    )


def lines(result: subprocess.CompletedProcess[str]) -> list[dict[str, object]]:
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_a_folder_is_searched_recursively_and_each_message_has_every_field(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "claim.eml").write_bytes(claim_mail())
    (tmp_path / "a" / "b" / "broken.eml").write_bytes(b"")
    out = lines(classify("--json", str(tmp_path)))
    assert len(out) == 2
    by_name = {Path(str(o["source"])).name: o for o in out}
    claim = by_name["claim.eml"]
    assert set(claim) >= FIELDS
    assert (claim["type"], claim["severity"], claim["amazon"], claim["suspicious"]) == (
        "claim", "critical", True, False)
    assert claim["order_id"] == "113-7781204-5530618"
    assert 0 <= float(claim["confidence"]) <= 1  # type: ignore[arg-type]
    assert by_name["broken.eml"]["error"]


def test_an_mbox_gives_one_line_per_message_numbered(tmp_path: Path) -> None:
    box = mailbox.mbox(tmp_path / "export.mbox")
    for _ in range(3):
        box.add(claim_mail())
    box.close()
    out = lines(classify("--json", str(tmp_path / "export.mbox")))
    assert [o["source"] for o in out] == [f"{tmp_path / 'export.mbox'}#{n}" for n in (1, 2, 3)]


def test_malformed_real_mail_is_reported_and_the_run_goes_on() -> None:
    out = lines(classify("--json", "tests/corpora/mail-parser", "tests/corpora/mikel-mail"))
    assert len(out) > 100
    assert all(set(o) >= FIELDS for o in out)


def test_phishing_is_never_called_genuine_amazon_mail() -> None:
    out = lines(classify("--json", "tests/corpora/phishing-pot-amazon"))
    assert len(out) == 250
    assert not any(o["amazon"] for o in out)


def test_the_table_is_readable(tmp_path: Path) -> None:
    (tmp_path / "claim.eml").write_bytes(claim_mail())
    result = classify(str(tmp_path))
    assert result.returncode == 0, result.stderr
    header, row = result.stdout.splitlines()
    assert header.split()[:3] == ["SEVERITY", "TYPE", "CONF"]
    assert row.split()[:2] == ["critical", "claim"]
    assert "113-7781204-5530618" in row


def test_the_table_says_possibly_critical_as_alerts_do() -> None:
    unsure = Verdict("inventory", "high", 0.87, amazon=True, possibly_critical=True)
    row = table_row(Source("notice.eml", claim_mail()), parse(claim_mail()), unsure)
    assert row.split()[:2] == ["high", "inventory"]
    assert "possibly critical: A-to-z Guarantee claim filed" in row
    sure = table_row(Source("notice.eml", claim_mail()), parse(claim_mail()),
                     Verdict("inventory", "high", 0.97, amazon=True))
    assert "possibly critical" not in sure


def test_a_missing_path_is_bad_usage(tmp_path: Path) -> None:
    result = classify(str(tmp_path / "nope.eml"))
    assert result.returncode == 2
    assert "no such file or folder" in result.stderr
