"""Raw mail bytes become a typed :class:`Message` (mail-parser does the MIME work).

Parsing never raises: a message that cannot be read comes back with ``error`` set
to a plain reason, so one bad mail never stops a run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

import mailparser

ORDER_ID = re.compile(r"\b\d{3}-\d{7}-\d{7}\b")
ASIN = re.compile(r"\b(B0[0-9A-Z]{8})\b")


@dataclass(frozen=True)
class Message:
    """What triage knows of one mail after parsing."""

    sender_name: str = ""
    sender_address: str = ""
    sender_domain: str = ""
    reply_to: str = ""
    to: str = ""
    subject: str = ""
    date: datetime | None = None
    text: str = ""
    message_id: str = ""
    in_reply_to: str = ""
    # Topmost (most recently added) first, as the receiving server wrote them.
    authentication_results: tuple[str, ...] = ()
    notification_type: str = ""
    marketplace_id: str = ""
    order_ids: tuple[str, ...] = ()
    asins: tuple[str, ...] = ()
    buyer_name: str = ""
    marketplace: str = ""
    links: tuple[str, ...] = ()
    size: int = 0
    error: str = ""
    extra_headers: dict[str, str] = field(default_factory=dict)

    @property
    def order_id(self) -> str | None:
        """The first Amazon order ID the mail names, if any."""
        return self.order_ids[0] if self.order_ids else None


def parse(raw: bytes) -> Message:
    """Parse one raw RFC 5322 message; never raises."""
    try:
        mail = mailparser.parse_from_bytes(raw)
    except Exception as exc:  # mail-parser raises many kinds on broken input
        return Message(size=len(raw), error=f"unreadable message: {exc.__class__.__name__}: {exc}")
    name, address = (mail.from_ or [("", "")])[0]
    text = "\n".join(mail.text_plain) or "\n".join(mail.text_html)
    headers = mail.message
    auth = tuple(str(h) for h in headers.get_all("Authentication-Results") or [])
    blob = f"{mail.subject}\n{text}"
    return Message(
        sender_name=name or "",
        sender_address=(address or "").lower(),
        sender_domain=(address or "").rpartition("@")[2].lower(),
        reply_to=", ".join(a for _, a in mail.reply_to or []),
        subject=mail.subject or "",
        date=mail.date,
        text=text,
        message_id=mail.message_id or "",
        authentication_results=auth,
        notification_type=str(headers.get("X-Space-Notification-Type", "")),
        marketplace_id=str(headers.get("X-Marketplace-ID", "")),
        order_ids=tuple(dict.fromkeys(ORDER_ID.findall(blob))),
        asins=tuple(dict.fromkeys(ASIN.findall(blob))),
        size=len(raw),
    )
