"""Mail provider presets: where each provider's IMAP server is and how to log in.

The presets are data (``providers.yaml`` in the package), validated when read: a
missing or unknown key, or a bad value, is refused with the file, the line and why.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Any

import yaml

from triage.errors import ConfigError

SECURITY_MODES = ("tls", "starttls", "none")
AUTH_METHODS = ("password", "oauth2")
LOGIN_PROVIDERS = ("microsoft", "google")
FILE_NAME = "providers.yaml"


@dataclass(frozen=True)
class Provider:
    """One preset, as ``triage init`` writes it and ``TRIAGE_IMAP_PROVIDER`` applies it."""

    name: str
    label: str
    host: str
    port: int
    security: str
    junk_folder: str
    auth: str
    notes: str
    login: str = ""


REQUIRED = {"label": str, "host": str, "port": int, "security": str, "junk_folder": str,
            "auth": str, "notes": str}
OPTIONAL = {"login": str}


class _LineLoader(yaml.SafeLoader):
    """Keeps each mapping's line, so a refusal can name it."""


def _mapping_with_line(loader: _LineLoader, node: yaml.MappingNode) -> dict[str, Any]:
    mapping = {str(k): v for k, v in loader.construct_mapping(node, deep=True).items()}
    mapping["__line__"] = node.start_mark.line + 1
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_with_line)


def parse(text: str, source: str) -> dict[str, Provider]:
    """The presets of one YAML document; ConfigError names ``source``, the line and why."""
    try:
        data = yaml.load(text, Loader=_LineLoader)  # a SafeLoader: no arbitrary objects
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of provider names")
    data.pop("__line__", None)
    return {str(name): _provider(str(name), entry, source) for name, entry in data.items()}


def _provider(name: str, entry: Any, source: str) -> Provider:
    if not isinstance(entry, dict):
        raise ConfigError(f"{source}: provider {name!r}: expected a mapping of settings")
    where = f"{source}:{entry.pop('__line__')}: provider {name!r}"
    unknown = set(entry) - set(REQUIRED) - set(OPTIONAL)
    if unknown:
        raise ConfigError(f"{where}: unknown key {sorted(unknown)[0]!r}")
    for key, kind in {**REQUIRED, **OPTIONAL}.items():
        if key not in entry:
            if key in REQUIRED:
                raise ConfigError(f"{where}: {key!r} is missing")
            continue
        if not isinstance(entry[key], kind) or isinstance(entry[key], bool):
            raise ConfigError(f"{where}: {key!r} must be a {kind.__name__}")
    for key, allowed in (("security", SECURITY_MODES), ("auth", AUTH_METHODS)):
        if entry[key] not in allowed:
            raise ConfigError(f"{where}: {key!r} must be one of {', '.join(allowed)}")
    if entry.get("login", "") not in ("", *LOGIN_PROVIDERS):
        raise ConfigError(f"{where}: 'login' must be one of {', '.join(LOGIN_PROVIDERS)}")
    return Provider(name=name, **entry)


@cache
def presets() -> dict[str, Provider]:
    """Every shipped preset by name (read once)."""
    resource = files("triage").joinpath(FILE_NAME)
    return parse(resource.read_text(encoding="utf-8"), f"triage/{FILE_NAME}")


def preset(name: str) -> Provider:
    """The preset called ``name``; ConfigError lists the known names otherwise."""
    known = presets()
    if name not in known:
        raise ConfigError(
            f"TRIAGE_IMAP_PROVIDER: unknown provider {name!r} (known: {', '.join(known)})"
        )
    return known[name]
