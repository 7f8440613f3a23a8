"""Chat targets get a chat's shape: Markdown, in messages the service takes and a person reads.

Slack takes about 40,000 characters but folds anything past a few thousand behind
"show more", so a digest goes as readable blocks of 3,500; Telegram takes 4,096 and
Discord 2,000. A long body is split at line boundaries (a long line at a space, never
inside a link), and past a few messages the rest is summarised in one line that says
where to read it all. Telegram's Apprise plugin would otherwise be handed the HTML
mail, which it cannot show.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from triage.document import summarise_for_chat


@dataclass(frozen=True)
class Shape:
    """How one chat service is written to: Markdown, at most ``max_chars`` per message."""

    max_chars: int
    max_parts: int


# Apprise's schema for each chat service; the limits are the services' own (Slack's is
# the readable block, not the hard limit).
SHAPES: dict[str, Shape] = {
    "slack": Shape(max_chars=3_500, max_parts=8),
    "tgram": Shape(max_chars=4_096, max_parts=4),
    "discord": Shape(max_chars=2_000, max_parts=5),
}
DEFAULT_PARTS = 6


def schema(service: Any) -> str:
    """The Apprise schema of a service (``slack``, ``tgram``, ``mailto``, ...)."""
    found = getattr(service, "secure_protocol", None) or getattr(service, "protocol", None)
    if isinstance(found, (tuple, list)):
        found = found[0] if found else None
    return str(found or "")


def shape_of(service: Any, body_format: str, max_chars: int) -> tuple[str, int]:
    """The body format and length to use for an Apprise service."""
    shape = SHAPES.get(schema(service))
    if shape is None:
        return body_format, max_chars
    return "markdown", min(shape.max_chars, max_chars)


def parts(body: str, limit: int, service: Any = None) -> list[str]:
    """A chat body cut to the service's size, the tail summarised past its message count."""
    shape = SHAPES.get(schema(service)) if service is not None else None
    return summarise_for_chat(body, limit, shape.max_parts if shape else DEFAULT_PARTS)
