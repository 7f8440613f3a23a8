"""The date by which the seller must act on a mail: the one the mail states, else
Amazon's usual terms (24 hours for a buyer message, days for a claim)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from triage import replyclock
from triage.message import Message
from triage.verdict import Verdict

CLAIM_DAYS = {"A-to-z claim": 3, "Chargeback": 7}
DEADLINE_CHARS = 6000
# A date the mail itself gives: "respond by November 26, 2025", "before 26/11/2025".
# Each opens with a look ahead at the first letters of its words: a pattern that opens
# with ``\b`` is tried in full at every character of the text, one that opens with a
# class of letters only where they are (the same matches, in half the time).
DEADLINE_TEXT = re.compile(
    r"(?=[aprsv])"
    r"\b(?:respond|response|reply|appeal|provide|submit|act|verify)\b[^.\n]{0,80}?"
    r"\b(?:by|before|no later than|until)\s+(?:\w+day,?\s+)?"
    r"(?P<date>\w+\.? \d{1,2},? \d{4}|\d{1,2} \w+\.? \d{4}|\d{4}-\d{2}-\d{2})",
    re.IGNORECASE,
)
WITHIN_DAYS = re.compile(
    r"(?=[ar])"
    r"\b(?:respond|response|reply|appeal)\b[^.\n]{0,60}?\bwithin\s+(?P<n>\d{1,2})\s+days?\b",
    re.IGNORECASE,
)
DATE_FORMATS = (
    "%B %d, %Y",
    "%B %d %Y",
    "%b %d, %Y",
    "%b %d %Y",
    "%d %B %Y",
    "%d %b %Y",
    "%Y-%m-%d",
)


def claim_label(sender: str, subject: str, notification_type: str = "") -> str:
    """``A-to-z claim``, ``Chargeback`` or ``Claim``, from the sender and subject."""
    blob = f"{sender} {subject} {notification_type}".lower()
    if "atoz" in blob or "a-to-z" in blob or "a_z_claim" in blob:
        return "A-to-z claim"
    if "chargeback" in blob or sender.lower().startswith("cb-"):
        return "Chargeback"
    return "Claim"


def find_deadline(message: Message, verdict: Verdict, received: datetime) -> datetime | None:
    """The date by which the seller must act: the mail's own, else Amazon's usual terms."""
    if verdict.type == "buyer_message":
        return received + replyclock.REPLY_WINDOW
    if verdict.severity not in ("critical", "high"):
        return None  # nothing the seller must act on by a date
    # Amazon states the deadline near the top; the rest is help text and footers.
    text = f"{message.subject}\n{message.text[:DEADLINE_CHARS]}"
    match = DEADLINE_TEXT.search(text)
    if match:
        given = _parse_date(match["date"])
        if given is not None:
            return given
    match = WITHIN_DAYS.search(text)
    if match:
        return received + timedelta(days=int(match["n"]))
    if verdict.type == "claim" and verdict.severity == "critical":
        label = claim_label(message.sender_address, message.subject, message.notification_type)
        if label in CLAIM_DAYS:
            return received + timedelta(days=CLAIM_DAYS[label])
    return None


def _parse_date(text: str) -> datetime | None:
    text = " ".join(text.replace(".", "").split())
    for fmt in DATE_FORMATS:
        try:
            parsed = datetime.strptime(text, fmt)
        except ValueError:
            continue
        # The end of the day named: Amazon counts the whole day.
        return parsed.replace(hour=23, minute=59, tzinfo=UTC)
    return None


