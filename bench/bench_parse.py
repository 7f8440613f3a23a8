"""Throughput of ``message.parse`` alone, on the mail ``bench_classify.py`` builds.

Usage: ``python bench/bench_parse.py [--count 3000] [--repeats 5] [--corpus models/corpus/mail]``

The same corpus mails grown to 5-20 KB inside their body parts as in
``bench_classify.py``; every mail is parsed ``--repeats`` times over and the best
round counts, in wall-clock and in CPU time (on a shared machine the CPU figure is
the steadier one). Prints a table and writes ``bench/results/parse.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_classify import ROOT, load

from triage import message


def best_round(raws: list[bytes], repeats: int, clock: Callable[[], float]) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = clock()
        for raw in raws:
            message.parse(raw)
        best = min(best, clock() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=3_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--corpus", type=Path, default=ROOT / "models/corpus/mail")
    args = parser.parse_args()

    raws = load(args.corpus, args.count)
    sizes = sorted(len(r) for r in raws)
    wall = best_round(raws, args.repeats, time.perf_counter)
    cpu = best_round(raws, args.repeats, time.process_time)
    result = {
        "messages": len(raws),
        "size_bytes": {"min": sizes[0], "median": sizes[len(sizes) // 2], "max": sizes[-1]},
        "parse_per_s_wall": round(len(raws) / wall, 1),
        "parse_per_s_cpu": round(len(raws) / cpu, 1),
        "us_per_message_cpu": round(cpu / len(raws) * 1e6, 1),
        "python": platform.python_version(),
    }
    for key, value in result.items():
        print(f"{key:<22} {value}")
    out = ROOT / "bench/results/parse.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
