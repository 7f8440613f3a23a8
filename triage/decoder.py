"""Raw mail to parsed messages and the model's predictions, on one core or two.

Parsing and predicting are the costly part of a sync. A large batch (a first-start
backfill, a resync) is split: a worker process with its own copy of the model decodes
one part while this process decodes the rest, so a two-core machine uses both. The
seller's rules and the trust check still run here, so a live rules reload reaches every
message. A worker that dies is replaced by decoding here; nothing is lost.

The worker dies with the daemon: it watches its parent and exits within a second of
losing it (a ``kill -9`` of the daemon must not leave a worker holding a model's worth
of memory). Its pid is kept in the state folder, so a worker left over by an older
daemon is ended when the next one starts.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from triage.message import Message, parse
from triage.pipeline import Prediction, Predictor
from triage.screen import SETTLED, screen

log = logging.getLogger(__name__)

# Below this many messages the round trip to the worker costs more than it saves.
MIN_PARALLEL_BATCH = 64
# How often the worker checks that the daemon that started it is still there.
PARENT_POLL_SECONDS = 1.0
WORKER_PID_FILE = "decoder-worker.pid"
# The worker's share of a batch. This process also fetches, applies the rules and
# commits, yet a larger share (0.6) measured no faster in bench_imap.
WORKER_SHARE = 0.5


@dataclass(frozen=True)
class Decoded:
    """One message as parsed, with the model's prediction (None when unreadable)."""

    message: Message
    prediction: Prediction | None


class Decoder:
    """Decodes in this process.

    Mail its headers settle (:mod:`triage.screen`) is neither parsed in full nor shown
    to the model: its prediction is :data:`triage.screen.SETTLED`.
    """

    def __init__(self, classifier: Predictor) -> None:
        self.classifier = classifier

    def decode(self, raws: Sequence[bytes]) -> list[Decoded]:
        """Screened first; what the screen does not settle is read in full."""
        screened = [screen(raw) for raw in raws]
        unsettled = [raw for s, raw in zip(screened, raws, strict=True) if s is None]
        read = iter(self.read(unsettled) if unsettled else [])
        return [Decoded(s, SETTLED) if s is not None else next(read) for s in screened]

    def read(self, raws: Sequence[bytes]) -> list[Decoded]:
        """Parsed in full and shown to the model, unscreened (the caller screened them)."""
        messages = [parse(raw) for raw in raws]
        asked = [m for m in messages if not m.error]
        predictions = iter(self.classifier.predict(asked) if asked else [])
        return [Decoded(m, None if m.error else next(predictions)) for m in messages]

    def rest(self) -> None:
        """The backlog is done: release what only a backlog needs (nothing here)."""

    def close(self) -> None:
        """Nothing to release here."""


class ParallelDecoder(Decoder):
    """Sends a share of every large batch to one worker process, while a backlog lasts.

    The worker is started with ``spawn`` (never ``fork`` from a threaded daemon) on the
    first large batch, loads the model from ``model_dir`` once, and is shut down by
    :meth:`rest` when the backlog is done: a daemon that watches holds no second copy
    of the model while it waits for mail.
    """

    def __init__(
        self, classifier: Predictor, model_dir: Path, state_dir: Path | None = None
    ) -> None:
        super().__init__(classifier)
        self.model_dir = model_dir
        self.pid_file = state_dir / WORKER_PID_FILE if state_dir is not None else None
        if self.pid_file is not None:
            reap_stale_worker(self.pid_file)
        self.pool: ProcessPoolExecutor | None = None
        # Accounts sync in threads of their own: one that is done must not stop the
        # worker under another's batch.
        self._lock = threading.Lock()
        self._busy = 0

    def read(self, raws: Sequence[bytes]) -> list[Decoded]:
        if len(raws) < MIN_PARALLEL_BATCH:
            return super().read(raws)
        split = int(len(raws) * WORKER_SHARE)
        with self._lock:
            self._busy += 1
            theirs = self._worker().submit(_read_in_worker, list(raws[:split]))
        try:
            mine = super().read(raws[split:])
            return self._collect(theirs, raws[:split]) + mine
        finally:
            with self._lock:
                self._busy -= 1

    def _worker(self) -> ProcessPoolExecutor:
        if self.pool is None:
            self.pool = ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_worker,
                initargs=(str(self.model_dir), os.getpid(), str(self.pid_file or "")),
            )
        return self.pool

    def _collect(self, future: Future[list[Decoded]], raws: Sequence[bytes]) -> list[Decoded]:
        try:
            return future.result()
        except Exception as exc:  # a dead or broken worker: decode its half here instead
            log.warning("the decoding worker failed (%s); decoding in this process", exc)
            return super().read(raws)

    def rest(self) -> None:
        """Stop the worker unless another account's batch is using it."""
        with self._lock:
            if self.pool is None or self._busy:
                return
            pool, self.pool = self.pool, None
        pool.shutdown(wait=False, cancel_futures=True)
        log.debug("no backlog: the decoding worker is stopped")

    def close(self) -> None:
        with self._lock:
            pool, self.pool = self.pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


def build_decoder(
    classifier: Predictor, model_dir: Path, workers: int, state_dir: Path | None = None
) -> Decoder:
    """A parallel decoder when a worker is wanted and a second core is there to run it."""
    if workers > 0 and (os.cpu_count() or 1) > 1:
        return ParallelDecoder(classifier, model_dir, state_dir)
    return Decoder(classifier)


def reap_stale_worker(pid_file: Path) -> bool:
    """End the worker a previous daemon left behind; True if one was ended."""
    try:
        pid = int(pid_file.read_text(encoding="ascii").strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return False
    # Only a multiprocessing child of Python: the pid may have been reused since.
    if pid == os.getpid() or b"multiprocessing" not in cmdline:
        return False
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        return False
    log.info("ended decoding worker %d left by an earlier run", pid)
    return True


# -- in the worker process ------------------------------------------------------------------

_worker: Decoder | None = None


def _start_worker(model_dir: str, parent: int, pid_file: str) -> None:
    from triage.model import Classifier

    global _worker
    threading.Thread(target=_exit_with, args=(parent,), name="parent-watch", daemon=True).start()
    if pid_file:
        try:
            Path(pid_file).write_text(str(os.getpid()), encoding="ascii")
        except OSError as exc:
            log.warning("cannot record the decoding worker's pid: %s", exc.strerror)
    _worker = Decoder(Classifier.load(Path(model_dir)))


def _exit_with(parent: int) -> None:
    """Exit as soon as the daemon is gone (we are then re-parented)."""
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_SECONDS)
    os._exit(0)


def _read_in_worker(raws: list[bytes]) -> list[Decoded]:
    assert _worker is not None, "the worker's initializer did not run"
    return _worker.read(raws)
