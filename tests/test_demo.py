"""The embedded default: one command shows a newcomer what triage does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_triage(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIAGE_")}
    env["TRIAGE_STATE_DIR"] = str(tmp_path / "state")
    return subprocess.run(
        [sys.executable, "-m", "triage.cli", *args],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120, check=False,
    )


def section(text: str, heading: str) -> str:
    """The lines under ``== heading`` up to the next heading."""
    return text.split(f"\n== {heading}")[1].split("\n== ")[0]


@pytest.fixture(scope="module")
def demo_output(tmp_path_factory: pytest.TempPathFactory) -> str:
    result = run_triage("demo", tmp_path=tmp_path_factory.mktemp("demo"))
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_demo_prints_sections_most_urgent_first(demo_output: str) -> None:
    headings = ["== Critical", "== High", "== Low", "== Rescued from spam",
                "== Suspected phishing", "== Open buyer messages"]
    positions = [demo_output.index(h) for h in headings]
    assert positions == sorted(positions)


def test_demo_rescues_genuine_mail_and_leaves_phishing(demo_output: str) -> None:
    rescued = section(demo_output, "Rescued from spam")
    phishing = section(demo_output, "Suspected phishing")
    assert "Chargeback claim" in rescued
    assert "amazon-sellercentral-verify.com" in phishing
    assert "amazon-sellercentral-verify.com" not in rescued
    assert "Junk 4 (phishing stays there)" in demo_output


def test_demo_calls_the_claims_critical(demo_output: str) -> None:
    critical = section(demo_output, "Critical")
    assert "A-to-z Guarantee claim" in critical
    assert "respond by" in critical


def test_demo_does_not_touch_the_state_dir(tmp_path: Path) -> None:
    result = run_triage("demo", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "state").exists()
