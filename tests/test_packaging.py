"""The package is what users get: the build ships the model, its corpus sources and the
default rules inside ``triage/bundled`` (pyproject's package data), and the code finds them
there with importlib.resources, whatever the folder it runs from."""

from __future__ import annotations

import tomllib
from pathlib import Path

from triage import resources

ROOT = Path(__file__).resolve().parent.parent


def shipped_files() -> set[Path]:
    """The repository files pyproject's package data puts into ``triage/bundled``."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    source = ROOT / config["package-dir"]["triage.bundled"]
    return {path for pattern in config["package-data"]["triage.bundled"]
            for path in source.glob(pattern) if path.is_file()}


def test_the_build_ships_the_model_rules_and_corpus_families_and_nothing_else() -> None:
    shipped = shipped_files()
    model = ROOT / "models"
    model_files = {p for p in model.iterdir() if p.is_file()}
    assert model_files <= shipped, "a file of the trained model would be left out"
    assert ROOT / "rules.yaml" in shipped
    families = set((model / "corpus" / "families").rglob("*.yaml"))
    assert families and families <= shipped
    assert not [p for p in shipped if p.suffix in (".eml", ".py", ".csv")], (
        "the rendered corpus, held-out mail or scripts would be shipped")


def test_the_code_finds_the_shipped_files() -> None:
    assert (resources.default_rules_path()).read_text().startswith("# triage rules")
    assert [p for p in resources.default_model_dir().iterdir() if p.suffix != ".md"]
    assert any((resources.corpus_dir() / "families").glob("*/*.yaml"))
