"""Training: fit the classifier on the rendered corpus, score it on held-out wording.

``triage train`` renders the template families (``models/corpus/families``) in memory,
scores the model with cross-validation that holds out whole families, scores the final
model on ``models/heldout`` (mail written apart from the corpus), calibrates the
critical threshold on both, and writes the model files, ``metadata.json`` and the model
card. scikit-learn is used here only, through its public API; what it fitted is handed
to :mod:`triage.model` as plain arrays.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import sklearn
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import GroupKFold

from triage import progress, resources, taxonomy
from triage.errors import ModelError
from triage.message import Message, parse
from triage.model import (
    BODY_CAP,
    CARD_FILE,
    CHAR_CAP,
    METADATA_FILE,
    MODEL_FILE,
    WEIGHTS_FILE,
    Block,
    LinearModel,
    Scored,
    Weights,
    _columns,
    decide,
    save,
)
from triage.settings import default_model_dir

log = logging.getLogger(__name__)

MIN_FAMILIES = 3
MAX_TERMS = 40_000  # per feature block; keeps predicting fast and the file small
VOCABULARY_SAMPLE = 8  # mails per family read to build the vocabulary
WEIGHTS = {"signal": 1.5}
C_TYPE = 5.0
C_SEVERITY = 5.0
# Tried from high to low: the highest that keeps every held-out critical is chosen.
CRITICAL_THRESHOLDS = (0.5, 0.4, 0.3, 0.25, 0.2, 0.15, 0.1, 0.07, 0.05, 0.03, 0.02)
CRITICAL_RECALL_GOAL = 1.0
# One critical in 100 that only a far lower threshold would catch, at twice or more the
# false alarms (such mail is mostly marked possibly critical anyway: see the card).
RECALL_SLACK = 0.01
SURE_LEVEL = 0.5  # a critical said below this probability is "possibly critical"
# How many corpus mails one of the seller's corrections counts as when `triage train
# --corrections` folds them in: 1-5 all halved the error on unseen template families in
# most folds, 2 in all five (bench/README.md, "Corrections").
CORRECTION_WEIGHT = 2.0
HELDOUT_DIR = resources.data_dir() / "models" / "heldout"


def new_vectorizers() -> dict[str, TfidfVectorizer]:
    return {
        "word": TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, dtype=np.float32),
        "char": TfidfVectorizer(
            analyzer="char_wb", ngram_range=(3, 4), sublinear_tf=True, dtype=np.float32
        ),
        "meta": TfidfVectorizer(token_pattern=r"\S+", lowercase=True, dtype=np.float32),
        "signal": TfidfVectorizer(
            token_pattern=r"\S+", lowercase=False, use_idf=False, binary=True, dtype=np.float32
        ),
    }


def block_of(name: str, vec: TfidfVectorizer, weight: float = 1.0) -> Block:
    """A fitted vectorizer as a :class:`Block`, read from its public parameters."""
    params = vec.get_params()
    if params["strip_accents"] or params["preprocessor"] or params["tokenizer"]:
        raise ModelError(f"block {name}: only lower-casing is reproduced at prediction")
    if params["stop_words"] or params["norm"] != "l2" or params["smooth_idf"] is not True:
        raise ModelError(f"block {name}: stop words and norms other than l2 are not reproduced")
    terms = [""] * len(vec.vocabulary_)
    for term, column in vec.vocabulary_.items():
        terms[column] = term
    return Block(
        name=name,
        analyzer=params["analyzer"],
        token_pattern=params["token_pattern"] if params["analyzer"] == "word" else None,
        lowercase=bool(params["lowercase"]),
        ngram_range=tuple(params["ngram_range"]),
        binary=bool(params["binary"]),
        sublinear_tf=bool(params["sublinear_tf"]),
        terms=terms,
        idf=np.asarray(vec.idf_, dtype=np.float32) if params["use_idf"] else None,
        weight=weight,
    )


def linear_of(model: LogisticRegression) -> LinearModel:
    return LinearModel(
        [str(c) for c in model.classes_],
        np.asarray(model.coef_, dtype=np.float32),
        np.asarray(model.intercept_, dtype=np.float64),
    )


def shared_vocabulary(
    vec: TfidfVectorizer, docs: Sequence[str], families: Sequence[str]
) -> list[str]:
    """Terms used by at least MIN_FAMILIES families.

    A term only one template family uses teaches that family's wording, not the kind of
    mail; dropping such terms is what lets the model read wording it has never seen.
    """
    analyze = vec.build_analyzer()
    per_family: dict[str, list[str]] = {}
    for doc, family in zip(docs, families, strict=True):
        sample = per_family.setdefault(family, [])
        if len(sample) < VOCABULARY_SAMPLE:
            sample.append(doc)
    seen: Counter[str] = Counter()
    for sample in per_family.values():
        seen.update({term for doc in sample for term in analyze(doc)})
    common = sorted(
        (term for term, n in seen.items() if n >= MIN_FAMILIES),
        key=lambda term: (-seen[term], term),
    )
    return sorted(common[:MAX_TERMS])


def _cell(kind: str, severity: str) -> str:
    return f"{kind}/{severity}"


@dataclass
class Fit:
    """One fit: the plain-data weights, and scikit-learn's own objects to check them by."""

    weights: Weights
    vectorizers: dict[str, TfidfVectorizer]
    type_model: LogisticRegression
    severity_models: dict[str, LogisticRegression]

    def sklearn_proba(
        self, messages: Sequence[Message]
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Type and per-type severity probabilities as scikit-learn computes them."""
        columns = _columns(messages)
        features = sp.hstack(
            [vec.transform(columns[n]) * WEIGHTS.get(n, 1.0)
             for n, vec in self.vectorizers.items()],
            format="csr",
        )
        boosted = self.weights.boost(features)
        return self.type_model.predict_proba(features), {
            k: m.predict_proba(boosted) for k, m in self.severity_models.items()
        }


def fit(
    messages: Sequence[Message],
    types: Sequence[str],
    severities: Sequence[str],
    families: Sequence[str],
    critical_threshold: float = 0.5,
    sample_weight: Sequence[float] | None = None,
) -> Fit:
    """Fit the vectorizers and the models; ``sample_weight`` (one per mail, default 1)
    lets a few mails count as many, such as a seller's corrections."""
    vectorizers = new_vectorizers()
    weight = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    columns = _columns(messages)
    for name, vec in vectorizers.items():
        if name != "signal":  # concept tokens are the lexicon's, never a family's
            vec.vocabulary = shared_vocabulary(vec, columns[name], families)
    features = sp.hstack(
        [vec.fit_transform(columns[n]) * WEIGHTS.get(n, 1.0) for n, vec in vectorizers.items()],
        format="csr",
    )
    type_model = LogisticRegression(C=C_TYPE, max_iter=500).fit(
        features, list(types), sample_weight=weight)
    blocks = [block_of(n, vec, WEIGHTS.get(n, 1.0)) for n, vec in vectorizers.items()]
    weights = Weights(blocks, linear_of(type_model), {}, critical_threshold, SURE_LEVEL)
    boosted = weights.boost(features)
    severity_models = {}
    # Per type, a model of its severities trained on that type's mail alone: inside one
    # type the words that matter are few ("in your favour", "refused", the stars).
    for kind in sorted(set(types)):
        rows = [i for i, t in enumerate(types) if t == kind]
        labels = [severities[i] for i in rows]
        if len(set(labels)) > 1:
            severity_models[kind] = LogisticRegression(C=C_SEVERITY, max_iter=500).fit(
                boosted[rows], labels, sample_weight=None if weight is None else weight[rows]
            )
    weights.severity_models = {k: linear_of(m) for k, m in severity_models.items()}
    return Fit(weights, vectorizers, type_model, severity_models)


# --- training and held-out evaluation ---------------------------------------------


@dataclass
class Scores:
    """Held-out scores of one slice of mail (all of it, or one language)."""

    mails: int
    type_macro_f1: float
    type_f1: dict[str, float]
    severity_accuracy: float
    critical_recall: float
    critical_precision: float
    criticals: int
    false_criticals_per_1000: float = 0.0
    possibly_critical_per_1000: float = 0.0
    # Criticals said critical or marked possibly critical: none passes unremarked.
    critical_flagged_recall: float = 0.0


@dataclass
class TrainReport:
    mails: int
    families: int
    folds: int
    critical_threshold: float
    sure_level: float
    overall: Scores
    by_lang: dict[str, Scores]
    threshold_tradeoff: list[dict[str, float]]
    counts: dict[str, dict[str, int]]
    heldout: Scores | None = None
    heldout_by_lang: dict[str, Scores] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    confusions: list[dict[str, Any]] = field(default_factory=list)
    heldout_confusions: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Labelled:
    """Parsed mail with its labels: the rendered corpus, or a folder of held-out mail."""

    messages: list[Message]
    types: list[str]
    severities: list[str]
    groups: list[str]  # the family (corpus) or the file (held-out)
    langs: list[str]
    digest: str
    # Phishing is labelled as what it imitates and scored on trust; critical recall and
    # its price count genuine mail only.
    genuine: list[bool] = field(default_factory=list)


def read_corpus(corpus_dir: Path) -> Labelled:
    """Render every family in memory and parse each mail."""
    from triage.corpus import load_families, render_rows

    phishing = {f.family for f in load_families(Path(corpus_dir)) if not f.genuine}
    digest = hashlib.sha256()
    messages, rows = [], []
    for row, raw in render_rows(Path(corpus_dir)):
        digest.update(raw)
        messages.append(parse(raw))
        rows.append(row)
    if not rows:
        raise ModelError(f"{corpus_dir}/families holds no family to train on")
    return Labelled(
        messages,
        [r.type for r in rows],
        [r.severity for r in rows],
        [r.family for r in rows],
        [r.lang for r in rows],
        digest.hexdigest(),
        [r.family not in phishing for r in rows],
    )


def read_folder(folder: Path) -> Labelled | None:
    """The genuine mail of a labelled folder (``labels.csv`` + ``mail/``), None if absent."""
    try:
        with (folder / "labels.csv").open(encoding="utf-8", newline="") as fh:
            rows = [r for r in csv.DictReader(fh) if r.get("genuine", "true") == "true"]
    except OSError:
        return None
    digest = hashlib.sha256()
    messages = []
    for row in rows:
        raw = (folder / "mail" / row["file"]).read_bytes()
        digest.update(raw)
        messages.append(parse(raw))
    return Labelled(
        messages,
        [r["type"] for r in rows],
        [r["severity"] for r in rows],
        [r["file"] for r in rows],
        [r["lang"] for r in rows],
        digest.hexdigest(),
        [True] * len(rows),
    )


def _scores(truth: Labelled, scored: Sequence[Scored], threshold: float, sure: float) -> Scores:
    predictions = [decide(s, threshold, sure) for s in scored]
    pred_t = [p.type for p in predictions]
    pred_s = [p.severity for p in predictions]
    labels = sorted(set(truth.types))
    f1 = f1_score(truth.types, pred_t, labels=labels, average=None, zero_division=0)
    genuine = np.array(truth.genuine or [True] * len(pred_s), dtype=bool)
    crit_true = np.array([s == "critical" for s in truth.severities]) & genuine
    crit_pred = np.array([s == "critical" for s in pred_s]) & genuine
    hits = int((crit_true & crit_pred).sum())
    flagged = crit_pred | np.array([p.possibly_critical for p in predictions], dtype=bool)
    n = max(int(genuine.sum()), 1)
    return Scores(
        mails=len(truth.types),
        type_macro_f1=round(float(np.mean(f1)), 4),
        type_f1={label: round(float(v), 4) for label, v in zip(labels, f1, strict=True)},
        severity_accuracy=round(float(accuracy_score(truth.severities, pred_s)), 4),
        critical_recall=round(hits / max(int(crit_true.sum()), 1), 4),
        critical_precision=round(hits / max(int(crit_pred.sum()), 1), 4),
        criticals=int(crit_true.sum()),
        false_criticals_per_1000=round(1000 * int((crit_pred & ~crit_true).sum()) / n, 1),
        possibly_critical_per_1000=round(
            1000 * sum(p.possibly_critical for p in predictions) / n, 1
        ),
        critical_flagged_recall=round(
            int((crit_true & flagged).sum()) / max(int(crit_true.sum()), 1), 4
        ),
    )


def _subset(data: Labelled, idx: Sequence[int]) -> Labelled:
    return Labelled(
        [data.messages[i] for i in idx],
        [data.types[i] for i in idx],
        [data.severities[i] for i in idx],
        [data.groups[i] for i in idx],
        [data.langs[i] for i in idx],
        data.digest,
        [data.genuine[i] for i in idx] if data.genuine else [],
    )


def _held_out(
    corpus: Labelled, folds: int, shown: progress.Progress | None = None
) -> list[Scored]:
    """Out-of-fold scores, whole families held out."""
    scored: list[Scored | None] = [None] * len(corpus.messages)
    splitter = GroupKFold(n_splits=folds)
    for number, (train_idx, test_idx) in enumerate(
        splitter.split(corpus.messages, corpus.types, corpus.groups), start=1
    ):
        part = _subset(corpus, train_idx)
        fitted = fit(part.messages, part.types, part.severities, part.groups)
        for i, s in zip(test_idx, fitted.weights.scores(_subset(corpus, test_idx).messages),
                        strict=True):  # fmt: skip
            scored[i] = s
        log.debug("fold %d/%d done", number, folds)
        if shown is not None:
            shown.advance()
    return [s for s in scored if s is not None]


def _tradeoff(
    sets: Sequence[tuple[Labelled, Sequence[Scored]]],
) -> list[dict[str, float]]:
    """Per threshold: critical recall, precision and false alarms on every held-out set."""
    rows = []
    for threshold in CRITICAL_THRESHOLDS:
        row: dict[str, float] = {"threshold": threshold}
        for name, (truth, scored) in zip(("cv", "heldout"), sets, strict=False):
            s = _scores(truth, scored, threshold, SURE_LEVEL)
            row[f"{name}_critical_recall"] = s.critical_recall
            row[f"{name}_critical_precision"] = s.critical_precision
            row[f"{name}_false_criticals_per_1000"] = s.false_criticals_per_1000
            row[f"{name}_severity_accuracy"] = s.severity_accuracy
        rows.append(row)
    return rows


def pick_threshold(tradeoff: list[dict[str, float]]) -> float:
    """The highest threshold that keeps every critical a lower threshold would catch.

    On each held-out set, recall must reach the best any threshold reaches there, give
    or take RECALL_SLACK: 100% wherever 100% is reachable. Criticals no threshold
    catches were given another type; lowering the threshold further only adds false
    alarms (those mails are marked possibly critical when critical is likely elsewhere).
    """
    recalls = [k for k in tradeoff[0] if k.endswith("_critical_recall")]
    best = {k: max(row[k] for row in tradeoff) for k in recalls}
    for row in tradeoff:  # ordered from high to low threshold
        if all(row[k] >= min(best[k] - RECALL_SLACK, CRITICAL_RECALL_GOAL) for k in recalls):
            return row["threshold"]
    return tradeoff[-1]["threshold"]


def _confusions(
    truth: Labelled, scored: Sequence[Scored], threshold: float
) -> list[dict[str, Any]]:
    predicted = [decide(s, threshold, SURE_LEVEL) for s in scored]
    pairs = Counter(
        (f"{t}/{s}", f"{p.type}/{p.severity}")
        for t, s, p in zip(truth.types, truth.severities, predicted, strict=True)
        if (t, s) != (p.type, p.severity)
    )
    return [{"true": a, "predicted": b, "mails": n} for (a, b), n in pairs.most_common(15)]


def _counts(corpus: Labelled) -> dict[str, dict[str, int]]:
    return {
        "type": dict(sorted(Counter(corpus.types).items())),
        "cell": dict(sorted(Counter(map(_cell, corpus.types, corpus.severities)).items())),
        "lang": dict(sorted(Counter(corpus.langs).items())),
        "families_per_lang": dict(
            sorted(
                Counter(
                    lang for lang, _ in set(zip(corpus.langs, corpus.groups, strict=True))
                ).items()
            )
        ),
    }


def _by_lang(truth: Labelled, scored: Sequence[Scored], threshold: float) -> dict[str, Scores]:
    out = {}
    for lang in sorted(set(truth.langs)):
        idx = [i for i, value in enumerate(truth.langs) if value == lang]
        out[lang] = _scores(_subset(truth, idx), [scored[i] for i in idx], threshold, SURE_LEVEL)
    return out


def train(
    corpus_dir: Path,
    out_dir: Path,
    folds: int = 5,
    heldout_dir: Path | None = HELDOUT_DIR,
    extra_samples: Sequence[tuple[Message, str, str, str]] = (),
    extra_weight: float = 1.0,
) -> TrainReport:
    """Score on held-out families and mail, fit on everything, write model, metadata, card.

    ``extra_samples`` (message, type, severity, family), e.g. a seller's corrections,
    join the final fit only, each counted as ``extra_weight`` corpus mails: the held-out
    scores stay those of the corpus.
    """
    started = time.perf_counter()
    # Steps: reading the mail, each fold of the cross-validation, the final fit.
    with progress.track("train", total=folds + 2, unit="step") as shown:
        corpus = read_corpus(Path(corpus_dir))
        heldout = read_folder(heldout_dir) if heldout_dir else None
        shown.advance()
        parsed = time.perf_counter()
        families = len(set(corpus.groups))
        if folds < 2 or families < folds:
            raise ModelError(
                f"need at least {folds} families for {folds} folds, found {families}")
        cv = _held_out(corpus, folds, shown)
        evaluated = time.perf_counter()
        extra = list(zip(*extra_samples, strict=True)) or [(), (), (), ()]
        final = fit(
            [*corpus.messages, *extra[0]],
            [*corpus.types, *extra[1]],
            [*corpus.severities, *extra[2]],
            [*corpus.groups, *extra[3]],
            sample_weight=[1.0] * len(corpus.messages) + [extra_weight] * len(extra_samples)
            if extra_samples else None,
        )
        shown.advance()
    sets: list[tuple[Labelled, Sequence[Scored]]] = [(corpus, cv)]
    heldout_scored: list[Scored] = []
    if heldout is not None and heldout.messages:
        heldout_scored = final.weights.scores(heldout.messages)
        sets.append((heldout, heldout_scored))
    tradeoff = _tradeoff(sets)
    threshold = pick_threshold(tradeoff)
    final.weights.critical_threshold = threshold
    report = TrainReport(
        mails=len(corpus.messages),
        families=families,
        folds=folds,
        critical_threshold=threshold,
        sure_level=SURE_LEVEL,
        overall=_scores(corpus, cv, threshold, SURE_LEVEL),
        by_lang=_by_lang(corpus, cv, threshold),
        threshold_tradeoff=tradeoff,
        counts=_counts(corpus),
        confusions=_confusions(corpus, cv, threshold),
    )
    reference: dict[str, Any] = {}
    if heldout is not None and heldout.messages:
        report.heldout = _scores(heldout, heldout_scored, threshold, SURE_LEVEL)
        report.heldout_by_lang = _by_lang(heldout, heldout_scored, threshold)
        report.heldout_confusions = _confusions(heldout, heldout_scored, threshold)
        reference = _reference(final, heldout)
    out_dir = Path(out_dir)
    save(final.weights, out_dir, {"trained_at": _now(), "versions": _versions()})
    report.seconds = {
        "render_and_parse": round(parsed - started, 1),
        "cross_validation": round(evaluated - parsed, 1),
        "final_fit_and_save": round(time.perf_counter() - evaluated, 1),
        "total": round(time.perf_counter() - started, 1),
    }
    metadata = _metadata(report, corpus.digest, reference)
    (out_dir / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
    notes_path = out_dir / NOTES_FILE
    notes = notes_path.read_text(encoding="utf-8") if notes_path.exists() else None
    (out_dir / CARD_FILE).write_text(model_card(metadata, notes), encoding="utf-8")
    return report


def _reference(final: Fit, heldout: Labelled) -> dict[str, Any]:
    """scikit-learn's own probabilities on the held-out mail, to test the loader against."""
    type_proba, severity_proba = final.sklearn_proba(heldout.messages)
    classes = final.weights.type_model.classes
    out = {}
    for row, name in enumerate(heldout.groups):
        best = int(np.argmax(type_proba[row]))
        kind = classes[best]
        severity = {}
        if kind in severity_proba:
            names = final.weights.severity_models[kind].classes
            severity = dict(zip(names, map(float, severity_proba[kind][row]), strict=True))
        out[name] = {
            "type": kind,
            "type_probability": round(float(type_proba[row, best]), 6),
            "severity_probabilities": {k: round(v, 6) for k, v in severity.items()},
        }
    return out


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _versions() -> dict[str, str]:
    import scipy

    return {"scikit-learn": sklearn.__version__, "numpy": np.__version__,
            "scipy": scipy.__version__}  # fmt: skip


def _metadata(report: TrainReport, digest: str, reference: dict[str, Any]) -> dict[str, Any]:
    return {
        "format": 3,
        "trained_at": _now(),
        "versions": _versions(),
        "labels": {
            "types": list(taxonomy.TYPES),
            "severities": {k: list(v) for k, v in taxonomy.ALLOWED_SEVERITIES.items()},
        },
        "corpus_sha256": digest,
        "features": {"body_cap": BODY_CAP, "char_cap": CHAR_CAP},
        **asdict(report),
        "reference_predictions": reference,
    }


def format_report(report: TrainReport) -> str:
    o = report.overall
    lines = [
        f"{report.mails} mails, {report.families} families, {report.folds}-fold CV by family",
        f"type macro-F1 {o.type_macro_f1:.3f}  severity exact {o.severity_accuracy:.3f}  "
        f"critical recall {o.critical_recall:.3f} precision {o.critical_precision:.3f} "
        f"(threshold {report.critical_threshold}; {o.false_criticals_per_1000} false "
        "criticals per 1,000 mails)",
        "per type F1: " + "  ".join(f"{k} {v:.3f}" for k, v in o.type_f1.items()),
    ]
    for lang, s in report.by_lang.items():
        lines.append(
            f"  {lang}: {s.mails} mails  type macro-F1 {s.type_macro_f1:.3f}  severity "
            f"{s.severity_accuracy:.3f}  critical recall {s.critical_recall:.3f}"
        )
    if report.heldout is not None:
        h = report.heldout
        lines.append(
            f"models/heldout: {h.mails} genuine mails  type macro-F1 {h.type_macro_f1:.3f}  "
            f"severity {h.severity_accuracy:.3f}  critical recall {h.critical_recall:.3f} "
            f"({h.criticals})"
        )
    lines.append("seconds: " + ", ".join(f"{k} {v}" for k, v in report.seconds.items()))
    return "\n".join(lines)


def train_command(args: argparse.Namespace) -> int:
    from triage.corpus import default_corpus_dir, render_corpus

    corpus_dir = Path(args.corpus) if args.corpus else default_corpus_dir()
    out_dir = Path(args.out) if args.out else default_model_dir()
    if getattr(args, "render", False):
        rows = render_corpus(corpus_dir)
        print(f"rendered {len(rows)} mails into {corpus_dir / 'mail'}")
    report = train(corpus_dir, out_dir, folds=args.folds)
    print(format_report(report))
    print(f"model written to {out_dir / MODEL_FILE} and {out_dir / WEIGHTS_FILE}")
    return 0


# --- the model card ---------------------------------------------------------------

NOTES_FILE = "card-notes.md"  # hand-written figures on mail not in the repo, kept by retraining


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _score_rows(scores: dict[str, Any], families: dict[str, int] | None) -> list[tuple[Any, ...]]:
    return [
        (
            name,
            s["mails"],
            *((families.get(name, 0),) if families is not None else ()),
            f"{s['type_macro_f1']:.3f}",
            f"{s['severity_accuracy']:.3f}",
            f"{s['critical_recall']:.3f} ({s['criticals']})",
            s["false_criticals_per_1000"],
        )
        for name, s in scores.items()
    ]


SCORE_HEADER = ("type macro-F1", "severity exact", "critical recall (criticals)",
                "false criticals / 1,000")  # fmt: skip


def model_card(meta: dict[str, Any], notes: str | None = None) -> str:
    """The model card (``models/README.md``) written from the metadata of one training run."""
    o, counts = meta["overall"], meta["counts"]
    lang_table = _table(
        ("lang", "mails", "families", *SCORE_HEADER),
        _score_rows({"all": o, **meta["by_lang"]}, {"all": meta["families"],
                                                    **counts["families_per_lang"]}),
    )
    heldout_f1 = (meta["heldout"] or {}).get("type_f1", {})
    type_rows = [
        (t, counts["type"].get(t, 0), f"{o['type_f1'].get(t, 0):.3f}",
         f"{heldout_f1[t]:.3f}" if t in heldout_f1 else "-")
        for t in taxonomy.TYPES
    ]  # fmt: skip
    trade_rows = [
        (
            r["threshold"],
            f"{r['cv_critical_recall']:.3f}",
            f"{r['cv_critical_precision']:.3f}",
            r["cv_false_criticals_per_1000"],
            f"{r.get('heldout_critical_recall', 0):.3f}",
            r.get("heldout_false_criticals_per_1000", "-"),
        )
        for r in meta["threshold_tradeoff"]
    ]
    if meta.get("heldout"):
        h = meta["heldout"]
        heldout = (
            f"`models/heldout/` ({h['mails']} genuine mails written by hand apart from the "
            "families, five languages, never trained on), scored by the final model:\n\n"
            + _table(("lang", "mails", *SCORE_HEADER),
                     _score_rows({"all": h, **meta["heldout_by_lang"]}, None))
            + f"\n\nPossibly critical (unsure, shown as such): {h['possibly_critical_per_1000']}"
            " per 1,000 mails. Criticals said critical or marked possibly critical (so never"
            f" shown as normal or low): **{h['critical_flagged_recall']}**."
            "\n\nMistakes:\n\n"
            + _table(("true", "predicted", "mails"),
                     [(c["true"], c["predicted"], c["mails"]) for c in meta["heldout_confusions"]])
        )  # fmt: skip
    else:
        heldout = "No `models/heldout/` beside the corpus when this model was trained."
    v = meta["versions"]
    return CARD.format(
        mails=meta["mails"],
        families=meta["families"],
        folds=meta["folds"],
        trained_at=meta["trained_at"],
        digest=meta["corpus_sha256"][:16],
        macro=o["type_macro_f1"],
        sev=o["severity_accuracy"],
        crec=o["critical_recall"],
        cprec=o["critical_precision"],
        false_crit=o["false_criticals_per_1000"],
        possibly=o["possibly_critical_per_1000"],
        flagged=o["critical_flagged_recall"],
        threshold=meta["critical_threshold"],
        sure=meta["sure_level"],
        lang_table=lang_table,
        type_table=_table(("type", "mails", "CV F1", "models/heldout F1"), type_rows),
        cell_table=_table(("type/severity", "mails"), list(counts["cell"].items())),
        trade_table=_table(
            ("threshold", "CV critical recall", "CV precision", "CV false / 1,000",
             "heldout critical recall", "heldout false / 1,000"),
            trade_rows,
        ),
        confusion_table=_table(
            ("true", "predicted", "mails"),
            [(c["true"], c["predicted"], c["mails"]) for c in meta["confusions"]],
        ),
        seconds=", ".join(f"{k} {s} s" for k, s in meta["seconds"].items()),
        versions=", ".join(f"{k} {n}" for k, n in v.items()),
        body_cap=BODY_CAP,
        char_cap=CHAR_CAP,
        signal_weight=WEIGHTS.get("signal", 1.0),
        heldout=heldout,
        notes=(notes or "Not measured for this model.").strip(),
    )


CARD = """# triage classifier: model card

Written by `triage train` from its measurements (the section on real mail comes from
`models/card-notes.md`, written by hand); do not edit by hand (retrain instead).
Trained {trained_at} on {mails} mails from {families} template families
(corpus sha256 `{digest}...`).

## What it does

Given one parsed mail, it names its **type** (one of the twelve in the taxonomy) and its
**severity** (one the policy table allows for that type), with the probability of the type
as `confidence`, and marks an unsure critical as **possibly critical**. The seller's
`rules.yaml` and the trust check (is this really Amazon?) run after it; the model never
decides whether mail is genuine.

## Data

The source of the corpus is *template families* (`models/corpus/families/<lang>/*.yaml`):
each is one way of writing one kind of mail (one Amazon template of one era, one style of
buyer, one shape: HTML-only, bilingual, a forwarded copy, a quoted thread, hard-wrapped
text), with several subjects and bodies and `[[a|b]]` alternatives. `triage train`
renders each family deterministically in memory into raw RFC 5322 mail (HTML notice
layouts, text, or multipart/alternative; quoted-printable, base64 or 8bit) with realistic
random slot values; the rendered mail is not kept in the repository
(`python -m triage.corpus` writes it to `models/corpus/mail/` for the benchmarks). The
wording was written for this project after reading how Amazon's notices are worded where
sellers quote them in public; no text was copied, and no real person's mail is in it.

Cross-validated scores (families held out, see below) per language:

{lang_table}

{type_table}

<details><summary>Mails per type/severity cell</summary>

{cell_table}

</details>

## Method

- Text: subject plus the first {body_cap} characters of the readable body (HTML tags
  dropped, digits folded to 0 so order numbers and amounts teach shape, not values).
- Features: TF-IDF word 1-2-grams; TF-IDF `char_wb` 3-4-grams of the first {char_cap}
  characters; tokens for the sender's address local part, Amazon or not, subdomain,
  display-name words and the `X-Space-Notification-Type` header.
- Concepts: a lexicon per language (`triage/lexicon/<lang>.yaml`, validated when loaded)
  names what a person looks for: suspended without the word (may not sell, funds not
  transferred), at risk, reinstated; the **outcome** of an appeal, a claim or a review
  (granted vs refused, reinstated vs still deactivated, removed vs edited, action
  required vs no action required); a removal done vs one said as a condition or a threat
  ("to avoid deactivation", "if this continues"); a part of a listing taken down (images,
  title, A+ content) vs the listing; a possible pricing error; money held, delayed or
  reserved vs paid out; claims, chargebacks, returns, stars and more. Each becomes a
  token (`c:` anywhere, `s:` in the subject) in a block weighted {signal_weight}x, not
  filtered by family, so it carries to wording and languages the model never saw.
- Type: multinomial logistic regression over all blocks. Severity: one logistic
  regression per type with a choice of severity, trained on that type's mail only.
- Critical first: `critical` is said as soon as its probability within the type reaches
  **{threshold}**: the highest threshold that misses no critical in `models/heldout`
  and, in the cross-validation, none that a lower threshold would catch, give or take
  one in 100 (a threshold low enough to catch those costs two to three times the false
  alarms; the table below). Genuine criticals no threshold catches were read as another
  type. A critical said below **{sure}**, a critical runner-up severity (with at least
  half the threshold), or critical likely under another type is marked
  `possibly_critical`: alerts and the digest say "possibly critical".
- Saved as plain data: `triage-model.json` (blocks, labels, thresholds, versions) and
  `triage-model.npz` (terms, idf, weights; read with `allow_pickle=False`). Prediction
  uses numpy and scipy only (`triage/model.py`); scikit-learn is needed to train
  (1.5 or later; 1.5.2 and 1.9.1 tried). A test checks the shipped files reproduce
  scikit-learn's own probabilities on `models/heldout`.

## Held-out scores: cross-validation by family

{folds}-fold cross-validation that holds out **whole families** (`GroupKFold` on the
family), so every score is on wording the model never saw in training.

- type macro-F1: **{macro:.3f}**
- severity exactly right: **{sev:.3f}**
- critical recall: **{crec:.3f}**, precision {cprec:.3f}
- price of critical first: **{false_crit}** false critical alarms per 1,000 mails;
  {possibly} per 1,000 marked possibly critical
- criticals said critical or marked possibly critical: **{flagged:.3f}**

Critical threshold trade-off:

{trade_table}

Most frequent held-out mistakes:

{confusion_table}

Timing of this run: {seconds}.

## Blind held-out set (models/heldout)

{heldout}

## Real mail quoted in public

{notes}

## Limits

- The corpus is written, not collected: it teaches the signals a person uses (what
  happened, what is asked, the stakes), but real templates change and new ones appear.
  Mail unlike any family (a new Amazon programme, an unusual buyer) can be misread;
  confidence is then usually low.
- The lexicon matches the start of a word: German compounds are caught only where it
  spells them out. Negation is handled for the phrases it lists only.
- Only English, German, French, Italian and Spanish are covered; a language is a lexicon
  file plus families.
- Phishing that copies Amazon's wording is classified like the mail it imitates; telling
  it apart is the trust check's job, not the model's.

## Versions

Trained with {versions}. Prediction needs numpy and scipy only; `triage train` rebuilds
the files with whatever scikit-learn is installed.

## Retraining with your own corrected mail

1. Add families under `models/corpus/families/<lang>/` (copy one of the same type and
   rewrite its subjects and bodies in the way your mail is written), or fix a label.
   Slots: `{{order_id}}`, `{{asin}}`, `{{amount}}`, `{{date}}`, `{{deadline_date}}`, `{{rate}}`
   (above `{{target}}`), `{{good_rate}}` (below it), `{{tracking_rate}}` / `{{min_target}}`
   (valid tracking), `{{stars}}` / `{{star_glyphs}}` (follow a feedback family's severity);
   `[[a|b]]` picks one alternative and may nest. If your mail says something the lexicon
   does not know, add the phrase to the concept in `triage/lexicon/<lang>.yaml`.
2. `triage train` renders the families, evaluates, fits and writes `triage-model.json`,
   `triage-model.npz`, `metadata.json` and this card.
3. To use a model elsewhere, set `TRIAGE_MODEL_DIR` to the folder holding it.
"""
