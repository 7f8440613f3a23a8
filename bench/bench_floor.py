"""The floor: the least any Python client on triage's libraries does to triage a mailbox.

Usage: ``python bench/bench_floor.py [--count 10000] [--label 1] [--before CHECKOUT]``

On the mailbox of ``bench_backfill.py`` (``sellermail.py``, in a Dovecot started as the
tests start it), in one run:

1. raw imapclient FETCH of the whole INBOX, imaplib's tracing off: the ceiling
   (:func:`bench_backfill.raw_fetch`), measured before and after the rest (the higher
   of the two is the ceiling the ratios are taken to);
2. the floor, as a subprocess timed from process start to exit: import imapclient,
   ``triage.message`` and ``triage.model`` and load the shipped model; log in, select
   and search; fetch every mail (tracing off, batches of 500); one pass of one compiled
   bytes regex per mail for Amazon's marks (a lower bound on any screen: every mail it
   does not send on is taken as settled); ``triage.message.parse`` and the model's
   prediction, batched, of the mail it sends on. Nothing else: no state, rules, trust
   or alerts. Four variants: the whole of every mail (``BODY.PEEK[]``) or its opening
   first and the rest of only the mail sent on (as triage reads), on one core, or on
   two (parse and predict in a second process, which starts and loads the model while
   the first logs in and fetches);
3. the real ``triage run --once`` on the same mailbox (:func:`bench_backfill.backfill`),
   and with ``--before`` the same from another checkout first (``git archive`` of an
   earlier commit, unpacked): before and after in the same run.

Each floor reports its wall and CPU seconds and its parts (start-up with the imports
and the model, log-in, fetch, regex, parse, predict). Prints a table and writes
``bench/results/floor-<label>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

# Batches of the raw ceiling; the opening triage's screen reads; triage's size cap.
BATCH = 500
OPENING = 8192
CAP = 256 * 1024
# Amazon's marks, as screen.AMAZON_MARKS, in any case: the least a screen looks for.
# Searched with RE2 (a dependency of triage): 24 us for a mail of 15 KB, against 560 us
# for Python's re with IGNORECASE, 130 us for lower() and re, 60 us for lower() and `in`.
MARKS = rb"amaz|amzn|sellercentral|prime|atoz|azguarant"
# (what is fetched, what a second process does)
VARIANTS = (("whole", "one core"), ("openings", "one core"), ("openings", "parse+predict"),
            ("openings", "parse"))


# -- the floor, in its own process ------------------------------------------------------------


class Clock:
    """Wall and CPU seconds spent per part of the work."""

    def __init__(self) -> None:
        self.parts: dict[str, list[float]] = {}
        self._wall = time.monotonic()
        self._cpu = time.process_time()

    def lap(self, part: str) -> None:
        """Charge the time since the last lap to ``part``."""
        wall, cpu = time.monotonic(), time.process_time()
        spent = self.parts.setdefault(part, [0.0, 0.0])
        spent[0] += wall - self._wall
        spent[1] += cpu - self._cpu
        self._wall, self._cpu = wall, cpu

    def report(self) -> dict[str, dict[str, float]]:
        return {part: {"wall_s": round(wall, 3), "cpu_s": round(cpu, 3)}
                for part, (wall, cpu) in self.parts.items()}


def start_clock() -> Clock:
    """A clock whose first lap runs from process start (the parent's ``FLOOR_T0``)."""
    clock = Clock()
    clock._wall = float(os.environ["FLOOR_T0"])
    clock._cpu = 0.0  # process_time() counts from process start
    return clock


def second_main(inbox: Any, outbox: Any, t0: float, plan: str) -> None:
    """The second process: parse (and with ``plan`` "parse+predict" predict) each batch
    the first one sends, until None; then send back the predicted types or the messages."""
    os.environ["FLOOR_T0"] = str(t0)
    clock = start_clock()
    from triage.message import parse

    classifier = None
    if plan == "parse+predict":
        from triage.model import Classifier

        classifier = Classifier.load()
    clock.lap("start-up (imports, model)")
    kinds: dict[str, int] = {}
    parsed: list[Any] = []
    while True:
        raws = inbox.get()
        clock.lap("waiting for mail")
        if raws is None:
            break
        if classifier is not None:
            decode(raws, classifier, parse, clock, kinds)
        else:
            parsed += [parse(raw) for raw in raws]
            clock.lap("parse")
    outbox.send((kinds, parsed))
    clock.lap("sending back")
    outbox.send(clock.report())


def decode(raws: list[bytes], classifier: Any, parse: Any, clock: Clock,
           kinds: dict[str, int]) -> None:
    predict(classifier, [parse(raw) for raw in raws], clock, kinds, "parse")


def predict(classifier: Any, messages: list[Any], clock: Clock, kinds: dict[str, int],
            lap: str | None = None) -> None:
    if lap:
        clock.lap(lap)
    readable = [m for m in messages if not m.error]
    for prediction in classifier.predict(readable):
        kinds[prediction.type] = kinds.get(prediction.type, 0) + 1
    clock.lap("predict")


def body(data: dict[bytes, Any]) -> bytes:
    """The message bytes of one FETCH answer (imapclient adds its sequence number)."""
    return next((bytes(v) for k, v in data.items() if k.startswith(b"BODY[") and v), b"")


def floor_main(fetch: str, plan: str) -> None:
    """The floor itself (run as ``bench_floor.py --child FETCH PLAN``); JSON on stdout.

    ``plan`` says what a second process does: nothing ("one core"), parse and predict
    ("parse+predict"), or parse while this one loads the model and then predicts
    ("parse").
    """
    clock = start_clock()
    import re2
    from imapclient import IMAPClient

    second = None
    classifier = parse = None
    if plan != "one core":
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        # A queue, not a pipe: its own thread feeds the second process, so fetching
        # never waits for it to take a batch.
        to_second = context.Queue()
        their_outbox, from_second = context.Pipe()
        second = context.Process(target=second_main,
                                 args=(to_second, their_outbox, time.monotonic(), plan))
        second.start()
    if plan == "one core":
        from triage.message import parse  # type: ignore[assignment]
        from triage.model import Classifier

        classifier = Classifier.load()
    marks = re2.compile(b"(?i)" + MARKS)
    clock.lap("start-up (imports, model)")

    client = IMAPClient(os.environ["FLOOR_HOST"], port=int(os.environ["FLOOR_PORT"]), ssl=False)
    client._imap.debug = 0  # imaplib's tracing, as triage turns it off
    client.login(os.environ["FLOOR_USER"], os.environ["FLOOR_PASSWORD"])
    client.select_folder("INBOX", readonly=True)
    uids = sorted(client.search("ALL"))
    clock.lap("log in, select, search")

    sent = 0
    kinds: dict[str, int] = {}
    item = "BODY.PEEK[]" if fetch == "whole" else f"BODY.PEEK[]<0.{OPENING}>"
    for i in range(0, len(uids), BATCH):
        response = client.fetch(uids[i : i + BATCH], [item])
        clock.lap("fetch")
        bodies = {uid: body(v) for uid, v in response.items()}
        on = [uid for uid, raw in bodies.items() if marks.search(raw)]
        clock.lap("regex")
        sent += len(on)
        if fetch != "whole":
            # The opening was all of a mail shorter than it; the rest of the others.
            longer = [uid for uid in on if len(bodies[uid]) == OPENING]
            if longer:
                rest = client.fetch(longer, [f"BODY.PEEK[]<{OPENING}.{CAP - OPENING}>"])
                for uid, value in rest.items():
                    bodies[uid] += body(value)
            clock.lap("fetch")
        raws = [bodies[uid] for uid in on]
        if second is not None:
            to_second.put(raws)
            clock.lap("fetch")  # handing the batch over
        elif raws:
            decode(raws, classifier, parse, clock, kinds)
    client.logout()
    clock.lap("log in, select, search")
    figures: dict[str, Any] = {"fetched": len(uids), "sent_on": sent}
    if second is not None:
        to_second.put(None)
        if plan == "parse":
            from triage.model import Classifier

            classifier = Classifier.load()
            clock.lap("start-up (imports, model)")
        kinds, parsed = from_second.recv()
        clock.lap("waiting for the second process")
        if parsed:
            predict(classifier, parsed, clock, kinds)
        figures["second_process"] = from_second.recv()
        second.join()
        clock.lap("waiting for the second process")
    figures |= {"kinds": kinds, "parts": clock.report()}
    print(json.dumps(figures))


# -- the run ----------------------------------------------------------------------------------


def floor(bb: Any, account: Any, fetch: str, plan: str) -> dict[str, Any]:
    """One floor run as a subprocess: wall and CPU from process start, and its own parts."""
    import subprocess

    env = {**os.environ, "FLOOR_HOST": account.host, "FLOOR_PORT": str(account.port),
           "FLOOR_USER": account.user, "FLOOR_PASSWORD": account.password,
           "PYTHONPATH": str(bb.ROOT), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1"}
    cpu = bb.children_cpu()
    env["FLOOR_T0"] = str(time.monotonic())
    start = time.perf_counter()
    done = subprocess.run([sys.executable, __file__, "--child", fetch, plan], env=env,
                          capture_output=True, text=True, cwd=bb.ROOT)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"the floor ({fetch}, {plan}) failed:\n{done.stderr[-3000:]}")
    return {"fetch": fetch, "second_process_does": plan, "seconds": round(seconds, 3),
            "cpu_s": round(bb.children_cpu() - cpu, 3), **json.loads(done.stdout)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10000)
    parser.add_argument("--label", default="1")
    parser.add_argument("--before", type=Path, metavar="CHECKOUT",
                        help="also time triage run --once from this checkout (another commit)")
    parser.add_argument("--before-name", default="",
                        help="what --before is, for the figures (e.g. 'main at 37d435b9')")
    parser.add_argument("--child", nargs=2, metavar=("FETCH", "PLAN"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        floor_main(*args.child)
        return

    import platform
    import shutil
    import tempfile

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_backfill as bb

    load = os.getloadavg()
    server = bb.dovecot.DovecotServer()
    server.start()
    tmp = Path(tempfile.mkdtemp(prefix="triage-bench-"))
    try:
        account, kinds, sizes = bb.fill(server, args.count)
        ceilings = [bb.raw_fetch(account)]
        floors = [floor(bb, account, fetch, plan) for fetch, plan in VARIANTS]
        before = bb.backfill(account, tmp / "before", args.before) if args.before else None
        run = bb.backfill(account, tmp / "state")
        ceilings.append(bb.raw_fetch(account))
    finally:
        server.destroy()
        shutil.rmtree(tmp, ignore_errors=True)

    ceiling = max(n / s for n, s, _ in ceilings)
    rate = args.count / run["seconds"]
    figures: dict[str, Any] = {
        "label": args.label,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, "
                   f"Python {platform.python_version()}",
        "load_average_before": [round(x, 2) for x in load],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "mail": {"count": args.count, "mean_kb": round(sizes / args.count / 1024, 1),
                 "kinds": kinds},
        "ceiling": {"msgs_per_s": round(ceiling),
                    "runs_msgs_per_s": [round(n / s) for n, s, _ in ceilings]},
        "floors": [{**f, "msgs_per_s": round(args.count / f["seconds"]),
                    "ratio_to_ceiling": round(args.count / f["seconds"] / ceiling, 3)}
                   for f in floors],
        "triage_run_once": {"msgs_per_s": round(rate), "seconds": round(run["seconds"], 3),
                            "cpu_s": round(run["cpu_s"], 2),
                            "ratio_to_ceiling": round(rate / ceiling, 3)},
    }
    if before is not None:
        rate = args.count / before["seconds"]
        figures["triage_run_once_before"] = {
            "checkout": args.before_name or str(args.before), "msgs_per_s": round(rate),
            "seconds": round(before["seconds"], 3), "cpu_s": round(before["cpu_s"], 2),
            "ratio_to_ceiling": round(rate / ceiling, 3)}
    bb.RESULTS.mkdir(exist_ok=True)
    path = bb.RESULTS / f"floor-{args.label}.json"
    path.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    print(f"ceiling {ceiling:,.0f} msgs/s; load {load[0]:.2f}")
    for f in figures["floors"]:
        print(f"floor {f['fetch']:<8} {f['second_process_does']:<13}: {f['msgs_per_s']:>6,} msgs/s "
              f"{f['seconds']:.2f} s, {f['cpu_s']:.2f} s CPU, ratio {f['ratio_to_ceiling']:.3f}, "
              f"sent on {f['sent_on']}")
    for key in ("triage_run_once_before", "triage_run_once"):
        if key in figures:
            t = figures[key]
            print(f"{key:<29}: {t['msgs_per_s']:>6,} msgs/s {t['seconds']:.2f} s, "
                  f"{t['cpu_s']:.2f} s CPU, ratio {t['ratio_to_ceiling']:.3f}")
    print(f"written to {path.relative_to(bb.ROOT)}")


if __name__ == "__main__":
    main()
