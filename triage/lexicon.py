"""The concept lexicon: per-language data files, checked when they are read.

Each ``triage/lexicon/<lang>.yaml`` maps concept names to patterns (``common.yaml``
holds those every language shares: brand names, Latin stems). A new language is a new
file here plus families in the corpus; no code changes. Every pattern is compiled and
checked on load, and a bad one is refused with its file, line and reason.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from importlib import resources
from pathlib import Path

import yaml

from triage.errors import TriageError

CONCEPT = re.compile(r"^[a-z][a-z0-9_]*$")
ESCAPE = re.compile(r"\\.")


class LexiconError(TriageError):
    """A lexicon file is refused: ``file:line: reason``."""

    def __init__(self, path: str, line: int | None, reason: str) -> None:
        where = f"{path}:{line}" if line else path
        super().__init__(f"{where}: {reason}")
        self.path, self.line, self.reason = path, line, reason


def lexicon_files() -> list[Path]:
    """The shipped lexicon files, one per language plus ``common.yaml``."""
    folder = resources.files("triage").joinpath("lexicon")
    return sorted(Path(str(f)) for f in folder.iterdir() if f.name.endswith(".yaml"))


def load(
    paths: Iterable[Path] | None = None, check: Callable[[str], None] | None = None
) -> dict[str, tuple[str, ...]]:
    """Concept -> patterns, merged over the files (all shipped ones by default).

    ``check`` is called with each pattern and raises ValueError for one the matcher
    cannot use; its message becomes the reason. Patterns are not compiled here (the
    matcher compiles them, joined, once); :func:`find_bad_pattern` names the culprit
    when that fails.
    """
    merged: dict[str, list[str]] = {}
    for path in lexicon_files() if paths is None else paths:
        for concept, patterns in read_file(Path(path), check).items():
            merged.setdefault(concept, []).extend(patterns)
    return {concept: tuple(patterns) for concept, patterns in merged.items()}


def read_file(
    path: Path, check: Callable[[str], None] | None = None, compile_each: bool = False
) -> dict[str, list[str]]:
    """One lexicon file's concepts and patterns; a bad file raises LexiconError."""
    name = str(path)
    try:
        root = yaml.compose(path.read_text(encoding="utf-8"), Loader=_LOADER)
    except (OSError, UnicodeDecodeError) as exc:
        raise LexiconError(name, None, f"cannot read: {exc}") from exc
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        raise LexiconError(name, line, f"not valid YAML: {exc.problem}") from exc
    if not isinstance(root, yaml.MappingNode):
        raise LexiconError(name, None, "expected a mapping with 'language' and 'concepts'")
    fields = {k.value: v for k, v in root.value if isinstance(k, yaml.ScalarNode)}
    unknown = sorted(set(fields) - {"language", "concepts"})
    if unknown or "concepts" not in fields:
        raise LexiconError(name, _line(root), "expected the keys 'language' and 'concepts'")
    concepts = fields["concepts"]
    if not isinstance(concepts, yaml.MappingNode):
        raise LexiconError(name, _line(concepts), "'concepts' must map names to lists")
    found: dict[str, list[str]] = {}
    for key, value in concepts.value:
        concept = str(key.value)
        if not CONCEPT.match(concept):
            raise LexiconError(name, _line(key), f"bad concept name {concept!r}")
        if concept in found:
            raise LexiconError(name, _line(key), f"concept {concept!r} is listed twice")
        if not isinstance(value, yaml.SequenceNode) or not value.value:
            raise LexiconError(name, _line(value), f"{concept}: expected a list of patterns")
        found[concept] = [_pattern(name, node, check, compile_each) for node in value.value]
    return found


def _pattern(
    name: str, node: yaml.Node, check: Callable[[str], None] | None, compile_each: bool = False
) -> str:
    if not isinstance(node, yaml.ScalarNode) or not node.value:
        raise LexiconError(name, _line(node), "a pattern must be a non-empty string")
    pattern = str(node.value)
    try:
        if compile_each:
            re.compile(pattern)
        letters = ESCAPE.sub("", pattern)
        if letters != letters.lower():
            raise ValueError("patterns are matched on lower-case text: write them in lower case")
        if check is not None:
            check(pattern)
    except (re.error, ValueError) as exc:
        raise LexiconError(name, _line(node), f"bad pattern {pattern!r}: {exc}") from exc
    return pattern


def find_bad_pattern(paths: Iterable[Path] | None = None) -> None:
    """Compile every pattern on its own; raise LexiconError (file, line) for the first bad one.

    Compiling 1,300 patterns one by one doubles start-up, so the matcher compiles them
    joined and calls this only when that fails.
    """
    for path in lexicon_files() if paths is None else paths:
        read_file(Path(path), compile_each=True)


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
