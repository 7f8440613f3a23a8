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
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from triage.message import Message, parse
from triage.pipeline import Prediction, Predictor

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
    """Decodes in this process."""

    def __init__(self, classifier: Predictor) -> None:
        self.classifier = classifier

    def decode(self, raws: Sequence[bytes]) -> list[Decoded]:
        messages = [parse(raw) for raw in raws]
        readable = [m for m in messages if not m.error]
        predictions = iter(self.classifier.predict(readable) if readable else [])
        return [Decoded(m, None if m.error else next(predictions)) for m in messages]

    def close(self) -> None:
        """Nothing to release here."""


class ParallelDecoder(Decoder):
    """Sends a share of every large batch to one worker process.

    The worker is started with ``spawn`` (never ``fork`` from a threaded daemon) and
    loads the model from ``model_dir`` once.
    """

    def __init__(self, classifier: Predictor, model_dir: Path) -> None:
        super().__init__(classifier)
        self.pool = ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
            initargs=(str(model_dir),),
        )

    def decode(self, raws: Sequence[bytes]) -> list[Decoded]:
        if len(raws) < MIN_PARALLEL_BATCH:
            return super().decode(raws)
        split = int(len(raws) * WORKER_SHARE)
        theirs = self.pool.submit(_decode_in_worker, list(raws[:split]))
        mine = super().decode(raws[split:])
        return self._collect(theirs, raws[:split]) + mine

    def _collect(self, future: Future[list[Decoded]], raws: Sequence[bytes]) -> list[Decoded]:
        try:
            return future.result()
        except Exception as exc:  # a dead or broken worker: decode its half here instead
            log.warning("the decoding worker failed (%s); decoding in this process", exc)
            return super().decode(raws)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


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
