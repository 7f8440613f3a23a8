"""IMAP throughput and latency against a real Dovecot, started as the tests start it.

Usage: ``python bench/bench_imap.py [--count 10000] [--latency 50]``

1. APPENDs ``--count`` messages of 5-20 KB to a fresh account's INBOX: realistic
   seller mail rendered in memory from the corpus families (``models/corpus/families``),
   each with its own Message-ID, dated over the last 20 days.
2. Raw imapclient ``UID FETCH BODY.PEEK[]`` of all of them (msgs/s): the ceiling.
3. triage's backfill end to end on first start: fetch, parse, classify, rules, state
   (msgs/s), with RSS sampled from ``/proc/self/status`` throughout.
4. APPEND-to-verdict latency while the daemon IDLEs: ``--latency`` messages appended
   one at a time, each timed until its row is in the state database (p50, p99).

Prints a table and writes ``bench/results/imap.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import random
import re
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

import bench_backfill  # noqa: E402
import dovecot  # noqa: E402

from triage import corpus  # noqa: E402
from triage.daemon import Daemon, Timing  # noqa: E402
from triage.decoder import MIN_PARALLEL_BATCH, Decoder, build_decoder  # noqa: E402
from triage.mailbox import Mailbox  # noqa: E402
from triage.model import Classifier  # noqa: E402
from triage.pipeline import Pipeline  # noqa: E402
from triage.rules import load_rules  # noqa: E402
from triage.settings import (  # noqa: E402
    NotifySettings,
    Settings,
    default_model_dir,
)
from triage.state import Database  # noqa: E402
from triage.sync import Syncer, default_notifier  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "imap.json"
FOOTER = (
    b"<p style='font-size:10px;color:#666'>This email was sent by Amazon Services Europe S.a r.l. "
    b"Please note that this message was sent to the following e-mail address. Amazon takes your "
    b"privacy seriously; to learn more, read our Privacy Notice. Was this email helpful? "
    b"Seller Central | Help | Settings | Notification preferences.</p>\r\n"
)
MESSAGE_ID = re.compile(rb"^Message-ID:[^\r\n]*\r?\n", re.IGNORECASE | re.MULTILINE)


# -- the mail ------------------------------------------------------------------------------


def rendered() -> Iterator[bytes]:
    """The corpus families rendered in memory, round after round (nothing is written)."""
    families = corpus.load_families(corpus.default_corpus_dir())
    if not families:
        sys.exit("no corpus families under models/corpus/families")
    while True:
        for family in families:
            yield from corpus.render_family(family)


def realistic(raw: bytes, n: int, rnd: random.Random) -> bytes:
    """Its own Message-ID, padded with footer text to a size between 5 and 20 KB."""
    raw = MESSAGE_ID.sub(b"", raw, count=1)
    raw = f"Message-ID: <bench-{n}@triage.invalid>\r\n".encode() + raw
    target = rnd.randint(5 * 1024, 20 * 1024)
    while len(raw) < target:
        raw += FOOTER
    return raw


def messages(count: int) -> list[bytes]:
    rnd = random.Random(7)
    source = rendered()
    return [realistic(next(source), n, rnd) for n in range(count)]


# -- measuring -----------------------------------------------------------------------------


def rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class RssSampler:
    """VmRSS every 50 ms in a thread, while inside ``with``."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._done.wait(0.05):
            self.samples.append(rss_mb())

    def __enter__(self) -> RssSampler:
        self.samples.append(rss_mb())
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()
        self.samples.append(rss_mb())


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


# -- the steps -------------------------------------------------------------------------------


def append_all(account: dovecot.Account, raws: list[bytes]) -> float:
    now = datetime.now(UTC)
    start = time.perf_counter()
    with account.client() as client:
        for n, raw in enumerate(raws):
            when = now - timedelta(minutes=20 * 24 * 60 * n / len(raws))
            client.append("INBOX", raw, msg_time=when)
    return time.perf_counter() - start


def raw_fetch(account: dovecot.Account) -> tuple[int, float, int]:
    # imapclient as it comes (imaplib's tracing on), as this bench's recorded figures were
    # taken; bench_backfill.py measures the ceiling with it off beside it.
    return bench_backfill.raw_fetch(account, tracing=True)


STAGE_NAMES = {"fetched": "fetch+parse", "decided": "classify+rules", "acted": "act",
               "committed": "commit+notify"}


class StageClock:
    """Time spent in each stage of every batch, from the sync's stage hook."""

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(STAGE_NAMES.values(), 0.0)
        self.last = time.perf_counter()

    def __call__(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[STAGE_NAMES[stage]] += now - self.last
        self.last = now


def backfill(
    account: dovecot.Account, pipeline: Pipeline, db: Database, decoder: Decoder
) -> tuple[int, float, RssSampler, StageClock]:
    imap = account.imap_settings()
    with Mailbox(imap) as mailbox:
        inbox = next(f for f in mailbox.watched() if f.role == "inbox")
        stages = StageClock()
        syncer = Syncer(db, mailbox, pipeline, imap, notifier=default_notifier(), hook=stages,
                        decoder=decoder)
        with RssSampler() as rss:
            start = stages.last = time.perf_counter()
            report = syncer.sync_folder(inbox)
            seconds = time.perf_counter() - start
    return report.recorded, seconds, rss, stages


def latency(account: dovecot.Account, pipeline: Pipeline, db: Database, count: int) -> list[float]:
    imap = account.imap_settings()
    settings = Settings(imap=imap, notify=NotifySettings(), state_dir=Path(db.path).parent,
                        rules_path=ROOT / "rules.yaml")
    daemon = Daemon(settings, db, pipeline, lambda: Mailbox(imap), notifier=default_notifier(),
                    deliver=None, timing=Timing(poll_seconds=30))
    thread = threading.Thread(target=daemon.run_forever, daemon=True)
    thread.start()
    probe = sqlite3.connect(db.path)
    waits: list[float] = []
    source = rendered()
    rnd = random.Random(11)
    try:
        with account.client() as client:
            time.sleep(1.0)  # let the daemon reach IDLE
            for n in range(count):
                before = probe.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
                raw = realistic(next(source), 10**7 + n, rnd)
                start = time.perf_counter()
                client.append("INBOX", raw)
                while probe.execute("SELECT COUNT(*) FROM messages").fetchone()[0] == before:
                    if time.perf_counter() - start > 30:
                        raise SystemExit(f"message {n} got no verdict within 30 s")
                    time.sleep(0.002)
                waits.append(time.perf_counter() - start)
                time.sleep(rnd.uniform(0.05, 0.2))
    finally:
        daemon.stop()
        thread.join(timeout=15)
        probe.close()
        # The stopped daemon leaves its IDLE connections to die with the server.
        logging.getLogger("triage").setLevel(logging.CRITICAL)
    return waits


# -- the report -------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--latency", type=int, default=50)
    parser.add_argument("--workers", type=int, default=1,
                        help="decoding processes besides this one (the product default is 1)")
    args = parser.parse_args(argv)
    if not dovecot.available():
        sys.exit("dovecot is not installed (apt-get install dovecot-imapd)")

    raws = messages(args.count)
    pipeline = Pipeline(Classifier.load(), load_rules(ROOT / "rules.yaml"), ())
    server = dovecot.DovecotServer()
    server.start()
    state = Path(tempfile.mkdtemp(prefix="triage-bench-"))
    try:
        account = server.new_user()
        append_seconds = append_all(account, raws)
        fetched, fetch_seconds, fetch_bytes = raw_fetch(account)
        db = Database(state / "triage.db")
        decoder = build_decoder(pipeline.classifier, default_model_dir(), args.workers)
        decoder.decode([b"Subject: warm-up\r\n\r\nstarts the worker"] * MIN_PARALLEL_BATCH)
        try:
            recorded, backfill_seconds, rss, stages = backfill(account, pipeline, db, decoder)
        finally:
            decoder.close()
        waits = latency(account, pipeline, db, args.latency)
    finally:
        server.destroy()

    raw_rate = fetched / fetch_seconds
    e2e_rate = recorded / backfill_seconds
    results = {
        "messages": args.count,
        "mean_size_kb": round(sum(map(len, raws)) / len(raws) / 1024, 1),
        "append_msgs_per_s": round(args.count / append_seconds, 1),
        "raw_fetch_msgs_per_s": round(raw_rate, 1),
        "raw_fetch_mb_per_s": round(fetch_bytes / fetch_seconds / 2**20, 1),
        "decode_workers": args.workers,
        "backfill_recorded": recorded,
        "backfill_seconds": round(backfill_seconds, 2),
        "backfill_msgs_per_s": round(e2e_rate, 1),
        "backfill_fraction_of_raw": round(e2e_rate / raw_rate, 3),
        "backfill_ms_per_msg": {
            name: round(1000 * secs / max(recorded, 1), 3) for name, secs in stages.seconds.items()
        },
        "rss_start_mb": round(rss.samples[0], 1),
        "rss_peak_mb": round(max(rss.samples), 1),
        "rss_end_mb": round(rss.samples[-1], 1),
        "rss_growth_mb": round(max(rss.samples) - rss.samples[0], 1),
        "latency_count": len(waits),
        "latency_p50_s": round(percentile(waits, 50), 4),
        "latency_p99_s": round(percentile(waits, 99), 4),
        "latency_max_s": round(max(waits), 4),
        "targets": {"backfill_msgs_per_s": 2000, "fraction_of_raw": 0.2,
                    "rss_growth_mb": 50, "latency_p50_s": 1.0},
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "platform": platform.platform()},
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    width = max(len(k) for k in results)
    for key, value in results.items():
        if key == "backfill_ms_per_msg":
            for name, ms in value.items():  # type: ignore[union-attr]
                print(f"{'  ms/msg ' + name:<{width}}  {ms}")
        elif not isinstance(value, dict):
            print(f"{key:<{width}}  {value}")
    print(f"written to {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
