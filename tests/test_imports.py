"""Arrows one way: no module of the package imports, even lazily, one that imports it."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "triage"


def module_names() -> dict[str, Path]:
    """Every module of the package, sub-packages' too, by its dotted name under ``triage``:
    ``notify``, ``mailbox`` (its ``__init__``), ``mailbox.fetch``."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if parts:
            found[".".join(parts)] = path
    return found


def _resolve(dotted: str, modules: set[str]) -> str | None:
    """The most specific module a dotted name under ``triage`` names (``mailbox.fetch.X``
    -> ``mailbox.fetch``); importing a module of a sub-package is no arrow to its face."""
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in modules:
            return ".".join(parts[:end])
    return None


def imports_of(path: Path, modules: set[str], name: str | None = None) -> set[str]:
    """The ``triage`` modules a file imports anywhere in it (inside functions too)."""
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("triage"):
            base = str(node.module).removeprefix("triage").removeprefix(".")
            names += [f"{base}.{a.name}".strip(".") for a in node.names]
        elif isinstance(node, ast.Import):
            names += [a.name.removeprefix("triage.") for a in node.names
                      if a.name.startswith("triage.")]
    found = {_resolve(n, modules) for n in names}
    return {m for m in found if m is not None} - {name or path.stem}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import circle, each once, as the path that closes it."""
    found: list[list[str]] = []
    seen: set[frozenset[str]] = set()

    def walk(start: str, node: str, path: list[str]) -> None:
        for nxt in sorted(graph[node]):
            if nxt == start and frozenset(path) not in seen:
                seen.add(frozenset(path))
                found.append([*path, start])
            elif nxt not in path and nxt > start:
                walk(start, nxt, [*path, nxt])

    for module in sorted(graph):
        walk(module, module, [module])
    return found


def test_circles_are_found() -> None:
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]


def test_sub_packages_modules_are_in_the_graph() -> None:
    modules = module_names()
    assert {"notify", "mailbox", "mailbox.connection", "mailbox.fetch"} <= set(modules)
    fetch = imports_of(modules["mailbox.fetch"], set(modules), "mailbox.fetch")
    assert "mailbox.folders" in fetch
    assert "mailbox" not in fetch


def test_no_import_circle_between_triage_modules() -> None:
    modules = module_names()
    graph = {m: imports_of(path, set(modules), m) for m, path in modules.items()}
    assert circles(graph) == []
