"""The shipped pipeline on held-out mail whose wording is not in the training corpus.

The set (``models/heldout/``) is hand-written realistic seller mail plus phishing that
imitates Amazon, in two parts (the ``set`` column of ``labels.csv``): ``base``, the first
set, and ``wording``, the kinds of wording real Amazon mail uses (indirect money trouble,
refusals worded with recovery words, edits versus removals, forwarded copies, ...), written
apart from it. Trust must be exact on both. The classifier's figures have regression floors
on the first set only, well below what it scores there, so the floors keep their meaning as
the second set grows; the second set's figures are printed for the record
(``pytest -s tests/test_heldout.py``; ``python models/heldout/evaluate.py`` for the full
report).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

HELDOUT = Path(__file__).parent.parent / "models" / "heldout"

# Floors, not targets: a drop below one of these is a regression worth a look.
FLOORS = {"type_macro_f1": 0.55, "severity_accuracy": 0.45, "critical_recall": 0.5}
NON_ENGLISH_FLOORS = {"type_macro_f1": 0.45, "severity_accuracy": 0.35, "critical_recall": 0.4}


def load_evaluate() -> ModuleType:
    spec = importlib.util.spec_from_file_location("heldout_evaluate", HELDOUT / "evaluate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def evaluate() -> ModuleType:
    return load_evaluate()


@pytest.fixture(scope="module")
def inbox(evaluate: ModuleType) -> list:
    return evaluate.run(role="inbox")


@pytest.fixture(scope="module")
def junk(evaluate: ModuleType) -> list:
    return evaluate.run(role="junk")


def test_the_set_covers_every_language_and_phishing(evaluate: ModuleType) -> None:
    rows = evaluate.read_labels()
    langs = {lang: sum(r["lang"] == lang for r in rows) for lang in ("en", "de", "fr", "it", "es")}
    assert min(langs.values()) >= 30, langs
    assert sum(r["kind"] == "phishing" for r in rows) >= 40
    assert all((HELDOUT / "mail" / r["file"]).is_file() for r in rows)


def test_the_wording_set_covers_every_language_and_kind(evaluate: ModuleType) -> None:
    rows = [r for r in evaluate.read_labels() if r["set"] == "wording"]
    langs = {lang: sum(r["lang"] == lang for r in rows) for lang in ("en", "de", "fr", "it", "es")}
    assert min(langs.values()) >= 20, langs
    critical = {r["type"] for r in rows if r["severity"] == "critical" and r["kind"] != "phishing"}
    assert {"account_health", "policy", "claim"} <= critical


@pytest.mark.parametrize("role", ["inbox", "junk"])
def test_every_phishing_mail_is_suspicious_and_never_amazon(
    role: str, inbox: list, junk: list, evaluate: ModuleType
) -> None:
    cases = inbox if role == "inbox" else junk
    missed = [c.file for c in evaluate.suspicious_misses(cases)]
    assert missed == []


def test_phishing_in_junk_is_never_moved_out(junk: list) -> None:
    moved = [c.file for c in junk if c.kind == "phishing"
             and any(a.kind in ("move", "rescue") for a in c.verdict.actions)]
    assert moved == []


def test_no_genuine_amazon_mail_is_suspicious(inbox: list, evaluate: ModuleType) -> None:
    flagged = [c.file for c in evaluate.false_alarms(inbox) if c.from_amazon]
    assert flagged == []


def test_genuine_amazon_seller_mail_in_junk_is_rescued(junk: list) -> None:
    seller_mail = [c for c in junk if c.genuine and c.from_amazon and c.type != "other"
                   and c.verdict.type != "other"]
    kept = [c.file for c in seller_mail
            if not any(a.kind in ("move", "rescue") for a in c.verdict.actions)]
    assert seller_mail
    assert kept == []


@pytest.mark.parametrize(("subset", "floors"), [("all", FLOORS), ("non-en", NON_ENGLISH_FLOORS)])
def test_classification_stays_above_its_floors(
    subset: str, floors: dict[str, float], inbox: list, evaluate: ModuleType
) -> None:
    cases = [c for c in inbox if c.set == "base" and (subset == "all" or c.lang != "en")]
    scores = evaluate.score(cases)
    print(f"\nheld-out base {subset}: {scores}")
    for name, floor in floors.items():
        assert getattr(scores, name) >= floor, f"{name} {getattr(scores, name):.3f} < {floor}"


def test_the_wording_set_is_scored_on_its_own(inbox: list, evaluate: ModuleType) -> None:
    cases = [c for c in inbox if c.set == "wording"]
    scores = evaluate.score(cases)
    print(f"\nheld-out wording: {scores}")  # for the record: no floor until a model meets one
    assert scores.mails == sum(c.genuine for c in cases) > 0
