"""A seller corrects 20 verdicts: does similar mail follow, and does nothing else get worse?

Usage::

    python bench/bench_corrections.py --unseen-families [--fold 0] [--retrain [WEIGHT]]
                                      [--no-cache]
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
no suspected phishing lost its flag; with ``--retrain``, the same after the retrain triage
does by itself (:func:`triage.learning.fit`: the fold's model fitted again with the corrected
mail, the corrections still in force). The ``diagnosis`` says why each error left on the
rest is left (see :func:`explain`). Writes ``bench/results/corrections.json``.

The fold's rendered mail and fitted model are cached (:func:`cache_dir`); ``--no-cache``
renders and fits afresh.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import pickle
import platform
import random
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

from triage import corpus, correct_cmd, learning, model, rules, train  # noqa: E402
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


# What the fold's model and mail are made from: the cache is keyed by all of it.
CACHE_INPUTS = (
    "triage/corpus.py", "triage/message.py", "triage/model.py", "triage/train.py",
    "triage/signals.py", "triage/lexicon.py", "triage/lexicon", "triage/taxonomy.py",
    "models/corpus/families",
)


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME")
    return Path(base) / "triage-bench" if base else ROOT / "bench" / ".cache"


def cache_key(fold: int, folds: int, threshold: float) -> str:
    """A hash of the corpus, the code that renders, parses and fits it, and the fold."""
    digest = hashlib.sha256(f"{fold}/{folds}/{threshold}".encode())
    for name in CACHE_INPUTS:
        top = ROOT / name
        for path in sorted([top] if top.is_file() else top.rglob("*")):
            if path.is_file():
                digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:24]


@dataclass(frozen=True)
class Training:
    """What a fold's model was fitted on, to fit it again with the seller's corrections."""

    messages: list[Message]
    types: list[str]
    severities: list[str]
    families: list[str]
    critical_threshold: float

    def refit(self, found: Sequence[Correction], weight: float, sure_level: float
              ) -> model.Weights:
        """The learned model triage makes of these mails and the seller's corrections
        (:func:`triage.learning.fit`, the daemon's refit and ``triage learn``)."""
        return learning.fit(self.messages, self.types, self.severities, self.families,
                            found, self.critical_threshold, sure_level, weight)


def unseen_families(
    fold: int, folds: int = 5, use_cache: bool = True
) -> tuple[model.Weights, list[Mail], str, Training]:
    """A model fitted without one fold of families, and those families' mail.

    Rendering the corpus and fitting take most of a run; both are kept on disk under
    :func:`cache_dir`, keyed by :func:`cache_key`, unless ``use_cache`` is false.
    """
    threshold = model.Classifier.load().weights.critical_threshold
    where = cache_dir() / f"fold{fold}-{cache_key(fold, folds, threshold)}"
    if use_cache and (where / "mail.pickle").is_file():
        with (where / "mail.pickle").open("rb") as fh:
            rows, source, fields = pickle.load(fh)
        # Kept as plain fields: this script's classes live in __main__ or a module.
        held_mail = [Mail(Path(row[0]), *row[1:]) for row in rows]
        return model.load_weights(where), held_mail, source, Training(*fields)
    weights, held_mail, source, training = fit_fold(fold, folds, threshold)
    if use_cache:
        for stale in where.parent.glob(f"fold{fold}-*"):  # another corpus or code: dropped
            shutil.rmtree(stale, ignore_errors=True)
        where.mkdir(parents=True, exist_ok=True)
        model.save(weights, where)
        rows = [(str(m.path), m.type, m.severity, m.lang, m.genuine, m.message, m.raw)
                for m in held_mail]
        fields = (training.messages, training.types, training.severities, training.families,
                  training.critical_threshold)
        with (where / "mail.pickle").open("wb") as fh:
            pickle.dump((rows, source, fields), fh)
    return weights, held_mail, source, training


def fit_fold(
    fold: int, folds: int, threshold: float
) -> tuple[model.Weights, list[Mail], str, Training]:
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
    fitted = train.fit(
        [mails[i].message for i in train_idx],
        [mails[i].type for i in train_idx],
        [mails[i].severity for i in train_idx],
        [families[i] for i in train_idx],
        critical_threshold=threshold,
    )
    held = sorted({families[i] for i in test_idx})
    training = Training(
        [mails[i].message for i in train_idx],
        [mails[i].type for i in train_idx],
        [mails[i].severity for i in train_idx],
        [families[i] for i in train_idx],
        threshold,
    )
    return (
        fitted.weights,
        [mails[i] for i in test_idx],
        (f"fold {fold + 1} of {folds}: {len(held)} families held out of training"),
        training,
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


def family_of(mail: Mail) -> str:
    """The template family (the corpus's folder name), or the file of a labelled set."""
    return mail.path.parent.name if mail.raw else mail.path.name


def explain(
    rest: list[Mail],
    before: list[Verdict],
    after: list[Verdict],
    seller: list[Mail],
    seen: list[Verdict],
    fixed: list[Mail],
    recall: Recall,
) -> dict[str, object]:
    """Why each error left on the rest is left: what the seller's corrections did with it.

    Each wrong verdict after the corrections is put in one class:
    ``followed_other`` (it followed a correction of another family), ``below`` (its family
    was corrected but it is not alike enough: its best likeness is given), ``guard``
    (alike, but a limit kept it from following), ``uncorrected`` (no correction of its
    family; ``uncorrected_seller_wrong`` of those had a wrong mail on the seller's side
    the 20 did not reach).
    """
    from triage import corrections as c

    by_id = {
        corr.id: family_of(mail) for corr, mail in zip(recall.corrections, fixed, strict=True)
    }
    spread = Counter(family_of(m) for m in fixed)
    seller_wrong = Counter(
        family_of(m) for m, v in zip(seller, seen, strict=True) if m.genuine and wrong(m, v)
    )
    vectorizer = c._vectorizer()
    matrix = vectorizer.transform([c.sketch(x.subject, x.body) for x in recall.corrections])
    classes: Counter[str] = Counter()
    below: list[float] = []
    rows = []
    for mail, was, now in zip(rest, before, after, strict=True):
        if not mail.genuine or not wrong(mail, now):
            continue
        family = family_of(mail)
        row = {
            "file": str(mail.path),
            "truth": f"{mail.type}/{mail.severity}",
            "before": f"{was.type}/{was.severity}",
            "after": f"{now.type}/{now.severity}",
        }
        if now.decided_by.startswith("correction:"):
            source = by_id.get(int(now.decided_by.split(":")[1]), "?")
            kind = "followed_own" if source == family else "followed_other"
            row["followed"] = source
        elif family in spread:
            found = vectorizer.transform(
                [c.sketch(mail.message.subject, c.body_of(mail.message, c.SKETCH_CHARS))]
            )
            scores = (found @ matrix.T).toarray()[0]
            key = c.sender_key(mail.message.sender_address)
            own = [
                (float(scores[i]), c.sender_key(x.sender) == key)
                for i, x in enumerate(recall.corrections)
                if by_id[x.id] == family
            ]
            best, same_sender = max(own)
            row["likeness"] = round(best, 3)
            kind = "guard" if any(c.alike(s, same) for s, same in own) else "below"
            if kind == "below":
                below.append(best)
            row["same_sender"] = same_sender
        else:
            kind = "uncorrected"
            if seller_wrong[family]:
                classes["uncorrected_seller_wrong"] += 1
        classes[kind] += 1
        row["class"] = kind
        rows.append(row)
    new_errors = sum(
        m.genuine and not wrong(m, b) and wrong(m, a)
        for m, b, a in zip(rest, before, after, strict=True)
    )
    return {
        "corrected_families": len(spread),
        "corrections_per_family": sorted(spread.values(), reverse=True),
        "families_wrong_on_seller_side": len(seller_wrong),
        "errors_left": dict(classes),
        "new_errors": new_errors,
        "below_likeness": sorted(round(b, 3) for b in below),
        "errors": rows,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--unseen-families",
        action="store_true",
        help="the seller's mail is template families held out of training",
    )
    parser.add_argument("--fold", type=int, default=0, help="which fold of families (0-4)")
    parser.add_argument(
        "--no-cache",
        action="store_true",
        help="render and fit the fold afresh, without reading or writing the cache",
    )
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
    parser.add_argument(
        "--retrain",
        type=float,
        nargs="?",
        const=train.CORRECTION_WEIGHT,
        metavar="WEIGHT",
        help="with --unseen-families, also measure after the learned model's refit: the "
        "fold's model fitted again with the corrected mail counted WEIGHT times "
        "(default: triage train's own)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/corrections.json")
    args = parser.parse_args()

    rule_set = rules.load_rules(ROOT / "rules.yaml")
    if args.unseen_families:
        weights, mails, source, training = unseen_families(args.fold, use_cache=not args.no_cache)
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
    rest_before_verdicts = decide(pipe, rest, None)
    rest_before = score(rest, rest_before_verdicts)
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
    retrained: dict[str, object] | None = None
    if args.retrain is not None and args.unseen_families and made:
        again = Pipeline(
            learning.learned_classifier(model.Classifier(
                training.refit(recall.corrections, args.retrain, weights.sure_level), {})),
            rule_set,
            rescue_folder="INBOX",
        )
        retrained = {
            "weight": args.retrain,
            "rest": vars(score(rest, decide(again, rest, recall))),
            "rest_without_corrections": vars(score(rest, decide(again, rest, None))),
            "unrelated_mail": vars(score(unrelated, decide(again, unrelated, recall))),
        }

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
        "after_retrain": retrained,
        "diagnosis": explain(rest, rest_before_verdicts, rest_after_verdicts, seller, seen,
                             to_correct, recall),
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
    if retrained is not None:
        again_rest, again_unrelated = retrained["rest"], retrained["unrelated_mail"]
        assert isinstance(again_rest, dict) and isinstance(again_unrelated, dict)
        print(
            f"after the learned model's refit (weight {args.retrain:g}), corrections in "
            f"force: error on the rest {again_rest['error_rate']:.3f} "
            f"({again_rest['errors']}), critical recall {again_rest['critical_recall']:.3f}, "
            f"unrelated {again_unrelated['error_rate']:.3f}"
        )
    why = result["diagnosis"]
    assert isinstance(why, dict)
    print(
        f"corrections over {why['corrected_families']} families "
        f"{why['corrections_per_family']}; wrong on the seller's side in "
        f"{why['families_wrong_on_seller_side']} families; errors left {why['errors_left']}, "
        f"of which new {why['new_errors']}; likeness of those below {why['below_likeness']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
