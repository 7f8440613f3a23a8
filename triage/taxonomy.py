"""The labelling contract: type and severity names, and Amazon's own domains.

Mirrors the project's taxonomy spec; a change to a name here is a breaking change
for rules files, the model and the digest alike.
"""

from __future__ import annotations

TYPES: tuple[str, ...] = (
    "buyer_message",
    "order",
    "return",
    "claim",
    "feedback",
    "account_health",
    "policy",
    "message_blocked",
    "payment",
    "inventory",
    "marketing",
    "other",
)

# Most urgent first; the index is the rank used for sorting.
SEVERITIES: tuple[str, ...] = ("critical", "high", "normal", "low")

# Which severities each type can take, per the policy table.
ALLOWED_SEVERITIES: dict[str, tuple[str, ...]] = {
    "buyer_message": ("high",),
    "order": ("high", "low"),
    "return": ("normal",),
    "claim": ("critical", "high", "normal"),
    "feedback": ("high", "normal", "low"),
    "account_health": ("critical", "high", "normal"),
    "policy": ("critical", "high"),
    "message_blocked": ("high",),
    "payment": ("high", "low"),
    "inventory": ("high", "normal", "low"),
    "marketing": ("low",),
    "other": ("low",),
}

AMAZON_TLDS: tuple[str, ...] = (
    "com", "co.uk", "de", "fr", "it", "es", "ca", "com.mx", "co.jp", "in", "com.au",
    "com.br", "nl", "se", "pl", "com.tr", "ae", "sa", "sg", "com.be", "eg", "ie",
)

AMAZON_DOMAINS: frozenset[str] = frozenset(f"amazon.{tld}" for tld in AMAZON_TLDS)


def severity_rank(severity: str) -> int:
    """0 for critical up to 3 for low; sorts most urgent first."""
    return SEVERITIES.index(severity)


def is_amazon_domain(domain: str) -> bool:
    """True for amazon.<marketplace TLD> and its subdomains, nothing else.

    >>> is_amazon_domain("marketplace.amazon.de")
    True
    >>> is_amazon_domain("amazon.de.example.com")
    False
    """
    domain = domain.strip().lower().rstrip(".")
    return any(domain == d or domain.endswith("." + d) for d in AMAZON_DOMAINS)
