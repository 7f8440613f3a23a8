"""Whether a mail presents itself as Amazon, and whether it really comes from Amazon.

A mail is *suspicious* when it presents as Amazon (sender name, address, subject
or branding) but is not *authenticated*: its From domain is not one of Amazon's,
or the receiving server's ``Authentication-Results`` (the topmost one, or the
topmost one written by a server the operator trusts) does not show a pass aligned
with that domain. Headers lower in the stack were written by whoever sent the
mail and prove nothing.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from triage.message import Message, site_of

# Capitals first: some look Latin only as capitals (Greek "Μ" is "m", its "μ" a "u").
UPPER_CONFUSABLES = str.maketrans({
    "А": "a", "В": "b", "Е": "e", "К": "k", "М": "m", "Н": "h", "О": "o", "Р": "p",
    "С": "c", "Т": "t", "Х": "x", "Ѕ": "s", "І": "i", "Ј": "j", "Α": "a", "Β": "b",
    "Ε": "e", "Ζ": "z", "Η": "h", "Ι": "i", "Κ": "k", "Μ": "m", "Ν": "n", "Ο": "o",
    "Ρ": "p", "Τ": "t", "Υ": "y", "Χ": "x",
})
# Letters from other scripts that look like Latin ones, and the digits and signs
# that stand in for letters ("amaz0n"). Small on purpose: what lookalike domains
# and display names actually use, not the whole Unicode confusables table.
CONFUSABLES = str.maketrans({
    # Cyrillic
    "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o",
    "п": "n", "р": "p", "с": "c", "т": "t", "у": "y", "х": "x", "ѕ": "s", "і": "i",
    "ї": "i", "ј": "j", "ԁ": "d", "һ": "h", "ԛ": "q", "ԝ": "w", "ɡ": "g", "ӏ": "l",
    # Greek
    "α": "a", "β": "b", "ε": "e", "ι": "i", "κ": "k", "μ": "u", "ν": "v", "ο": "o",
    "ρ": "p", "τ": "t", "υ": "u", "χ": "x", "ζ": "z", "η": "n",
    # Armenian, Tai Le and Latin look-alikes
    "օ": "o", "ս": "u", "ո": "n", "հ": "h", "զ": "q", "ᥴ": "c", "ɑ": "a", "ı": "i",
    "ℓ": "l", "ᴀ": "a", "ᴍ": "m", "ᴢ": "z", "ᴏ": "o", "ɴ": "n", "ꮃ": "w",
    # Leet
    "0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s",
    "|": "l", "!": "i",
})

# "amazon" but not "Amazonian", "Amazonas", "Amazonia".
AMAZON_WORD = re.compile(r"amazon(?!ia|as\b|ien)|amzn")
# Every letter set apart ("A m a z o n", "a.m.a.z.o.n") to dodge a plain search.
SPACED_AMAZON = re.compile(r"a[\W_]+m[\W_]+a[\W_]+z[\W_]+o[\W_]+n")
PRIME_NAME = re.compile(r"\bprime\b")
# Phrases that claim Amazon's identity, as opposed to a passing mention such as
# "I bought it on Amazon". Matched on lower-cased body text.
BRANDING = re.compile(
    r"amazon(?:\.[a-z.]{2,6})?(?:,)?\s+(?:services|seller|inc\b|team|support|security|"
    r"customer|account|konto|prime|pay\b|payments|marketplace|business|europe|eu s|"
    r"gift|gutschein|voucher|kundenservice|help)"
    r"|amazon[-\s]?(?:gutschein|konto)|seller\s?central|(?:team|the)\s+amazon\b|"
    r"prime\s+(?:video|membership|mitgliedschaft)|(?:©|copyright)\s*(?:\d{4}(?:-\d{4})?\s*)?"
    r"amazon|(?:compte|cuenta|conta|account)\s+(?:de\s+)?amazon"
)
BODY_MENTIONS = 3
BODY_CHARS = 6_000

METHOD_RESULT = re.compile(r"^\s*([a-z0-9_-]+)(?:/\d+)?\s*=\s*([a-z]+)", re.IGNORECASE)
PROPERTY = re.compile(r"([a-z0-9_-]+)\.([a-z0-9_-]+)\s*=\s*(\"[^\"]*\"|[^\s;]+)", re.IGNORECASE)
COMMENT = re.compile(r"\([^()]*\)")
NEXT_METHOD = re.compile(r"\s+(?=(?:spf|dkim|dmarc|arc|auth|iprev|bimi|compauth)\s*=)")


@dataclass(frozen=True)
class Trust:
    """How far a mail's claim to be Amazon can be believed."""

    presents_as_amazon: bool  # sender name/address/subject/branding say Amazon
    authenticated: bool  # From domain is Amazon's AND the trusted AR header passes, aligned
    reason: str  # plain words: why (shown to the seller)

    @property
    def suspicious(self) -> bool:
        return self.presents_as_amazon and not self.authenticated


@dataclass(frozen=True)
class AuthResult:
    """One ``method=result`` of an Authentication-Results header and its properties."""

    method: str
    result: str
    properties: dict[str, str]


def assess(message: Message, trusted_authserv_ids: Sequence[str] = ()) -> Trust:
    """Judge one parsed message; ``trusted_authserv_ids`` narrows which AR header counts."""
    presents, why_presents = presents_as_amazon(message)
    authenticated, why_auth = authenticate(message, trusted_authserv_ids)
    if authenticated:
        return Trust(presents, True, why_auth)
    if presents:
        return Trust(True, False, f"{why_presents}, but {why_auth}")
    return Trust(False, False, f"does not present as Amazon; {why_auth}")


def presents_as_amazon(message: Message) -> tuple[bool, str]:
    """True, with the reason, when the sender, subject or branding say Amazon."""
    name = normalise(message.sender_name)
    if _names_amazon(name) or _squash(name).find("amazon") >= 0:
        return True, f"the sender name {message.sender_name!r} says Amazon"
    if PRIME_NAME.search(name) and _mentions_membership(message):
        return True, f"the sender name {message.sender_name!r} says Amazon Prime"
    if site_of(message.sender_domain) or _address_says_amazon(message.sender_address):
        return True, f"the sender address {message.sender_address!r} says Amazon"
    subject = normalise(message.subject)
    if _names_amazon(subject) or SPACED_AMAZON.search(subject) or BRANDING.search(subject):
        return True, "the subject names Amazon"
    if _branded_body(message.text[:BODY_CHARS]):
        return True, "the body is branded as Amazon"
    return False, "no sign of Amazon in sender, subject or body"


def authenticate(message: Message, trusted_authserv_ids: Sequence[str] = ()) -> tuple[bool, str]:
    """True, with the reason, when the From domain is Amazon's and the counted AR passes."""
    domain = message.sender_domain
    if not domain:
        return False, "the sender address could not be read"
    if not site_of(domain) or not domain.isascii() or "xn--" in domain:
        return False, f"the sender domain {domain} is not Amazon's"
    if message.from_count > 1:
        return False, "the mail carries more than one From header"
    header = chosen_header(message.authentication_results, trusted_authserv_ids)
    if header is None:
        if trusted_authserv_ids and message.authentication_results:
            return False, "no Authentication-Results header from a trusted server"
        return False, "there is no Authentication-Results header"
    passed = passing_method(parse_results(header), domain)
    if passed:
        return True, f"{passed} for {domain}"
    if any(passing_method(parse_results(h), domain) for h in message.authentication_results):
        return False, "only an Authentication-Results header lower in the stack passes"
    return False, f"SPF, DKIM and DMARC do not pass for {domain}"


def normalise(text: str) -> str:
    """Lower-case Latin letters, with look-alikes, accents and invisible characters undone."""
    if not text.isascii():
        text = unicodedata.normalize("NFKD", text)
    # ASCII has nothing to decompose, drop or unfold, and casefolds as it lower-cases.
    folded = text.lower() if text.isascii() else text.translate(_UNMARK).casefold()
    folded = folded.translate(CONFUSABLES)
    return folded.replace("rn", "m").replace("vv", "w")


class _Unmark(dict[int, str | int | None]):
    """A str.translate table: combining marks and format characters dropped, capitals
    that look Latin made Latin (``UPPER_CONFUSABLES``), everything else kept.

    Filled as characters are met, so each character costs a lookup in C instead of
    a call to ``unicodedata.category`` in Python.
    """

    def __missing__(self, code: int) -> str | int | None:
        if unicodedata.category(chr(code)) in ("Mn", "Cf", "Me"):
            kept: str | int | None = None
        else:
            kept = UPPER_CONFUSABLES.get(code, code)
        if len(self) < 65_536:  # text from anywhere must not grow it without end
            self[code] = kept
        return kept


_UNMARK = _Unmark()


def _squash(text: str) -> str:
    return "".join(c for c in text if c.isalnum())


def _names_amazon(text: str) -> bool:
    return AMAZON_WORD.search(text) is not None


def _address_says_amazon(address: str) -> bool:
    # Local part and domain apart, so "@" never joins them into a false word.
    local, _, domain = address.rpartition("@")
    for piece in (local, domain, _unpunycode(domain)):
        folded = normalise(piece)
        if _names_amazon(folded) or "amazon" in _squash(folded):
            return True
    return False


def _unpunycode(domain: str) -> str:
    return ".".join(_unpunycode_label(label) for label in domain.split("."))


def _unpunycode_label(label: str) -> str:
    if not label.startswith("xn--"):
        return label
    try:
        return label.encode("ascii").decode("idna")
    except UnicodeError:
        return label


def _mentions_membership(message: Message) -> bool:
    text = f"{message.subject} {message.text[:BODY_CHARS]}".lower()
    return any(w in normalise(text) for w in ("amazon", "membership", "mitglied", "abonnement"))


def _branded_body(text: str) -> bool:
    lowered = text.lower() if text.isascii() else normalise(text)
    if BRANDING.search(lowered):
        return True
    return len(AMAZON_WORD.findall(lowered)) >= BODY_MENTIONS


def authserv_id(header: str) -> str:
    """The name of the server that wrote an AR header ("" when it gave none)."""
    first = COMMENT.sub(" ", header).split(";", 1)[0].strip()
    if "=" in first:  # Microsoft's servers start straight with "spf=..."
        return ""
    return first.split()[0].lower() if first else ""


def chosen_header(headers: Sequence[str], trusted_authserv_ids: Sequence[str]) -> str | None:
    """The topmost AR header, or the topmost one a trusted server wrote."""
    if not trusted_authserv_ids:
        return headers[0] if headers else None
    trusted = {t.strip().lower() for t in trusted_authserv_ids}
    return next((h for h in headers if authserv_id(h) in trusted), None)


def parse_results(header: str) -> list[AuthResult]:
    """The ``method=result`` entries of one AR header, comments removed."""
    text = header
    while "(" in text and COMMENT.search(text):
        text = COMMENT.sub(" ", text)
    results = []
    for chunk in _split_results(text):
        found = METHOD_RESULT.match(chunk)
        if not found:
            continue
        props = {
            f"{ptype.lower()}.{prop.lower()}": value.strip('"').lower()
            for ptype, prop, value in PROPERTY.findall(chunk[found.end():])
        }
        results.append(AuthResult(found.group(1).lower(), found.group(2).lower(), props))
    return results


def _split_results(text: str) -> list[str]:
    # Results are separated by ";", though some servers omit it between results,
    # so a new "method=" at the start of a word also starts a new result.
    chunks: list[str] = []
    for part in text.split(";"):
        pieces = NEXT_METHOD.split(part)
        chunks.extend(p for p in pieces if p.strip())
    return chunks


def passing_method(results: Sequence[AuthResult], from_domain: str) -> str:
    """Which check passes aligned with ``from_domain``, as plain words ("" if none)."""
    org = site_of(from_domain)
    for r in results:
        if r.method == "dmarc" and r.result == "pass":
            header_from = r.properties.get("header.from", "")
            if header_from and site_of(header_from) == org:
                return "DMARC passes"
    for r in results:
        if r.method == "dkim" and r.result == "pass":
            signer = r.properties.get("header.d") or r.properties.get("header.i", "")
            if site_of(signer.rpartition("@")[2]) == org:
                return "a DKIM signature passes"
    for r in results:
        if r.method == "spf" and r.result == "pass":
            mailfrom = r.properties.get("smtp.mailfrom", "")
            if site_of(mailfrom.rpartition("@")[2]) == org:
                return "SPF passes"
    return ""
