"""The decision about one message: what it is, how urgent, and what to do.

Deciding is kept apart from doing: the classifier and the rules only produce a
:class:`Verdict`; the mailbox and the notifier carry out its actions later (or
just print them, with ``--dry-run``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Kinds of action a verdict can ask for. ``alert`` pushes now, ``digest`` waits for
# the next digest, ``ignore`` drops the mail from alerts and digests, ``move`` and
# ``flag`` change the mailbox, ``rescue`` moves genuine Amazon mail out of junk.
ACTION_KINDS: tuple[str, ...] = ("alert", "digest", "ignore", "move", "flag", "rescue")
# The tag a verdict carries (and the state keeps) when the model was unsure it is critical.
POSSIBLY_CRITICAL = "possibly_critical"


@dataclass(frozen=True)
class Action:
    """One thing to do about a message; ``folder`` is set for ``move`` and ``rescue``."""

    kind: str
    folder: str | None = None

    def describe(self) -> str:
        return f"{self.kind} to {self.folder}" if self.folder else self.kind


@dataclass
class Verdict:
    """The outcome of classification plus the seller's rules for one message."""

    type: str
    severity: str
    confidence: float
    suspicious: bool = False
    amazon: bool = False
    decided_by: str = "model"
    reasons: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    order_id: str | None = None
    error: str | None = None
    # The model was unsure whether this is critical: alerts and the digest say so.
    possibly_critical: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "severity": self.severity,
            "suspicious": self.suspicious,
            "amazon": self.amazon,
            "confidence": round(self.confidence, 4),
            "order_id": self.order_id,
            "decided_by": self.decided_by,
            "possibly_critical": self.possibly_critical,
            "reasons": list(self.reasons),
            "tags": list(self.tags),
            "actions": [a.describe() for a in self.actions],
            **({"error": self.error} if self.error else {}),
        }
