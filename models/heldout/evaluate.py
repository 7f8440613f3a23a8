"""Score the shipped pipeline on the held-out mail: the full report.

    python models/heldout/evaluate.py [--folder DIR] [--model-dir DIR] [--rules rules.yaml]

Type and severity figures count genuine mail only (phishing is scored on trust);
"model" is the classifier alone, "pipeline" is what the seller sees after the rules.
``--folder`` scores any set laid out the same way (``labels.csv`` + ``mail/``), such as
real mail a user keeps outside the repository; extra columns in its ``labels.csv`` are ignored.
"""

from __future__ import annotations

import argparse
import csv
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sklearn.metrics import f1_score, precision_recall_fscore_support

from triage.message import Message, parse
from triage.model import Classifier
from triage.pipeline import Pipeline
from triage.rules import load_rules
from triage.taxonomy import is_amazon_domain
from triage.verdict import Verdict

HERE = Path(__file__).parent
ROOT = HERE.parent.parent


@dataclass(frozen=True)
class Case:
    """One held-out mail, its labels and what triage made of it."""

    file: str
    type: str
    severity: str
    lang: str
    genuine: bool
    kind: str
    message: Message
    verdict: Verdict
    model_type: str
    model_severity: str
    set: str = "base"

    @property
    def from_amazon(self) -> bool:
        return is_amazon_domain(self.message.sender_domain)


@dataclass(frozen=True)
class Scores:
    mails: int
    type_macro_f1: float
    type_accuracy: float
    severity_accuracy: float
    critical_recall: float
    criticals: int


def read_labels(folder: Path = HERE) -> list[dict[str, str]]:
    with (folder / "labels.csv").open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def run(folder: Path = HERE, model_dir: Path | None = None,
        rules_path: Path = ROOT / "rules.yaml", role: str = "inbox") -> list[Case]:
    """Every held-out mail through ``Pipeline.decide`` in one batch, as the daemon would."""
    labels = read_labels(folder)
    messages = [parse((folder / "mail" / row["file"]).read_bytes()) for row in labels]
    classifier = Classifier.load(model_dir)
    pipeline = Pipeline(classifier, load_rules(rules_path), rescue_folder="INBOX")
    verdicts = pipeline.decide(messages, folder="Junk" if role == "junk" else "INBOX", role=role)
    predictions = classifier.predict(messages)
    return [
        Case(row["file"], row["type"], row["severity"], row["lang"], row["genuine"] == "true",
             row.get("kind", ""), m, v, p.type, p.severity, row.get("set") or "base")
        for row, m, v, p in zip(labels, messages, verdicts, predictions, strict=True)
    ]


def score(cases: Sequence[Case], model: bool = False) -> Scores:
    """Type macro-F1, severity exact match and critical recall of genuine mail."""
    cases = [c for c in cases if c.genuine]
    truth = [c.type for c in cases]
    got = [c.model_type if model else c.verdict.type for c in cases]
    sev = [c.model_severity if model else c.verdict.severity for c in cases]
    criticals = [s for c, s in zip(cases, sev, strict=True) if c.severity == "critical"]
    return Scores(
        mails=len(cases),
        type_macro_f1=float(f1_score(truth, got, labels=sorted(set(truth)), average="macro",
                                     zero_division=0)),
        type_accuracy=sum(t == g for t, g in zip(truth, got, strict=True)) / len(cases),
        severity_accuracy=sum(c.severity == s for c, s in zip(cases, sev, strict=True))
        / len(cases),
        critical_recall=criticals.count("critical") / len(criticals) if criticals else 1.0,
        criticals=len(criticals),
    )


def suspicious_misses(cases: Sequence[Case]) -> list[Case]:
    """Phishing that was not flagged suspicious, or that passed as Amazon."""
    return [c for c in cases if c.kind == "phishing"
            and (not c.verdict.suspicious or c.verdict.amazon)]


def false_alarms(cases: Sequence[Case]) -> list[Case]:
    """Genuine mail flagged suspicious (Amazon's own, or anyone's)."""
    return [c for c in cases if c.genuine and c.verdict.suspicious]


def line(name: str, s: Scores) -> str:
    return (f"{name:<10} {s.mails:>5} {s.type_macro_f1:>9.3f} {s.type_accuracy:>9.3f} "
            f"{s.severity_accuracy:>9.3f} {s.critical_recall:>9.3f} ({s.criticals})")


def report(cases: Sequence[Case]) -> str:
    genuine = [c for c in cases if c.genuine]
    out = [f"{len(cases)} mails: {len(genuine)} genuine, {len(cases) - len(genuine)} phishing",
           "", f"{'':<10} {'mails':>5} {'type F1':>9} {'type acc':>9} {'sev acc':>9} "
           f"{'crit rec':>9}"]
    out.append(line("model", score(cases, model=True)))
    out.append(line("pipeline", score(cases)))
    sets = sorted({c.set for c in genuine})
    if len(sets) > 1:  # each set on its own: the first set's figures stay comparable over time
        out += ["", "by set (model, then pipeline):"]
        for name in sets:
            part = [c for c in cases if c.set == name]
            out.append(line(f"{name[:6]} mod", score(part, model=True)))
            out.append(line(f"{name[:6]} pipe", score(part)))
    langs = sorted({c.lang for c in genuine})
    out += ["", "pipeline by language:"]
    out += [line(lang, score([c for c in genuine if c.lang == lang])) for lang in langs]
    out.append(line("non-en", score([c for c in genuine if c.lang != "en"])))
    out += ["", per_type(genuine), "", "type confusions (truth -> pipeline), most frequent first:"]
    pairs = Counter((c.type, c.verdict.type) for c in genuine if c.type != c.verdict.type)
    out += [f"  {n:>3}  {t} -> {p}" for (t, p), n in pairs.most_common()]
    out += ["", "severity confusions among right types (type: truth -> pipeline):"]
    sev = Counter((c.type, c.severity, c.verdict.severity) for c in genuine
                  if c.type == c.verdict.type and c.severity != c.verdict.severity)
    out += [f"  {n:>3}  {t}: {a} -> {b}" for (t, a, b), n in sev.most_common()]
    out += ["", "misclassified files (truth | model | pipeline, decided by):"]
    out += [f"  {c.file}: {c.type}/{c.severity} | {c.model_type}/{c.model_severity} | "
            f"{c.verdict.type}/{c.verdict.severity} ({c.verdict.decided_by})"
            for c in genuine if (c.type, c.severity) != (c.verdict.type, c.verdict.severity)]
    out += ["", "trust:", f"  phishing flagged suspicious: "
            f"{sum(c.verdict.suspicious for c in cases if c.kind == 'phishing')}"
            f"/{sum(c.kind == 'phishing' for c in cases)}"]
    out += [f"  MISSED {c.file}: suspicious={c.verdict.suspicious} amazon={c.verdict.amazon}"
            for c in suspicious_misses(cases)]
    out += [f"  FALSE ALARM {c.file} ({'Amazon' if c.from_amazon else 'not Amazon'}): "
            f"{why_suspicious(c.verdict)}" for c in false_alarms(cases)]
    return "\n".join(out)


def why_suspicious(verdict: Verdict) -> str:
    return next((r for r in verdict.reasons if r.startswith("suspicious:")), "")


def per_type(cases: Sequence[Case]) -> str:
    types = sorted({c.type for c in cases})
    truth = [c.type for c in cases]
    got = [c.verdict.type for c in cases]
    p, r, f, n = precision_recall_fscore_support(truth, got, labels=types, zero_division=0)
    rows = [f"{'type':<16} {'prec':>6} {'recall':>6} {'F1':>6} {'mails':>5}"]
    rows += [f"{t:<16} {a:>6.3f} {b:>6.3f} {c:>6.3f} {d:>5}"
             for t, a, b, c, d in zip(types, p, r, f, n, strict=True)]
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=HERE,
                        help="a set with labels.csv and mail/ (default: this held-out set)")
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--rules", type=Path, default=ROOT / "rules.yaml")
    args = parser.parse_args(argv)
    print(report(run(folder=args.folder, model_dir=args.model_dir, rules_path=args.rules)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
