"""A seller's mailbox, generated deterministically: most of it is not Amazon.

Newsletters, carrier shipping notices, supplier mail and personal mail come from the
templates below; the Amazon share comes from the held-out set (``models/heldout/mail``),
genuine notices and phishing alike. Every mail is HTML-heavy where its kind is, 5-20 KB,
and has its own Message-ID. The same seed gives the same mailbox on every run.
"""

from __future__ import annotations

import base64
import random
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HELDOUT = ROOT / "models" / "heldout" / "mail"

# The share of each kind in the mailbox (Amazon last; the rest is not Amazon).
MIX = (("newsletter", 0.34), ("shipping", 0.16), ("supplier", 0.16), ("personal", 0.12),
       ("amazon", 0.22))

BRANDS = ("Etsy Seller Digest", "Shopify Plus", "Helium 10", "Jungle Scout", "Canva", "Zapier",
          "IKEA Family", "Decathlon", "Zalando", "Booking.com", "LinkedIn", "Medium Daily",
          "The Verge", "Trustpilot", "Mailchimp", "Klaviyo", "Sellics", "Printful")
CARRIERS = (("UPS", "ups.com", "1Z{n:016d}"), ("DHL Express", "dhl.com", "JD{n:018d}"),
            ("FedEx", "fedex.com", "{n:012d}"), ("DPD", "dpd.co.uk", "{n:014d}"),
            ("La Poste Colissimo", "laposte.fr", "6A{n:011d}"), ("GLS", "gls-group.eu", "{n:011d}"))
SUPPLIERS = (("Ningbo Homeware Co.", "nbhomeware.cn"), ("Linen House Textiles", "linenhouse.pt"),
             ("Packaging Direct", "packagingdirect.co.uk"), ("Keller Druck GmbH", "kellerdruck.de"),
             ("Atelier Ceramica", "atelierceramica.it"), ("FreightOne Logistics", "freightone.com"))
PEOPLE = ("Anna Keller", "Tom Ridley", "Lucía Romero", "Marco Bellini", "Sophie Martin",
          "Jonas Weber", "Priya Nair", "Chen Wei", "Olivia Brown", "Hugo Lefèvre")
WORDS = ("order", "spring", "launch", "collection", "warehouse", "discount", "shipping", "guide",
         "analytics", "customers", "weekend", "campaign", "insight", "update", "report", "story",
         "review", "growth", "invoice", "design", "product", "listing", "photo", "bundle",
         "stock", "season", "event", "offer", "member", "newsletter")

SELLER = "orders@brightnookhome.com"


def _words(rnd: random.Random, n: int) -> str:
    return " ".join(rnd.choice(WORDS) for _ in range(n))


def _headers(rnd: random.Random, n: int, sender: str, subject: str, when: datetime,
             extra: str = "") -> str:
    domain = sender.rsplit("@", 1)[-1].rstrip(">")
    return (
        f"Return-Path: <bounce-{n}@mail.{domain}>\r\n"
        f"Received: from mail.{domain} (mail.{domain} [203.0.113.{n % 250}]) by mx.example.net "
        f"with ESMTPS id {n:x}; {format_datetime(when)}\r\n"
        f"Authentication-Results: mx.example.net; dkim=pass header.d={domain}; "
        f"spf=pass smtp.mailfrom={domain}; dmarc=pass header.from={domain}\r\n"
        f"DKIM-Signature: v=1; a=rsa-sha256; d={domain}; s=s1; h=from:to:subject:date; "
        f"b={base64.b64encode(rnd.randbytes(96)).decode()}\r\n"
        f"From: {sender}\r\nTo: Brightnook Home <{SELLER}>\r\nSubject: {subject}\r\n"
        f"Date: {format_datetime(when)}\r\nMessage-ID: <seller-{n}@{domain}>\r\n"
        f"MIME-Version: 1.0\r\n{extra}"
    )


def _qp_html(html: str) -> str:
    import quopri

    return quopri.encodestring(html.encode("utf-8")).decode("ascii").replace("\n", "\r\n")


def _alternative(rnd: random.Random, text: str, html: str) -> str:
    boundary = f"=_alt_{rnd.getrandbits(64):016x}"
    return (
        f"Content-Type: multipart/alternative; boundary=\"{boundary}\"\r\n\r\n"
        f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Transfer-Encoding: quoted-printable\r\n\r\n{_qp_html(text)}\r\n"
        f"--{boundary}\r\nContent-Type: text/html; charset=utf-8\r\n"
        f"Content-Transfer-Encoding: quoted-printable\r\n\r\n{_qp_html(html)}\r\n"
        f"--{boundary}--\r\n"
    )


def _html_blocks(rnd: random.Random, size: int, title: str) -> str:
    """Table layout, inline styles, images and links, as marketing HTML is."""
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><style>body{margin:0;padding:0}"
        ".btn{background:#0a7;color:#fff;padding:12px 24px;border-radius:4px}"
        "td{font-family:Helvetica,Arial,sans-serif}</style></head><body>"
        "<table role='presentation' width='100%' cellpadding='0' cellspacing='0' border='0'>"
        f"<tr><td align='center' style='padding:24px'><h1 style='font-size:24px'>{title}</h1>"
        "</td></tr>"
    ]
    n = 0
    while sum(map(len, parts)) < size:
        n += 1
        parts.append(
            "<tr><td style='padding:16px 32px;border-bottom:1px solid #eee'>"
            f"<img src='https://cdn.example.com/img/{rnd.getrandbits(40):x}.jpg' width='560' "
            f"alt='{_words(rnd, 3)}' style='display:block;max-width:100%'>"
            f"<h2 style='font-size:18px;color:#222'>{_words(rnd, 5).capitalize()}</h2>"
            f"<p style='font-size:14px;line-height:22px;color:#555'>{_words(rnd, 45)}.</p>"
            f"<a class='btn' href='https://click.example.com/t/{rnd.getrandbits(64):x}?u={n}'>"
            "Read more</a></td></tr>"
        )
    parts.append(
        "<tr><td style='font-size:11px;color:#999;padding:24px'>You receive this because you "
        "subscribed. <a href='https://click.example.com/unsubscribe'>Unsubscribe</a> | "
        "<a href='https://click.example.com/prefs'>Preferences</a></td></tr></table></body></html>"
    )
    return "".join(parts)


def newsletter(rnd: random.Random, n: int, when: datetime, size: int) -> bytes:
    brand = rnd.choice(BRANDS)
    domain = re.sub(r"[^a-z0-9]", "", brand.lower()) + ".com"
    subject = f"{brand}: {_words(rnd, 4)}"
    html = _html_blocks(rnd, size, subject)
    text = f"{subject}\n\n{_words(rnd, 80)}\n\nUnsubscribe: https://click.example.com/u"
    head = _headers(rnd, n, f"\"{brand}\" <news@{domain}>", subject, when,
                    "List-Unsubscribe: <https://click.example.com/unsubscribe>\r\n"
                    "Precedence: bulk\r\n")
    return (head + _alternative(rnd, text, html)).encode()


def shipping(rnd: random.Random, n: int, when: datetime, size: int) -> bytes:
    carrier, domain, pattern = rnd.choice(CARRIERS)
    tracking = pattern.format(n=rnd.getrandbits(40))
    subject = rnd.choice(("Your package is on its way", "Delivery update", "Out for delivery",
                          "Your shipment has been delivered")) + f": {tracking}"
    html = _html_blocks(rnd, size, f"{carrier} shipment {tracking}")
    text = f"{carrier}: shipment {tracking}. Track: https://www.{domain}/track?id={tracking}"
    head = _headers(rnd, n, f"{carrier} <noreply@{domain}>", subject, when)
    return (head + _alternative(rnd, text, html)).encode()


def supplier(rnd: random.Random, n: int, when: datetime, size: int) -> bytes:
    name, domain = rnd.choice(SUPPLIERS)
    person = rnd.choice(PEOPLE)
    invoice = f"INV-{rnd.randint(10000, 99999)}"
    subject = rnd.choice((f"Invoice {invoice}", f"Proforma {invoice} for PO-{n}",
                          "Re: Container booking for next week", "Updated price list"))
    body = f"Dear Brightnook team,\n\n{_words(rnd, 60)}.\n\nBest regards,\n{person}\n{name}\n"
    html = _html_blocks(rnd, size // 2, subject)
    mixed = f"=_mix_{rnd.getrandbits(64):016x}"
    pdf = base64.encodebytes(rnd.randbytes(max(1024, size // 3))).decode().replace("\n", "\r\n")
    head = _headers(rnd, n, f"{person} <{person.split()[0].lower()}@{domain}>", subject, when)
    return (
        head + f"Content-Type: multipart/mixed; boundary=\"{mixed}\"\r\n\r\n--{mixed}\r\n"
        + _alternative(rnd, body, html)
        + f"--{mixed}\r\nContent-Type: application/pdf; name=\"{invoice}.pdf\"\r\n"
        f"Content-Disposition: attachment; filename=\"{invoice}.pdf\"\r\n"
        f"Content-Transfer-Encoding: base64\r\n\r\n{pdf}\r\n--{mixed}--\r\n"
    ).encode()


def personal(rnd: random.Random, n: int, when: datetime, size: int) -> bytes:
    person = rnd.choice(PEOPLE)
    subject = rnd.choice(("Dinner on Saturday?", "Photos from the trip", "Re: Re: the flat",
                          "Quick question", "Fwd: school newsletter"))
    lines = [f"Hi,\n\n{_words(rnd, 40)}.\n\n{person.split()[0]}\n"]
    depth = 0
    while sum(map(len, lines)) < size:
        depth += 1
        quoted = "\n".join("> " * depth + _words(rnd, 12) for _ in range(8))
        lines.append(f"\nOn {format_datetime(when - timedelta(days=depth))}, wrote:\n{quoted}\n")
    text = "".join(lines)
    head = _headers(rnd, n, f"{person} <{person.split()[0].lower()}@gmail.com>", subject, when)
    return (head + "Content-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: quoted-printable\r\n\r\n" + _qp_html(text)).encode()


AMAZON_PAD = (
    "<table width='100%'><tr><td style='font-size:11px;color:#767676;padding:8px'>This email "
    "was sent by Amazon Services Europe S.a r.l. Was this email helpful? Seller Central | Help "
    "| Settings | Notification preferences.</td></tr></table>\r\n"
)
MESSAGE_ID = re.compile(rb"^Message-ID:[^\r\n]*\r?\n", re.IGNORECASE | re.MULTILINE)
HTML_END = re.compile(rb"</body>", re.IGNORECASE)


def amazon(raw: bytes, n: int, size: int) -> bytes:
    """A held-out mail with its own Message-ID, its HTML grown to ``size`` with footer rows."""
    raw = MESSAGE_ID.sub(b"", raw, count=1)
    raw = f"Message-ID: <amazon-{n}@triage.invalid>\r\n".encode() + raw
    missing = size - len(raw)
    if missing > 0:
        pad = (AMAZON_PAD * (missing // len(AMAZON_PAD) + 1)).encode()
        # Inside the HTML when it is not encoded, else appended to the last part's text.
        match = None if b"base64" in raw.lower() else HTML_END.search(raw)
        if match is not None:
            raw = raw[: match.start()] + pad + raw[match.start():]
        else:
            raw = raw + b"\r\n" + pad
    return raw


GENERATED = {"newsletter": newsletter, "shipping": shipping, "supplier": supplier,
             "personal": personal}


def mailbox(count: int, seed: int = 13) -> Iterator[tuple[str, bytes, datetime]]:
    """(kind, raw, date) for ``count`` mails, the newest first, spread over 20 days."""
    rnd = random.Random(seed)
    held = sorted(HELDOUT.glob("*.eml"))
    kinds = [k for k, _ in MIX]
    weights = [w for _, w in MIX]
    now = datetime.now(UTC)
    for n in range(count):
        kind = rnd.choices(kinds, weights)[0]
        size = rnd.randint(5 * 1024, 20 * 1024)
        when = now - timedelta(minutes=20 * 24 * 60 * n / count)
        if kind == "amazon":
            raw = amazon(held[rnd.randrange(len(held))].read_bytes(), n, size)
        else:
            raw = GENERATED[kind](rnd, n, when, size)
        yield kind, raw, when
