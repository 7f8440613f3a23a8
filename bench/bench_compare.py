"""The CPU of a backfill's own work in two checkouts, alternately, on the same mail.

Usage: ``python bench/bench_compare.py BEFORE [AFTER] [--count 10000] [--rounds 2]``

On a shared machine the wall and CPU time of a whole ``triage run --once`` move by a
second or more between runs; this compares what the code does, without the server: in
a subprocess per checkout (``PYTHONPATH`` and working folder set to it), the start-up to
the model loaded, then the best of 3 passes over the same mail (``sellermail.py``,
generated once here) of the screen on each mail's opening, the full parse and the model
on the mail the screen does not settle, and the checkout's ``rules.yaml``, trust and
deadlines on all of it. The checkouts take turns, each order as often. ``BEFORE`` and
``AFTER`` are folders holding a checkout (``git archive <commit> | tar -x -C DIR``);
``AFTER`` is this one by default.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Run in the checkout's own code: the figures it prints are JSON on stdout.
CHILD = r"""
import json, pickle, sys, time
from triage.model import Classifier
classifier = Classifier.load()
start_up = time.process_time()
from datetime import UTC, datetime
from pathlib import Path
from triage.deadline import find_deadline
from triage.message import parse
from triage.pipeline import Pipeline
from triage.rules import load_rules
from triage.screen import OPENING_BYTES, SETTLED, screen
with open(sys.argv[1], "rb") as mail:
    raws = pickle.load(mail)
pipeline = Pipeline(classifier, load_rules(Path("rules.yaml")))
now = datetime.now(UTC)
best = {}
for _ in range(3):
    t0 = time.process_time()
    settled = [screen(r[:OPENING_BYTES], len(r), len(r) <= OPENING_BYTES) for r in raws]
    t1 = time.process_time()
    read = [m for m in (parse(r) for r, s in zip(raws, settled) if s is None) if not m.error]
    t2 = time.process_time()
    predictions = classifier.predict(read)
    t3 = time.process_time()
    messages = [s for s in settled if s is not None]
    answers = [SETTLED] * len(messages) + list(predictions)
    messages += read
    verdicts = pipeline.decide(messages, "INBOX", "inbox", predictions=answers)
    for m, v in zip(messages, verdicts):
        find_deadline(m, v, now)
    t4 = time.process_time()
    for part, spent in (("screen", t1 - t0), ("parse", t2 - t1), ("predict", t3 - t2),
                        ("decide, trust, rules, deadlines", t4 - t3), ("all", t4 - t0)):
        best[part] = min(best.get(part, 1e9), round(spent, 3))
print(json.dumps({"start-up to the model loaded": round(start_up, 3), **best,
                  "settled": sum(s is not None for s in settled)}))
"""


def run(checkout: Path, mail: Path) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(checkout), "OMP_NUM_THREADS": "1",
           "OPENBLAS_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", CHILD, str(mail)], cwd=checkout, env=env,
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"{checkout}: {done.stderr[-3000:]}")
    figures: dict[str, float] = json.loads(done.stdout)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path, nargs="?", default=ROOT)
    parser.add_argument("--count", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=2, help="each order this many times")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "bench"))
    import sellermail

    seen: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
    with tempfile.NamedTemporaryFile(prefix="triage-bench-", suffix=".pickle") as mail:
        pickle.dump([raw for _, raw, _ in sellermail.mailbox(args.count)], mail)
        mail.flush()
        pairs = (("before", args.before), ("after", args.after))
        for turn in range(2 * args.rounds):
            for name, checkout in pairs if turn % 2 == 0 else pairs[::-1]:
                seen[name].append(run(checkout, Path(mail.name)))
                print(name, json.dumps(seen[name][-1]), flush=True)
    print(f"load average {os.getloadavg()[0]:.2f}; range over {2 * args.rounds} runs each:")
    for part in seen["before"][0]:
        spans = {name: (min(r[part] for r in runs), max(r[part] for r in runs))
                 for name, runs in seen.items()}
        print(f"  {part:<32} before {spans['before'][0]}-{spans['before'][1]}"
              f"   after {spans['after'][0]}-{spans['after'][1]}")


if __name__ == "__main__":
    main()
