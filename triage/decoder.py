"""Raw mail to parsed messages and the model's predictions, on one core or two.

Parsing and predicting are the costly part of a sync. A large batch (a first-start
backfill, a resync) is split: a worker process with its own copy of the model decodes
one part while this process decodes the rest, so a two-core machine uses both. The
seller's rules and the trust check still run here, so a live rules reload reaches every
message. A worker that dies is replaced by decoding here; nothing is lost.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
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
        screened = [screen(raw) for raw in raws]
        messages = [parse(raw) if s is None else s
                    for s, raw in zip(screened, raws, strict=True)]
        asked = [m for m, s in zip(messages, screened, strict=True) if s is None and not m.error]
        predictions = iter(self.classifier.predict(asked) if asked else [])
        return [
            Decoded(m, None if m.error else SETTLED if s is not None else next(predictions))
            for m, s in zip(messages, screened, strict=True)
        ]

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

    def __init__(self, classifier: Predictor, model_dir: Path) -> None:
        super().__init__(classifier)
        self.model_dir = model_dir
        self.pool: ProcessPoolExecutor | None = None
        # Accounts sync in threads of their own: one that is done must not stop the
        # worker under another's batch.
        self._lock = threading.Lock()
        self._busy = 0

    def decode(self, raws: Sequence[bytes]) -> list[Decoded]:
        if len(raws) < MIN_PARALLEL_BATCH:
            return super().decode(raws)
        split = int(len(raws) * WORKER_SHARE)
        with self._lock:
            self._busy += 1
            theirs = self._worker().submit(_decode_in_worker, list(raws[:split]))
        try:
            mine = super().decode(raws[split:])
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
                initargs=(str(self.model_dir),),
            )
        return self.pool

    def _collect(self, future: Future[list[Decoded]], raws: Sequence[bytes]) -> list[Decoded]:
        try:
            return future.result()
        except Exception as exc:  # a dead or broken worker: decode its half here instead
            log.warning("the decoding worker failed (%s); decoding in this process", exc)
            return super().decode(raws)

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


def build_decoder(classifier: Predictor, model_dir: Path, workers: int) -> Decoder:
    """A parallel decoder when a worker is wanted and a second core is there to run it."""
    if workers > 0 and (os.cpu_count() or 1) > 1:
        return ParallelDecoder(classifier, model_dir)
    return Decoder(classifier)


# -- in the worker process ------------------------------------------------------------------

_worker: Decoder | None = None


def _start_worker(model_dir: str) -> None:
    from triage.model import Classifier

    global _worker
    _worker = Decoder(Classifier.load(Path(model_dir)))


def _decode_in_worker(raws: list[bytes]) -> list[Decoded]:
    assert _worker is not None, "the worker's initializer did not run"
    return _worker.decode(raws)
