"""Long work shows its progress: a bar on a terminal, plain log lines elsewhere."""

from __future__ import annotations

import fcntl
import io
import logging
import os
import pty
import select
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from triage import progress

CORPORA = Path(__file__).resolve().parent / "corpora"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_without_a_terminal_a_log_line_tells_how_far_every_few_seconds(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    caplog.set_level(logging.INFO, logger="triage.progress")
    with progress.track("INBOX: backfill", total=1000, stream=io.StringIO(), every=10,
                        clock=clock) as shown:
        for _ in range(10):
            clock.now += 4
            shown.advance(100)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "INBOX: backfill: 300 of 1,000 mail (25/s)"
    assert len(lines) == 4  # at 12 s, 24 s and 36 s, then the end
    assert lines[-1] == "INBOX: backfill: done, 1,000 of 1,000 mail (25/s)"


def test_slow_steps_are_told_by_their_time_not_a_rate_of_zero(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    caplog.set_level(logging.INFO, logger="triage.progress")
    with progress.track("learn", total=3, unit="step", stream=io.StringIO(), every=10,
                        clock=clock) as shown:
        for _ in range(3):
            clock.now += 12
            shown.advance()
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "learn: 1 of 3 step (12 s)"
    assert lines[-1] == "learn: done, 3 of 3 step (36 s)"


def test_on_a_terminal_a_bar_shows_count_and_total() -> None:
    main, side = pty.openpty()
    # A terminal 80 columns wide (a fresh pseudo-terminal has none, and no bar fits).
    fcntl.ioctl(side, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    try:
        with os.fdopen(side, "w", closefd=False) as terminal:
            with progress.track("INBOX: backfill", total=400, stream=terminal) as shown:
                for _ in range(4):
                    shown.advance(100)
            terminal.flush()
        ready, _, _ = select.select([main], [], [], 5)
        drawn = os.read(main, 65536).decode("utf-8", "replace") if ready else ""
    finally:
        os.close(main)
        os.close(side)
    assert "INBOX: backfill" in drawn
    assert "0/400" in drawn and "mail/s" in drawn


def test_classify_of_many_files_into_a_file_logs_its_progress(tmp_path: Path) -> None:
    out = tmp_path / "verdicts.jsonl"
    with out.open("w") as stdout:
        result = subprocess.run(
            [sys.executable, "-m", "triage.cli", "classify", "--json",
             str(CORPORA / "package-notices")],
            stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=300,
            env={k: v for k, v in os.environ.items() if not k.startswith("TRIAGE_")},
        )
    assert result.returncode == 0, result.stderr
    count = len(out.read_text().splitlines())
    assert count == len(list((CORPORA / "package-notices").glob("*.eml")))
    assert f"classify: done, {count:,} mail" in result.stderr


def test_train_into_a_pipe_logs_its_steps_without_a_bar(tmp_path: Path) -> None:
    from test_model import write_tiny_corpus

    root = write_tiny_corpus(tmp_path / "corpus")
    result = subprocess.run(
        [sys.executable, "-m", "triage.cli", "train", "--corpus", str(root), "--out",
         str(tmp_path / "model"), "--folds", "2", "--render"],
        capture_output=True, text=True, timeout=300,
        env={k: v for k, v in os.environ.items() if not k.startswith("TRIAGE_")},
    )
    assert result.returncode == 0, result.stderr
    # Reading the mail, two folds, the final fit.
    assert "train: done, 4 of 4 step" in result.stderr
    assert "\r" not in result.stderr  # a bar redraws its line; a log does not
    assert (tmp_path / "model" / "metadata.json").exists()
