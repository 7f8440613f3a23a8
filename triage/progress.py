"""Progress of long work: a bar on a terminal, plain log lines everywhere else.

A first-start backfill, classifying a folder of mail and training take minutes. On a
terminal the seller sees a bar (tqdm) with the count, the rate and the time left; in a
container log, a file or a pipe, where a bar is noise, a log line says how far the work
is every ``every`` seconds, and one more says when it is done. Use::

    with progress.track("INBOX: backfill", total=len(uids)) as bar:
        for batch in batches:
            ...
            bar.advance(len(batch))
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

log = logging.getLogger("triage.progress")

EVERY_SECONDS = 10.0


class Progress:
    """Counts work done and shows it: a bar when ``stream`` is a terminal, else log lines."""

    def __init__(
        self,
        what: str,
        total: int | None = None,
        *,
        unit: str = "mail",
        stream: TextIO | None = None,
        every: float = EVERY_SECONDS,
        clock: Any = time.monotonic,
    ) -> None:
        self.what = what
        self.total = total
        self.unit = unit
        self.done = 0
        self.every = every
        self.clock = clock
        self.started = self.last = clock()
        stream = stream if stream is not None else sys.stderr
        self._bar: Any = None
        if _is_terminal(stream):
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=what, unit=f" {unit}", file=stream,
                             leave=False, dynamic_ncols=True)

    def advance(self, count: int = 1) -> None:
        self.done += count
        if self._bar is not None:
            self._bar.update(count)
            return
        now = self.clock()
        if now - self.last >= self.every:
            self.last = now
            log.info("%s: %s", self.what, self.describe(now))

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        log.info("%s: done, %s", self.what, self.describe(self.clock()))

    def describe(self, now: float) -> str:
        """``1,200 of 10,000 mail (800/s)``; slow work by its time: ``2 of 3 step (31 s)``."""
        seconds = max(now - self.started, 1e-9)
        of = f" of {self.total:,}" if self.total is not None else ""
        rate = self.done / seconds
        pace = f"{rate:,.0f}/s" if rate >= 1 else f"{seconds:,.0f} s"
        return f"{self.done:,}{of} {self.unit} ({pace})"


@contextmanager
def track(what: str, total: int | None = None, **options: Any) -> Iterator[Progress]:
    """A :class:`Progress` closed at the end of the ``with``, however it ends."""
    shown = Progress(what, total, **options)
    try:
        yield shown
    finally:
        shown.close()


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed, or not a real file
        return False
