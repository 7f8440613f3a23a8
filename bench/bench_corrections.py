"""A seller corrects 20 verdicts: does similar mail follow, and does nothing else get worse?

Usage::

    python bench/bench_corrections.py --unseen-families [--fold 0]
    python bench/bench_corrections.py [--folder DIR ...] [--set wording] [--unrelated DIR]
                                      [--corrections 20] [--out bench/results/corrections.json]

A seller's mailbox repeats itself: the same Amazon notice, the same relay, arrives again with
another order number. ``--unseen-families`` plays that with wording the model never trained
on: a model is fitted on the training corpus with one fold of its template families held
out (the cross-validation ``triage train`` reports, families kept whole), and the seller's
mail is those held-out families' mail. Without it, ``--folder`` names labelled sets
(``labels.csv`` with ``file,type,severity,lang,genuine`` and the mail in ``mail/``; repeat to
pool several) decided by the shipped model.

Either way the mail is split in two: sorted by (type, severity, language, family or file),
every other mail goes to the seller's part, so each kind is on both sides. The seller reads
their part in the order it arrives (a fixed shuffle) with their corrections so far in
force, and runs ``triage correct`` (the same code) on each verdict still wrong (type or
severity), until 20 are made. Then the rest, which the seller never touched, is decided
before and after, and so is unrelated mail (``--unrelated``; by default ``models/heldout``,
or a sample of the training corpus when the seller's mail is ``models/heldout``).

Reported: the error (type or severity wrong) on the rest before and after, critical recall
on the rest before and after, the error on the unrelated mail before and after, and that
no suspected phishing lost its flag. Writes ``bench/results/corrections.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

from triage import corpus, correct_cmd, model, rules, train  # noqa: E402
from triage.corrections import Correction, Recall  # noqa: E402
from triage.message import Message, parse  # noqa: E402
from triage.pipeline import Pipeline  # noqa: E402
from triage.state import Database  # noqa: E402
from triage.verdict import Verdict  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
HELDOUT = ROOT / "models" / "heldout"
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
    raw: bytes = b""

    @property
    def kind(self) -> tuple[str, str, str, str]:
        return (self.type, self.severity, self.lang, str(self.path))


def read_set(folder: Path, part: str | None = None) -> list[Mail]:
    """A labelled set: ``labels.csv`` and ``mail/``; only rows whose ``set`` is ``part``."""
    with (folder / "labels.csv").open(encoding="utf-8", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if part is None or r.get("set") == part]
    return [
        Mail(
            folder / "mail" / r["file"],
            r["type"],
            r["severity"],
            r.get("lang", ""),
            r.get("genuine", "true") == "true",
            parse((folder / "mail" / r["file"]).read_bytes()),
        )
        for r in rows
    ]


def read_corpus_sample() -> list[Mail]:
    """Every ``CORPUS_SAMPLE_EVERY``-th mail of the training corpus, rendered in memory."""
    rows = list(corpus.render_rows(corpus.default_corpus_dir()))[::CORPUS_SAMPLE_EVERY]
    return [
        Mail(Path(row.path), row.type, row.severity, row.lang, True, parse(raw))
        for row, raw in rows
    ]


def unseen_families(fold: int, folds: int = 5) -> tuple[model.Weights, list[Mail], str]:
    """A model fitted without one fold of families, and those families' mail."""
    from sklearn.model_selection import GroupKFold

    rows = list(corpus.render_rows(corpus.default_corpus_dir()))
    phishing = {
        f.family for f in corpus.load_families(corpus.default_corpus_dir()) if not f.genuine
    }
    mails = [
        Mail(
            Path(row.path),
            row.type,
            row.severity,
            row.lang,
            row.family not in phishing,
            parse(raw),
            raw,
        )
        for row, raw in rows
    ]
    families = [row.family for row, _ in rows]
    train_idx, test_idx = list(GroupKFold(n_splits=folds).split(mails, groups=families))[fold]
    shipped = model.Classifier.load().weights
    fitted = train.fit(
        [mails[i].message for i in train_idx],
        [mails[i].type for i in train_idx],
        [mails[i].severity for i in train_idx],
        [families[i] for i in train_idx],
        critical_threshold=shipped.critical_threshold,
    )
    held = sorted({families[i] for i in test_idx})
    return (
        fitted.weights,
        [mails[i] for i in test_idx],
        (f"fold {fold + 1} of {folds}: {len(held)} families held out of training"),
    )


def play(
    pipe: Pipeline, db: Database, seller: list[Mail], limit: int, folder: Path
) -> tuple[list[Mail], list[Correction]]:
    """The seller reads their mail as it arrives and corrects what is still wrong."""
    arriving = list(seller)
    random.Random(7).shuffle(arriving)
    recall: Recall | None = None
    fixed: list[Mail] = []
    made: list[Correction] = []
    for mail in arriving:
        if len(made) == limit:
            break
        if not mail.genuine or not wrong(mail, decide(pipe, [mail], recall)[0]):
            continue
        path = mail.path
        if mail.raw:  # rendered in memory: the seller saves it to run `triage correct`
            path = folder / f"{len(made):03d}.eml"
            path.write_bytes(mail.raw)
        made.append(correct_cmd.record_file(db, pipe, ACCOUNT, path, mail.type, mail.severity))
        fixed.append(mail)
        recall = Recall.load(db, ACCOUNT)
    return fixed, made


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
        suspicious=sum(v.suspicious for m, v in zip(mails, verdicts, strict=True) if not m.genuine),
    )


def decide(pipe: Pipeline, mails: list[Mail], recall: Recall | None) -> list[Verdict]:
    return pipe.decide([m.message for m in mails], folder="INBOX", role="inbox", corrections=recall)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--unseen-families",
        action="store_true",
        help="the seller's mail is template families held out of training",
    )
    parser.add_argument("--fold", type=int, default=0, help="which fold of families (0-4)")
    parser.add_argument(
        "--folder",
        type=Path,
        action="append",
        help="a labelled set; repeat to pool several (default: models/heldout)",
    )
    parser.add_argument(
        "--set",
        dest="part",
        help="only the rows of labels.csv whose `set` "
        "is this (models/heldout has `base` and `wording`)",
    )
    parser.add_argument("--unrelated", type=Path, help="another labelled set")
    parser.add_argument("--corrections", type=int, default=20)
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/corrections.json")
    args = parser.parse_args()

    rule_set = rules.load_rules(ROOT / "rules.yaml")
    if args.unseen_families:
        weights, mails, source = unseen_families(args.fold)
        classifier = model.Classifier(weights, {})
        folders: list[Path] = []
    else:
        folders = args.folder or [HELDOUT]
        mails = [m for folder in folders for m in read_set(folder, args.part)]
        classifier = model.Classifier.load()
        source = ", ".join(map(str, folders)) + (f" (set {args.part})" if args.part else "")
    if args.unrelated:
        unrelated, unrelated_name = read_set(args.unrelated), str(args.unrelated)
    elif any(folder.resolve() == HELDOUT.resolve() for folder in folders):
        unrelated = read_corpus_sample()
        unrelated_name = f"models/corpus (every {CORPUS_SAMPLE_EVERY}th mail, rendered)"
    else:
        unrelated, unrelated_name = read_set(HELDOUT), "models/heldout"
    seller, rest = split(mails)
    pipe = Pipeline(classifier, rule_set, rescue_folder="INBOX")

    seen = decide(pipe, seller, None)
    rest_before = score(rest, decide(pipe, rest, None))
    unrelated_before = score(unrelated, decide(pipe, unrelated, None))

    with tempfile.TemporaryDirectory() as tmp:
        db = Database(Path(tmp) / "triage.db")
        to_correct, made = play(pipe, db, seller, args.corrections, Path(tmp))
        recall = Recall.load(db, ACCOUNT)
        db.close()
    rest_after_verdicts = decide(pipe, rest, recall)
    rest_after = score(rest, rest_after_verdicts)
    unrelated_after = score(unrelated, decide(pipe, unrelated, recall))
    followed = sum(v.decided_by.startswith("correction:") for v in rest_after_verdicts)

    result = {
        "taken_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "source": source,
        "set": args.part,
        "unrelated": unrelated_name,
        "seller_part": len(seller),
        "seller_part_wrong": sum(
            m.genuine and wrong(m, v) for m, v in zip(seller, seen, strict=True)
        ),
        "corrections": len(made),
        "corrected": [
            {
                "file": str(m.path),
                "was": f"{c.model_type}/{c.model_severity}",
                "now": f"{c.type}/{c.severity}",
            }
            for m, c in zip(to_correct, made, strict=True)
        ],
        "rest": {
            "before": vars(rest_before),
            "after": vars(rest_after),
            "decided_by_a_correction": followed,
        },
        "unrelated_mail": {"before": vars(unrelated_before), "after": vars(unrelated_after)},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")

    print(
        f"{source}: seller's part {len(seller)} mails "
        f"({result['seller_part_wrong']} wrong), {len(made)} corrections; "
        f"rest {len(rest)} mails; unrelated {unrelated_name} ({len(unrelated)} mails)"
    )
    print(f"{'':<28}{'before':>12}{'after':>12}")
    rows = [
        ("error on the rest", rest_before.error_rate, rest_after.error_rate),
        ("critical recall on the rest", rest_before.critical_recall, rest_after.critical_recall),
        ("error on unrelated mail", unrelated_before.error_rate, unrelated_after.error_rate),
    ]
    for name, before, after in rows:
        print(f"{name:<28}{before:>12.3f}{after:>12.3f}")
    print(
        f"rest: {rest_before.errors} -> {rest_after.errors} errors, {followed} mails "
        f"followed a correction; phishing flagged {rest_before.suspicious} -> "
        f"{rest_after.suspicious}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
