"""Render the held-out sheets (``sheets/*.txt``) into raw mail and ``labels.csv``.

Each sheet entry is written by hand; this script only adds what a mail server would:
trace and ``Authentication-Results`` headers, a date, a Message-ID, the MIME
structure and transfer encoding. Output is deterministic (seeded per file), so a
rerun reproduces the committed files byte for byte.

    python models/heldout/build.py

Sheets come in two sets: ``sheets/*.txt`` (the first set, ``base``) and
``sheets/wording/*.txt`` (``wording``: kinds of wording read in real Amazon mail, written apart
from the first set and from the training corpus; its files are named ``w-...``).
``labels.csv`` says which set a mail is in.

Sheet format: an entry starts with ``@@ <type> <severity> <lang> <format> [key=value ...]``
(format: text, qp, b64, html, html-b64, alt, alt-b64, fwd), then its headers, a blank line and the
body. ``fwd`` is a forwarded copy sent as an attachment: the body is the forwarder's note, a line
``--- attached ---``, then the attached message's own headers, a blank line and its body.
Keys: ``kind=phishing``, ``auth=pass|own|fail|lower|ses|none|softfail``,
``year=YYYY``. Placeholders: ``{oid}``, ``{oid2}``, ``{asin}``, ``{fba}``,
``{alias}``, ``{date}``, ``{amount}`` (filled per mail from the seeded generator).
"""

from __future__ import annotations

import csv
import hashlib
import random
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import default
from email.utils import format_datetime, parseaddr
from html import escape
from pathlib import Path

HERE = Path(__file__).parent
SHEETS = HERE / "sheets"
SETS = {"base": SHEETS, "wording": SHEETS / "wording"}
FILE_PREFIX = {"base": "", "wording": "w-"}
ATTACHED = re.compile(r"^--- attached ---$", re.MULTILINE)
MAIL = HERE / "mail"
LABELS = HERE / "labels.csv"

SELLERS = {
    "en": "Brightnook Home <orders@brightnookhome.com>",
    "de": "Holzwerk Maier <shop@holzwerk-maier.de>",
    "fr": "Atelier Lumen <contact@atelier-lumen.fr>",
    "it": "Casa Olivetti <vendite@casaolivetti.it>",
    "es": "Tienda Solana <ventas@tiendasolana.es>",
}
ORDER_PREFIXES = {
    "en": ("111", "112", "113", "114", "702", "026", "203"),
    "de": ("302", "303", "304", "305", "306", "028"),
    "fr": ("402", "403", "404", "171", "405"),
    "it": ("406", "407", "408", "171", "402"),
    "es": ("403", "405", "408", "171", "402"),
}
CURRENCY = {"en": "${:,.2f}", "de": "{:.2f} €", "fr": "{:.2f} €", "it": "€ {:.2f}",
            "es": "{:.2f} €"}
ENTRY = re.compile(r"^@@ (.+)$", re.MULTILINE)
# Text Amazon itself reuses word for word under every relayed buyer message.
SNIPPETS = {
    "fyi_en": (
        "For Your Information: To help arbitrate disputes and preserve trust and safety, we "
        "retain all messages buyers and sellers send through Amazon.com for two years. This "
        "includes your response to the message below. Amazon uses filtering technology to "
        "protect buyers and sellers from possible fraud. Messages that fail this filtering "
        "will not be transmitted."
    ),
    "fyi_de": (
        "Zu Ihrer Information: Um bei Streitfällen vermitteln zu können und um Vertrauen und "
        "Sicherheit zu gewährleisten, speichern wir alle Nachrichten, die Käufer und "
        "Verkäufer über Amazon.de senden, für zwei Jahre. Dies schließt Ihre Antwort auf die "
        "untenstehende Nachricht ein. Amazon verwendet Filtertechnologien, um Käufer und "
        "Verkäufer vor möglichem Betrug zu schützen. Nachrichten, die diese Filter nicht "
        "passieren, werden nicht übermittelt."
    ),
    "fyi_fr": (
        "Pour information : afin de faciliter le règlement des litiges et de préserver la "
        "confiance et la sécurité, nous conservons pendant deux ans tous les messages "
        "échangés entre acheteurs et vendeurs via Amazon.fr, y compris votre réponse au "
        "message ci-dessous. Amazon utilise une technologie de filtrage pour protéger les "
        "acheteurs et les vendeurs contre la fraude. Les messages qui ne passent pas ce "
        "filtrage ne seront pas transmis."
    ),
    "fyi_it": (
        "Per tua informazione: per aiutare a risolvere le controversie e preservare la "
        "fiducia e la sicurezza, conserviamo per due anni tutti i messaggi che acquirenti e "
        "venditori si scambiano tramite Amazon.it, inclusa la tua risposta al messaggio "
        "seguente. Amazon utilizza una tecnologia di filtraggio per proteggere acquirenti e "
        "venditori da possibili frodi. I messaggi che non superano il filtro non verranno "
        "trasmessi."
    ),
    "fyi_es": (
        "Para tu información: para ayudar a resolver disputas y preservar la confianza y la "
        "seguridad, conservamos durante dos años todos los mensajes que compradores y "
        "vendedores se envían a través de Amazon.es, incluida tu respuesta al mensaje "
        "siguiente. Amazon utiliza tecnología de filtrado para proteger a compradores y "
        "vendedores de posibles fraudes. Los mensajes que no superen este filtro no se "
        "transmitirán."
    ),
}


@dataclass
class Entry:
    type: str
    severity: str
    lang: str
    fmt: str
    headers: list[tuple[str, str]]
    body: str
    options: dict[str, str] = field(default_factory=dict)
    file: str = ""
    set: str = "base"

    @property
    def kind(self) -> str:
        return self.options.get("kind", "")


def read_sheets() -> list[Entry]:
    entries: list[Entry] = []
    for name, folder in SETS.items():
        for sheet in sorted(folder.glob("*.txt")):
            text = sheet.read_text(encoding="utf-8")
            chunks = ENTRY.split(text)[1:]
            for meta, raw in zip(chunks[::2], chunks[1::2], strict=True):
                e = entry(meta, raw.strip("\n"))
                e.set = name
                entries.append(e)
    return entries


def entry(meta: str, raw: str) -> Entry:
    words = meta.split()
    options = dict(w.split("=", 1) for w in words[4:])
    head, _, body = raw.partition("\n\n")
    headers = [(k.strip(), v.strip()) for k, _, v in (line.partition(":")
                                                       for line in head.splitlines())]
    kind, severity, lang, fmt = words[:4]
    return Entry(kind, severity, lang, fmt, headers, body.rstrip() + "\n", options)


def name_files(entries: list[Entry]) -> None:
    counts: dict[str, int] = {}
    for e in entries:
        stem = f"{FILE_PREFIX[e.set]}{'phish-' if e.kind else ''}{e.lang}-{e.type}-{e.severity}"
        counts[stem] = counts.get(stem, 0) + 1
        e.file = f"{stem}-{counts[stem]:02d}.eml"


def slots(e: Entry, rng: random.Random) -> dict[str, str]:
    def order_id() -> str:
        prefix = rng.choice(ORDER_PREFIXES[e.lang])
        return f"{prefix}-{rng.randrange(10**7):07d}-{rng.randrange(10**7):07d}"

    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    return {
        "oid": order_id(),
        "oid2": order_id(),
        "asin": "B0" + "".join(rng.choice(alphabet) for _ in range(8)),
        "fba": "FBA" + "".join(rng.choice(alphabet) for _ in range(9)),
        "alias": "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(14)),
        "amount": CURRENCY[e.lang].format(rng.randrange(900, 48000) / 100),
        **SNIPPETS,
    }


def fill(text: str, values: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), m.group(0)), text)


def when(e: Entry, rng: random.Random) -> datetime:
    year = int(e.options.get("year", rng.randrange(2017, 2026)))
    start = datetime(year, 1, 1, tzinfo=UTC)
    return start + timedelta(seconds=rng.randrange(364 * 86400))


def domain_of(address: str) -> str:
    return parseaddr(address)[1].rpartition("@")[2].lower()


def is_amazon(domain: str) -> bool:
    return bool(re.search(r"(^|\.)amazon\.(com|co\.uk|de|fr|it|es|ca|com\.mx|co\.jp|com\.au|"
                          r"in|nl|se|pl|com\.be|ie)$", domain))


def bounce(domain: str, rng: random.Random) -> str:
    tag = "".join(rng.choice("0123456789abcdef") for _ in range(24))
    if is_amazon(domain):
        site = domain.split("amazon.", 1)[1]
        return f"{tag}@bounces.amazon.{site}"
    return f"bounce-{tag}@{domain}"


def auth_results(e: Entry, sender: str, rng: random.Random) -> list[str]:
    """Authentication-Results headers, topmost first, as the receiving server wrote them."""
    domain = domain_of(sender)
    mode = e.options.get("auth", "pass")
    mailfrom = bounce(domain, rng)
    ip = f"54.240.{rng.randrange(1, 20)}.{rng.randrange(1, 250)}"
    good = (f"mx.google.com; dkim=pass header.i=@{domain} header.s=sel{rng.randrange(1, 9)} "
            f"header.b={_b(rng)}; spf=pass (google.com: domain of {mailfrom} designates {ip} "
            f"as permitted sender) smtp.mailfrom={mailfrom}; dmarc=pass "
            f"(p=QUARANTINE sp=QUARANTINE dis=NONE) header.from={domain}")
    if is_amazon(domain):
        good = good.replace("; spf=", f"; dkim=pass header.i=@amazonses.com header.s=224i4yxa "
                                       f"header.b={_b(rng)}; spf=", 1)
    bad_ip = ".".join(str(rng.randrange(1, 250)) for _ in range(4))
    address = sender_addr(sender)
    fail = (f"mx.google.com; spf=softfail (google.com: domain of transitioning {address}"
            f" does not designate {bad_ip} as permitted sender) smtp.mailfrom="
            f"{sender_addr(sender)}; dmarc=fail (p=QUARANTINE sp=QUARANTINE dis=QUARANTINE) "
            f"header.from={domain}")
    if mode == "pass":
        return [good]
    if mode == "own":  # the lookalike domain authenticates itself perfectly well
        return [good.replace("(p=QUARANTINE sp=QUARANTINE dis=NONE)", "(p=NONE sp=NONE dis=NONE)")]
    if mode == "fail":
        return [fail]
    if mode == "softfail":
        return [fail.replace("dmarc=fail", "dkim=none; dmarc=fail")]
    if mode == "lower":
        forged = (f"mx.amazon.com; dkim=pass header.i=@{domain}; spf=pass "
                  f"smtp.mailfrom=bounces.{domain}; dmarc=pass header.from={domain}")
        return [fail, forged]
    if mode == "ses":
        ses = f"{_b(rng)[:20]}@amazonses.com"
        return [f"mx.google.com; dkim=pass header.i=@amazonses.com header.s=ug7nbtf4 "
                f"header.b={_b(rng)}; spf=pass (google.com: domain of {ses} designates {ip} as "
                f"permitted sender) smtp.mailfrom={ses}; dmarc=fail (p=QUARANTINE "
                f"sp=QUARANTINE dis=QUARANTINE) header.from={domain}"]
    if mode == "none":
        return []
    raise ValueError(f"unknown auth mode {mode!r} in {e.file}")


def sender_addr(sender: str) -> str:
    return parseaddr(sender)[1]


def _b(rng: random.Random) -> str:
    return "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
                   for _ in range(8))


def to_html(body: str, amazon: bool) -> str:
    paragraphs = []
    for block in re.split(r"\n\s*\n", body.strip()):
        lines = [_linkify(escape(line)) for line in block.splitlines()]
        paragraphs.append("<p>" + "<br>\n".join(lines) + "</p>")
    content = "\n".join(paragraphs)
    if not amazon:
        return f"<html><body style=\"font-family:Arial,sans-serif\">\n{content}\n</body></html>\n"
    return (
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><style>body{font-family:Arial,"
        "sans-serif;font-size:14px;color:#111}td.f{font-size:11px;color:#767676}</style></head>"
        "<body><table width=\"100%\" cellpadding=\"0\" cellspacing=\"0\" border=\"0\">"
        "<tr><td style=\"padding:12px 0;border-bottom:1px solid #ddd\"><img src=\"https://m.media"
        "-amazon.com/images/G/01/sc/logo-seller-central.png\" alt=\"amazon seller central\" "
        "width=\"160\"></td></tr>\n<tr><td style=\"padding:16px 0\">\n"
        f"{content}\n</td></tr></table></body></html>\n"
    )


def _linkify(line: str) -> str:
    return re.sub(r"(https?://[^\s<]+)", r'<a href="\1">\1</a>', line)


def render(e: Entry) -> bytes:
    rng = random.Random(hashlib.sha256(e.file.encode()).digest())
    values = slots(e, rng)
    headers = [(k, fill(v, values)) for k, v in e.headers]
    body = fill(e.body, values)
    sender = next(v for k, v in headers if k == "From")
    domain = domain_of(sender)
    sent = when(e, rng)
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = SELLERS[e.lang]
    msg["Date"] = format_datetime(sent)
    msg["Message-ID"] = message_id(domain, sent, rng)
    extra_from = []
    for k, v in headers:
        if k == "From2":  # a second From header, a spoofing trick
            extra_from.append(f"From: {v}")
        elif k != "From":
            msg[k] = v
    amazon_looking = is_amazon(domain) or e.kind == "phishing"
    put_body(msg, body, e.fmt, amazon_looking)
    if msg.is_multipart():  # the stdlib picks a random boundary; ours must be reproducible
        msg.set_boundary(f"=_{_hex(rng, 24)}")
    trace = trace_headers(e, sender, domain, sent, rng)
    head = "".join(f"{line}\n" for line in [*trace, *extra_from])
    return head.encode("utf-8") + msg.as_bytes(policy=default)


def message_id(domain: str, sent: datetime, rng: random.Random) -> str:
    stamp = f"{int(sent.timestamp() * 1000):x}"
    if is_amazon(domain):
        tail = "-".join(_hex(rng, n) for n in (8, 4, 4, 4, 12))
        return f"<0100{stamp}-{tail}-000000@email.amazonses.com>"
    return f"<{stamp}.{_hex(rng, 16)}@{domain or 'localhost'}>"


def _hex(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(n))


def trace_headers(e: Entry, sender: str, domain: str, sent: datetime,
                  rng: random.Random) -> list[str]:
    rcpt = sender_addr(SELLERS[e.lang])
    got = format_datetime(sent + timedelta(seconds=rng.randrange(2, 40)))
    relay = "a8-49.smtp-out.amazonses.com" if is_amazon(domain) else f"mail.{domain}"
    lines = [
        f"Delivered-To: {rcpt}",
        f"Received: by 2002:a05:7300:{_hex(rng, 4)}:b0:{_hex(rng, 3)}:{_hex(rng, 4)} with SMTP "
        f"id {_b(rng)}; {got}",
        f"Return-Path: <{bounce(domain, rng)}>",
        f"Received: from {relay} ({relay} [54.240.8.{rng.randrange(1, 250)}]) by mx.google.com "
        f"with ESMTPS id {_b(rng)}.{rng.randrange(100)} for <{rcpt}> (version=TLS1_3 "
        f"cipher=TLS_AES_128_GCM_SHA256 bits=128/128); {got}",
    ]
    results = auth_results(e, sender, rng)
    # Received-SPF and friends come before the topmost AR header, as Gmail writes them.
    lines += [f"Authentication-Results: {fold(r)}" for r in results]
    return lines


def fold(value: str) -> str:
    return value.replace("; ", ";\n       ")


def put_body(msg: EmailMessage, body: str, fmt: str, amazon: bool) -> None:
    if fmt == "fwd":
        attach_forward(msg, body)
        return
    html = to_html(body, amazon)
    if fmt == "text":
        msg.set_content(body, cte="8bit" if not body.isascii() else "7bit")
    elif fmt == "qp":
        msg.set_content(body, cte="quoted-printable")
    elif fmt == "b64":
        msg.set_content(body, cte="base64")
    elif fmt == "html":
        msg.set_content(html, subtype="html", cte="quoted-printable")
    elif fmt == "html-b64":
        msg.set_content(html, subtype="html", cte="base64")
    elif fmt == "alt":
        msg.set_content(body, cte="quoted-printable")
        msg.add_alternative(html, subtype="html", cte="quoted-printable")
    elif fmt == "alt-b64":
        msg.set_content(body, cte="base64")
        msg.add_alternative(html, subtype="html", cte="base64")
    else:
        raise ValueError(f"unknown format {fmt!r}")


def attach_forward(msg: EmailMessage, body: str) -> None:
    """The forwarder's note, with the forwarded mail attached whole (message/rfc822)."""
    parts = ATTACHED.split(body, maxsplit=1)
    if len(parts) != 2:
        raise ValueError("a fwd entry needs a '--- attached ---' line")
    note, attached = parts
    msg.set_content(note.rstrip() + "\n", cte="quoted-printable")
    head, _, inner_body = attached.strip("\n").partition("\n\n")
    inner = EmailMessage()
    for line in head.splitlines():
        name, _, value = line.partition(":")
        inner[name.strip()] = value.strip()
    inner.set_content(inner_body.rstrip() + "\n", cte="quoted-printable")
    msg.add_attachment(inner, filename="forwarded.eml")


def main() -> None:
    entries = read_sheets()
    name_files(entries)
    MAIL.mkdir(parents=True, exist_ok=True)
    for old in MAIL.glob("*.eml"):
        old.unlink()
    with LABELS.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["file", "type", "severity", "lang", "genuine", "kind", "set"])
        for e in entries:
            (MAIL / e.file).write_bytes(render(e))
            genuine = "false" if e.kind == "phishing" else "true"
            writer.writerow([e.file, e.type, e.severity, e.lang, genuine, e.kind, e.set])
    print(f"{len(entries)} mails written to {MAIL}")


if __name__ == "__main__":
    main()
