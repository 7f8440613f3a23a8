"""A seller corrects 20 verdicts: does similar mail follow, and does nothing else get worse?

Usage::

    python bench/bench_corrections.py [--folder models/heldout] [--unrelated DIR]
                                      [--corrections 20] [--out bench/results/corrections.json]

``--folder`` is a labelled set of mail in wording the model did not train on
(``labels.csv`` with ``file,type,severity,lang,genuine,kind`` and the mail in ``mail/``).
It is split in two by kind: sorted by (type, severity, language, file), every other mail
goes to the seller's part, so each kind of mail is on both sides. The seller reads the
verdicts of their part in file order and corrects the first 20 that are wrong (type or
severity), through the same code as ``triage correct``. Then the rest of the set, which
the seller never touched, is decided before and after, and so is unrelated mail
(``--unrelated``: another labelled set; by default a sample of the rendered training
corpus when ``--folder`` is the held-out set, else the held-out set).

Reported: the error (type or severity wrong) on the rest before and after, critical
recall on the rest before and after, the error on the unrelated mail before and after,
and that no suspected phishing lost its flag. Writes ``bench/results/corrections.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

from triage import correct_cmd, model, rules  # noqa: E402
from triage.corrections import Recall  # noqa: E402
from triage.message import Message, parse  # noqa: E402
from triage.pipeline import Pipeline  # noqa: E402
from triage.state import Database  # noqa: E402
from triage.verdict import Verdict  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
HELDOUT = ROOT / "models" / "heldout"
CORPUS = ROOT / "models" / "corpus"
ACCOUNT = "seller"
CORPUS_SAMPLE_EVERY = 7


@dataclass(frozen=True)
class Mail:
    path: Path
    type: str
    severity: str
    lang: str
    genuine: bool
    message: Message

    @property
    def kind(self) -> tuple[str, str, str, str]:
        return (self.type, self.severity, self.lang, self.path.name)


def read_set(folder: Path) -> list[Mail]:
    """A labelled set: ``labels.csv`` and ``mail/``."""
    with (folder / "labels.csv").open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [
        Mail(folder / "mail" / r["file"], r["type"], r["severity"], r.get("lang", ""),
             r.get("genuine", "true") == "true", parse((folder / "mail" / r["file"]).read_bytes()))
        for r in rows
    ]


def read_corpus_sample(folder: Path) -> list[Mail]:
    """Every ``CORPUS_SAMPLE_EVERY``-th mail of the rendered training corpus."""
    with (folder / "labels.csv").open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))[::CORPUS_SAMPLE_EVERY]
    return [Mail(folder / r["path"], r["type"], r["severity"], r["lang"], True,
                 parse((folder / r["path"]).read_bytes())) for r in rows]


def split(mails: list[Mail]) -> tuple[list[Mail], list[Mail]]:
    """Every other mail of each kind to the seller; the rest is what comes later."""
    ordered = sorted(mails, key=lambda m: m.kind)
    return ordered[0::2], ordered[1::2]


def wrong(mail: Mail, verdict: Verdict) -> bool:
    return (verdict.type, verdict.severity) != (mail.type, mail.severity)


@dataclass
class Figures:
    mails: int
    errors: int
    error_rate: float
    criticals: int
    criticals_found: int
    critical_recall: float
    suspicious: int


def score(mails: list[Mail], verdicts: list[Verdict]) -> Figures:
    genuine = [(m, v) for m, v in zip(mails, verdicts, strict=True) if m.genuine]
    errors = sum(wrong(m, v) for m, v in genuine)
    criticals = [(m, v) for m, v in genuine if m.severity == "critical"]
    found = sum(v.severity == "critical" for _, v in criticals)
    return Figures(
        mails=len(genuine),
        errors=errors,
        error_rate=round(errors / max(len(genuine), 1), 4),
        criticals=len(criticals),
        criticals_found=found,
        critical_recall=round(found / max(len(criticals), 1), 4),
        suspicious=sum(v.suspicious for m, v in zip(mails, verdicts, strict=True)
                       if not m.genuine),
    )


def decide(pipe: Pipeline, mails: list[Mail], recall: Recall | None) -> list[Verdict]:
    return pipe.decide([m.message for m in mails], folder="INBOX", role="inbox",
                       corrections=recall)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--folder", type=Path, default=HELDOUT)
    parser.add_argument("--unrelated", type=Path, help="another labelled set")
    parser.add_argument("--corrections", type=int, default=20)
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/corrections.json")
    args = parser.parse_args()

    mails = read_set(args.folder)
    if args.unrelated:
        unrelated, unrelated_name = read_set(args.unrelated), str(args.unrelated)
    elif args.folder.resolve() == HELDOUT.resolve():
        unrelated = read_corpus_sample(CORPUS)
        unrelated_name = f"models/corpus (every {CORPUS_SAMPLE_EVERY}th mail)"
    else:
        unrelated, unrelated_name = read_set(HELDOUT), "models/heldout"
    seller, rest = split(mails)
    pipe = Pipeline(model.Classifier.load(), rules.load_rules(ROOT / "rules.yaml"),
                    rescue_folder="INBOX")

    seen = decide(pipe, seller, None)
    to_correct = [m for m, v in zip(seller, seen, strict=True)
                  if m.genuine and wrong(m, v)][: args.corrections]
    rest_before = score(rest, decide(pipe, rest, None))
    unrelated_before = score(unrelated, decide(pipe, unrelated, None))

    with tempfile.TemporaryDirectory() as tmp:
        db = Database(Path(tmp) / "triage.db")
        made = [correct_cmd.record_file(db, pipe, ACCOUNT, m.path, m.type, m.severity)
                for m in to_correct]
        recall = Recall.load(db, ACCOUNT)
        db.close()
    rest_after_verdicts = decide(pipe, rest, recall)
    rest_after = score(rest, rest_after_verdicts)
    unrelated_after = score(unrelated, decide(pipe, unrelated, recall))
    followed = sum(v.decided_by.startswith("correction:") for v in rest_after_verdicts)

    result = {
        "taken_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "folder": str(args.folder),
        "unrelated": unrelated_name,
        "seller_part": len(seller),
        "seller_part_wrong": sum(m.genuine and wrong(m, v) for m, v in
                                 zip(seller, seen, strict=True)),
        "corrections": len(made),
        "corrected": [{"file": m.path.name, "was": f"{c.model_type}/{c.model_severity}",
                       "now": f"{c.type}/{c.severity}"} for m, c in zip(to_correct, made,
                                                                      strict=True)],
        "rest": {"before": vars(rest_before), "after": vars(rest_after),
                 "decided_by_a_correction": followed},
        "unrelated_mail": {"before": vars(unrelated_before), "after": vars(unrelated_after)},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")

    print(f"set {args.folder}: seller's part {len(seller)} mails "
          f"({result['seller_part_wrong']} wrong), {len(made)} corrections; "
          f"rest {len(rest)} mails; unrelated {unrelated_name} ({len(unrelated)} mails)")
    print(f"{'':<28}{'before':>12}{'after':>12}")
    rows = [
        ("error on the rest", rest_before.error_rate, rest_after.error_rate),
        ("critical recall on the rest", rest_before.critical_recall, rest_after.critical_recall),
        ("error on unrelated mail", unrelated_before.error_rate, unrelated_after.error_rate),
    ]
    for name, before, after in rows:
        print(f"{name:<28}{before:>12.3f}{after:>12.3f}")
    print(f"rest: {rest_before.errors} -> {rest_after.errors} errors, {followed} mails "
          f"followed a correction; phishing flagged {rest_before.suspicious} -> "
          f"{rest_after.suspicious}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
