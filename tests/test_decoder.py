"""Reading in a second process gives exactly what reading here gives."""

from __future__ import annotations

import multiprocessing
import subprocess
import time
from pathlib import Path

import pytest

from triage.decoder import MIN_PARALLEL_BATCH, Decoder, ParallelDecoder, reap_stale_worker
from triage.model import Classifier
from triage.screen import SETTLED
from triage.settings import default_model_dir

CORPUS = Path(__file__).resolve().parent / "corpora"

pytestmark = pytest.mark.skipif(
    not (default_model_dir() / "triage-model.json").exists(), reason="no trained model"
)


@pytest.fixture(scope="module")
def raws() -> list[bytes]:
    files = sorted((CORPUS / "package-notices").glob("*.eml"))
    files += sorted((CORPUS / "mail-parser").glob("mail_*"))
    files += sorted((CORPUS / "phishing-pot-amazon").glob("*.eml"))[:20]
    mails = [f.read_bytes() for f in files] + [b""]  # one unreadable
    assert len(mails) >= MIN_PARALLEL_BATCH
    return mails


def summary(decoded: list) -> list[tuple[str, str, str | None]]:  # type: ignore[type-arg]
    return [
        (d.message.subject, d.message.error,
         d.prediction and f"{d.prediction.type}/{d.prediction.severity}")
        for d in decoded
    ]


def test_a_worker_decodes_the_same_as_this_process(raws: list[bytes]) -> None:
    classifier = Classifier.load()
    here = Decoder(classifier).read(raws)
    parallel = ParallelDecoder(classifier, default_model_dir())
    try:
        assert summary(parallel.read(raws)) == summary(here)
    finally:
        parallel.close()
    assert here[-1].message.error and here[-1].prediction is None


def test_a_dead_worker_is_replaced_by_decoding_here(raws: list[bytes], tmp_path: Path) -> None:
    classifier = Classifier.load()
    # A worker that cannot load its model fails every batch it is given.
    broken = ParallelDecoder(classifier, tmp_path / "no-model-here")
    try:
        assert summary(broken.read(raws)) == summary(Decoder(classifier).read(raws))
    finally:
        broken.close()


def test_decode_screens_first_and_reads_the_rest_in_full(raws: list[bytes]) -> None:
    decoder = Decoder(Classifier.load())
    decoded = decoder.decode(raws)
    settled = [d for d in decoded if d.prediction is SETTLED]
    assert settled and len(settled) < len(raws)
    rest = [r for r, d in zip(raws, decoded, strict=True) if d.prediction is not SETTLED]
    read = decoder.read(rest)
    assert summary(read) == summary([d for d in decoded if d.prediction is not SETTLED])


def test_a_worker_left_by_an_earlier_run_is_ended_and_nothing_else(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    stale = context.Process(target=time.sleep, args=(60,), daemon=True)
    stale.start()
    other = subprocess.Popen(["sleep", "60"])
    try:
        pid_file = tmp_path / "decoder-worker.pid"
        pid_file.write_text(str(other.pid), encoding="ascii")
        assert reap_stale_worker(pid_file) is False  # not a worker: the pid was reused
        assert other.poll() is None
        pid_file.write_text(str(stale.pid), encoding="ascii")
        assert reap_stale_worker(pid_file) is True
        stale.join(timeout=5)
        assert not stale.is_alive()
    finally:
        other.kill()
        other.wait()
        if stale.is_alive():
            stale.kill()


def test_the_worker_lives_only_while_a_backlog_lasts(raws: list[bytes]) -> None:
    others = {p.pid for p in multiprocessing.active_children()}

    def workers() -> list[int]:
        return [p.pid for p in multiprocessing.active_children() if p.pid not in others]

    parallel = ParallelDecoder(Classifier.load(), default_model_dir())
    try:
        assert workers() == []  # nothing started before there is a backlog
        parallel.read(raws)  # the mail its screen left to read in full
        assert len(workers()) == 1
        parallel.rest()  # caught up
        deadline = time.monotonic() + 20
        while workers() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert workers() == []
        # The next backlog starts a new one, and decodes as before.
        assert summary(parallel.read(raws)) == summary(Decoder(Classifier.load()).read(raws))
        assert len(workers()) == 1
    finally:
        parallel.close()
