"""Raw mail bytes become a typed :class:`Message`.

The MIME tree comes from the standard library's parser (the same one mail-parser
builds on) and mail-parser's header helpers decode names, RFC 2047 words and dates.
We do not run ``MailParser.parse()`` itself: it decodes and re-encodes every
attachment, parses every ``Received`` header and builds its header dictionaries
twice, which made it four times slower than we can afford and gave us nothing we
read. Attachments are never decoded here.

Parsing never raises: a message that cannot be read comes back with ``error`` set
to a plain reason, so one bad mail never stops a run.

Speed: a daemon that backfills a mailbox parses thousands of mails a second, so the
forms nearly every mail uses (a plain header block, ``"Name" <addr>``, the usual
date, a lone ``charset`` parameter) are read directly, giving what the stdlib and
mail-parser would give, and anything else goes to those parsers. The tables in
``tests/test_message.py`` hold both kinds of form.
"""

from __future__ import annotations

import email
import email.message
import itertools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.parser import HeaderParser
from email.policy import compat32
from email.utils import getaddresses, parsedate_to_datetime
from functools import lru_cache

from lxml import etree
from mailparser.utils import decode_header_part, get_addresses

from triage.taxonomy import AMAZON_DOMAINS

# Both patterns start with a literal so the regex engine can skip ahead in C; the
# characters before a match are checked by hand (a leading class is 7x slower).
ORDER_TAIL = re.compile(r"-\d{7}-\d{7}(?![\d-])")
ASIN = re.compile(r"B0[0-9A-Z]{8}\b")
URL = re.compile(r"https?://[^\s\"'<>()\[\]{}]+", re.IGNORECASE)
# A Content-Type whose only parameter is a plain charset, as nearly every text part's is.
ONLY_CHARSET = re.compile(
    r'[^;"\\*<(]*;[ \t]*charset[ \t]*=[ \t]*(?:"([\w.:+-]+)"|([\w.:+-]+))[ \t]*;?[ \t]*',
    re.ASCII | re.IGNORECASE,
)
# The same for a multipart's boundary, quoted or not.
ONLY_BOUNDARY = re.compile(
    r'[^;"\\*<(]*;\s*boundary\s*=\s*(?:"([^"\\<>\x00-\x1f\x7f]+)"|([^\s;"\\<>()*]+))\s*;?\s*',
    re.ASCII | re.IGNORECASE,
)
# "Mon, 23 Nov 2026 07:48:26 +0000", with or without the day's name; anything else
# goes to the stdlib's parser.
PLAIN_DATE = re.compile(
    r"\s*(?:[A-Za-z]{3},\s*)?(\d{1,2})\s+([A-Za-z]{3})\s+(\d{4})\s+(\d\d):(\d\d):(\d\d)"
    r"\s+([+-])(\d\d)(\d\d)(?:\s.*)?",
    re.ASCII | re.DOTALL,
)
MONTHS = {name: number for number, name in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)}
# A header block the stdlib's parser would read as headers alone: ``Name: value``
# lines, each maybe folded onto lines that start with a space or a tab.
HEADER_BLOCK = re.compile(r"(?:[\041-\071\073-\176]+:[^\n]*\n(?:[ \t][^\n]*\n)*)*")
HEADER_FIELD = re.compile(r"([\041-\071\073-\176]+):([^\n]*(?:\n[ \t][^\n]*)*)\n")
ZERO_WIDTH = ("\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad")
# Besides "\n" and " ": the line breaks of str.splitlines() and the other spaces
# of str.split(), each with what it stands for in tidied text.
ODD_SPACES = (
    ("\r", "\n"), ("\x0b", "\n"), ("\x0c", "\n"), ("\x1c", "\n"), ("\x1d", "\n"),
    ("\x1e", "\n"), ("\t", " "), ("\x1f", " "),
)
WIDE_SPACES = (
    ("\x85", "\n"), ("\u2028", "\n"), ("\u2029", "\n"), ("\xa0", " "), ("\u1680", " "),
    *((chr(code), " ") for code in range(0x2000, 0x200B)),
    ("\u202f", " "), ("\u205f", " "), ("\u3000", " "),
)

# Caps keep one huge mail from costing more than a normal one: notices say what
# matters near the top, and the classifier only reads the first few pages.
MAX_RAW_BYTES = 4_000_000
MAX_HTML_CHARS = 300_000
MAX_TEXT_CHARS = 20_000
MAX_LINKS = 50
MAX_DEPTH = 20
# Parts whose body is a whole message of its own (delivery-status is not: it is
# header blocks, and we read it as plain text).
NESTED_MESSAGES = frozenset(("message/rfc822", "message/global", "message/external-body",
                             "message/partial", "message/news"))
MAX_HREFS = 500
MAX_ADDRESS_CHARS = 2_000

# The mailbox forms nearly every sender writes, in plain ASCII: ``"Name" <addr>``,
# ``Name <addr>``, ``<addr>`` and a bare ``addr``. They are read here directly, as
# the stdlib and mail-parser would read them; anything else (encoded words,
# comments, groups, escapes, several mailboxes) goes to mail-parser's helper.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_ADDR_SPEC = rf"{_ATEXT}(?:\.{_ATEXT})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
_PHRASE_WORD = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+"  # "Co." is a word of a name
_FWS = r"[ \t\n]"
SIMPLE_MAILBOX = re.compile(
    rf'{_FWS}*(?:(?:"(?P<quoted>[^"\\\x00-\x1f\x7f]*)"'
    rf"|(?P<phrase>{_PHRASE_WORD}(?:{_FWS}+{_PHRASE_WORD})*)){_FWS}*)?"
    rf"<(?P<angle>{_ADDR_SPEC})>{_FWS}*"
    rf"|{_FWS}*(?P<bare>{_ADDR_SPEC}){_FWS}*"
)

RELAY_NAME = re.compile(r"^\s*(?P<name>.+?)\s+-\s+Amazon\s+Marketplace\s*$", re.IGNORECASE)
SUBJECT_BUYER = re.compile(
    r"(?:from\s+Amazon\s+customer|von\s+Amazon[-\s]Kund(?:e|in)|"
    r"de\s+la\s+part\s+du\s+client\s+Amazon|del\s+cliente\s+(?:de\s+)?Amazon|"
    r"dal\s+cliente\s+Amazon)\s+(?P<name>[^()\n]+?)\s*\(",
    re.IGNORECASE,
)

# Seller Partner API marketplace IDs (X-Marketplace-ID) and the site each one is.
MARKETPLACE_IDS: dict[str, str] = {
    "ATVPDKIKX0DER": "amazon.com",
    "A2EUQ1WTGCTBG2": "amazon.ca",
    "A1AM78C64UM0Y8": "amazon.com.mx",
    "A2Q3Y263D00KWC": "amazon.com.br",
    "A1F83G8C2ARO7P": "amazon.co.uk",
    "A1PA6795UKMFR9": "amazon.de",
    "A13V1IB3VIYZZH": "amazon.fr",
    "APJ6JRA9NG5V4": "amazon.it",
    "A1RKKUPIHCS9HS": "amazon.es",
    "A1805IZSGTT6HS": "amazon.nl",
    "A2NODRKZP88ZB9": "amazon.se",
    "A1C3SOZRARQ6R3": "amazon.pl",
    "AMEN7PMS3EDWL": "amazon.com.be",
    "A28R8C7NBKEWEA": "amazon.ie",
    "A33AVAJ2PDY3EV": "amazon.com.tr",
    "A2VIGQ35RCS4UG": "amazon.ae",
    "A17E79C6D8DWNP": "amazon.sa",
    "ARBP9OOSHTCHU": "amazon.eg",
    "A21TJRUUN4KGV": "amazon.in",
    "A1VC38T7YXB528": "amazon.co.jp",
    "A39IBJ37TRP1C6": "amazon.com.au",
    "A19VAU5U5O7RUS": "amazon.sg",
}

BLOCK_TAGS = frozenset((
    "address", "article", "aside", "blockquote", "body", "br", "center", "dd", "div", "dl",
    "dt", "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5",
    "h6", "header", "hr", "html", "li", "main", "nav", "ol", "p", "pre", "section", "table",
    "tbody", "tfoot", "thead", "title", "tr", "ul",
))
CELL_TAGS = frozenset(("td", "th"))
SKIP_TAGS = frozenset(("script", "style", "head", "noscript", "template", "svg"))
# A private-use character marks the line breaks the markup asks for, so the line
# ends of the HTML source can become spaces, as a browser would show them.
BREAK = "\ue000"
_HEADER_PARSER = HeaderParser(policy=compat32)
_HTML_PARSER = etree.HTMLParser(
    remove_comments=True, remove_pis=True, no_network=True, recover=True, default_doctype=False
)
_HREFS = etree.XPath("//a/@href", smart_strings=False)


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
    # Seller Central links only (https://sellercentral.amazon.<tld>/...).
    links: tuple[str, ...] = ()
    size: int = 0
    error: str = ""
    extra_headers: dict[str, str] = field(default_factory=dict)
    references: tuple[str, ...] = ()
    # Every distinct host the mail links to, lower-cased, in order of appearance.
    link_hosts: tuple[str, ...] = ()
    # How many From headers the mail carries; more than one is a spoofing trick.
    from_count: int = 0

    @property
    def order_id(self) -> str | None:
        """The first Amazon order ID the mail names, if any."""
        return self.order_ids[0] if self.order_ids else None


def parse(raw: bytes) -> Message:
    """Parse one raw RFC 5322 message; never raises."""
    if not raw.strip():
        return Message(size=len(raw), error="empty message")
    try:
        mime = split_mime(raw[:MAX_RAW_BYTES])
        return _build(mime, len(raw))
    except RecursionError:
        return Message(size=len(raw), error="unreadable message: MIME parts nested too deeply")
    except Exception as exc:  # the stdlib parser and decoders raise many kinds on broken input
        return tolerant_parse(raw, f"{exc.__class__.__name__}: {exc}")


# Characters no XML tree may hold; one of them in an HTML part (a 0x1C from a broken
# template) made the whole mail unreadable.
XML_UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffe\uffff]")


def tolerant_parse(raw: bytes, reason: str) -> Message:
    """The fallback for a mail the fast path could not read: never silent.

    One stray byte (a control character in the HTML, a non-ASCII byte near a MIME
    boundary) must not hide a claim. The standard library's parser, which tolerates
    nearly anything, builds the tree again; text parts are decoded leniently and
    cleaned of control characters; the mail is then read as usual. When even that
    fails, the headers alone are kept (sender, subject, Message-ID) with ``error``
    set, so the mail is still shown, as "could not read", with who sent it and what
    it said it was.
    """
    size = len(raw)
    try:
        mime = email.message_from_bytes(raw[:MAX_RAW_BYTES], policy=compat32)
        if mime.get_content_maintype() == "multipart" and not mime.is_multipart():
            # The declared boundary is nowhere in the body (a stray byte in it): the
            # body's own first delimiter line tells the boundary really used.
            repaired = _repair_boundary(raw[:MAX_RAW_BYTES])
            if repaired is not None:
                mime = email.message_from_bytes(repaired, policy=compat32)
        _clean_text_parts(mime)
        return _build(mime, size)
    except RecursionError:
        reason = "MIME parts nested too deeply"
    except Exception as exc:  # see parse(): whatever a broken mail makes the parsers raise
        reason = f"{reason}; then {exc.__class__.__name__}: {exc}"
    return _headers_only(raw, size, f"unreadable message: {reason}")


DELIMITER_LINE = re.compile(rb"^--([\x21-\xff]{1,200}?)[ \t]*\r?$", re.MULTILINE)
BOUNDARY_PARAMETER = re.compile(rb'boundary\s*=\s*(?:"[^"\n]*"|[^\s;]+)', re.IGNORECASE)


REPAIRED_BOUNDARY = b"=_triage_repaired_boundary_="


def _repair_boundary(raw: bytes) -> bytes | None:
    head, body = _head_and_body(raw.replace(b"\r\n", b"\n"))
    found = DELIMITER_LINE.search(body)
    if not found or not BOUNDARY_PARAMETER.search(head):
        return None
    used = found.group(1).removesuffix(b"--")
    # A plain ASCII stand-in, in the header and on every delimiter line: a boundary
    # with a non-ASCII byte cannot be matched by any parser.
    boundary = REPAIRED_BOUNDARY if not used.isascii() or b'"' in used else used
    body = body.replace(b"\n--" + used, b"\n--" + boundary)
    if body.startswith(b"--" + used):
        body = b"--" + boundary + body[len(used) + 2:]
    head = BOUNDARY_PARAMETER.sub(lambda _: b'boundary="' + boundary + b'"', head, count=1)
    return head + b"\n" + body


def _clean_text_parts(mime: email.message.Message) -> None:
    """Decode each text part leniently into clean text, so reading it cannot fail."""
    for part in mime.walk():
        if part.is_multipart() or part.get_content_maintype() != "text":
            continue
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            payload = str(part.get_payload()).encode("utf-8", "surrogateescape")
        charset = part.get_content_charset() or "utf-8"
        try:
            text = payload.decode(charset, errors="replace")
        except LookupError:
            text = payload.decode("utf-8", errors="replace")
        del part["Content-Transfer-Encoding"]
        clean = XML_UNSAFE.sub(" ", text).encode("utf-8")
        part.set_payload(clean.decode("ascii", "surrogateescape"))
        part.set_param("charset", "utf-8")


def _headers_only(raw: bytes, size: int, error: str) -> Message:
    try:
        head = _head_and_body(raw[:MAX_RAW_BYTES].replace(b"\r\n", b"\n"))[0]
        headers = _index(_HEADER_PARSER.parsestr(head.decode("ascii", "surrogateescape")))
        name, address = _first_address(headers.get("from"))
        return Message(
            sender_name=XML_UNSAFE.sub(" ", name),
            sender_address=address,
            sender_domain=address.rpartition("@")[2],
            subject=XML_UNSAFE.sub(" ", _header(headers, "subject")),
            message_id=_header(headers, "message-id"),
            authentication_results=tuple(
                _unfold(v) for v in headers.get("authentication-results", ())
            ),
            from_count=len(headers.get("from", ())),
            size=size,
            error=error,
        )
    except Exception:  # even the headers are beyond reading: the error is all there is
        return Message(size=size, error=error)


def split_mime(
    raw: bytes, depth: int = 0, default_type: str = "text/plain"
) -> email.message.Message:
    """The MIME tree of a message, as the stdlib parser would build it, only faster.

    The stdlib's feed parser reads every line in Python, attachments included, which
    was two thirds of our parse time. Here only the header blocks go through it;
    bodies are cut at their boundaries with ``bytes.find`` and left undecoded until
    a text part is read.
    """
    if b"\r" in raw:  # a one-byte search is many times faster than the two-byte one
        raw = raw.replace(b"\r\n", b"\n")
    head, body = _head_and_body(raw)
    mime, early = _parse_head(head)
    mime.set_default_type(default_type)
    if early:
        body = early + (b"\n" + body if body else b"")
    if depth >= MAX_DEPTH:
        mime.set_payload(body.decode("ascii", "surrogateescape"))
        return mime
    header = mime.get("content-type")
    content_type = _media_type(header, default_type)
    maintype, _, subtype = content_type.partition("/")
    boundary = _boundary(mime, header) if maintype == "multipart" else None
    if boundary:
        inner = "message/rfc822" if subtype == "digest" else "text/plain"
        parts = _split_parts(body, boundary.encode("ascii", "surrogateescape"))
        mime.set_payload([split_mime(part, depth + 1, inner) for part in parts])
    elif content_type in NESTED_MESSAGES:
        mime.set_payload([split_mime(body, depth + 1)])
    else:
        mime.set_payload(body.decode("ascii", "surrogateescape"))
    return mime


def _boundary(mime: email.message.Message, value: object) -> str | None:
    """``mime.get_boundary()``, read directly when boundary is the only parameter."""
    found = ONLY_BOUNDARY.fullmatch(value) if isinstance(value, str) else None
    if not found:
        return mime.get_boundary()
    return (found.group(1) or found.group(2)).rstrip()


def _head_and_body(raw: bytes) -> tuple[bytes, bytes]:
    if raw.startswith(b"\n"):
        return b"", raw[1:]
    end = raw.find(b"\n\n")
    if end < 0:
        return raw, b""
    return raw[: end + 1], raw[end + 2 :]


def _parse_head(head: bytes) -> tuple[email.message.Message, bytes]:
    """The headers as the stdlib's parser reads them, and what it found to be body.

    A plain block of ``Name: value`` lines, nearly every mail's, is read with two
    regular expressions; anything else (a stray line, an mbox ``From `` line, a
    bare carriage return) goes to the stdlib's parser itself.
    """
    text = head.decode("ascii", "surrogateescape")
    lines = text if text.endswith("\n") else text + "\n"
    if not text or "\r" in text or not HEADER_BLOCK.fullmatch(lines):
        mime = _HEADER_PARSER.parsestr(text)
        # A line that is no header ends the headers early; the parser kept the rest.
        early = mime.get_payload()
        return mime, early.encode("utf-8", "surrogateescape") if isinstance(early, str) else b""
    mime = email.message.Message(policy=compat32)
    for name, value in HEADER_FIELD.findall(lines):
        mime.set_raw(name, value.lstrip(" \t"))
    return mime, b""


def _split_parts(body: bytes, boundary: bytes) -> list[bytes]:
    """The parts between ``--boundary`` lines, up to the closing ``--boundary--``."""
    delimiter = b"--" + boundary
    lines: list[tuple[int, int]] = []  # where each delimiter line starts and ends
    closed = False
    at = body.find(delimiter)
    while at >= 0 and not closed:
        line_end = body.find(b"\n", at)
        line_end = len(body) if line_end < 0 else line_end
        rest = body[at + len(delimiter) : line_end]
        closed = rest.startswith(b"--")
        # A longer boundary that merely starts with ours is not ours.
        if (at == 0 or body[at - 1] == 0x0A) and not rest.removeprefix(b"--").strip():
            lines.append((at, line_end))
        else:
            closed = False
        at = body.find(delimiter, line_end)
    # The line break before a delimiter belongs to the delimiter (RFC 2046).
    parts = [body[begin + 1 : max(begin + 1, end - 1)]
             for (_, begin), (end, _) in itertools.pairwise(lines)]
    if lines and not closed:
        parts.append(body[lines[-1][1] + 1 :])  # unterminated last part: keep what came
    return parts


Headers = dict[str, list[str]]


def _build(mime: email.message.Message, size: int) -> Message:
    headers = _index(mime)
    name, address = _first_address(headers.get("from"))
    domain = address.rpartition("@")[2]
    subject = _header(headers, "subject")
    text, hrefs = _body(mime)
    blob = f"{subject}\n{text}"
    # Footers repeat the same few links many times: each distinct URL is read once.
    urls = {u: _host(u) for u in dict.fromkeys([*hrefs, *find_urls(text)][:MAX_HREFS])}
    links = tuple(u for u, host in urls.items() if _is_seller_central(u, host))[:MAX_LINKS]
    marketplace_id = _header(headers, "x-marketplace-id")
    return Message(
        sender_name=name,
        sender_address=address,
        sender_domain=domain,
        reply_to=_addresses(headers, "reply-to"),
        to=_addresses(headers, "to"),
        subject=subject,
        date=_date(headers),
        text=text,
        message_id=_header(headers, "message-id"),
        in_reply_to=_header(headers, "in-reply-to"),
        references=tuple(_header(headers, "references").split()),
        authentication_results=tuple(_unfold(v) for v in headers.get("authentication-results", ())),
        notification_type=_header(headers, "x-space-notification-type"),
        marketplace_id=marketplace_id,
        order_ids=find_order_ids(blob),
        asins=find_asins(blob),
        buyer_name=_buyer_name(name, subject),
        marketplace=_marketplace(domain, marketplace_id, links),
        links=links,
        link_hosts=tuple(dict.fromkeys(h for h in urls.values() if h))[:MAX_LINKS],
        from_count=len(headers.get("from", ())),
        size=size,
        extra_headers=_extra_headers(headers),
    )


# Headers that Message keeps as fields of their own, and trace headers that only
# servers read; every other header is kept, so a seller's rule can match on it.
FIELD_HEADERS = frozenset({
    "from", "reply-to", "to", "subject", "message-id", "in-reply-to",
    "authentication-results", "x-space-notification-type", "x-marketplace-id",
    "received", "dkim-signature", "arc-seal", "arc-message-signature",
    "arc-authentication-results",
})


def _extra_headers(headers: Headers) -> dict[str, str]:
    """The other headers by lower-case name, first value, decoded and unfolded."""
    return {name: _header(headers, name) for name in headers if name not in FIELD_HEADERS}


def _index(mime: email.message.Message) -> Headers:
    # One pass over the headers; Message.get() scans them all on every call.
    headers: Headers = {}
    for name, raw in mime.raw_items():
        # ASCII values come back from Message.items() unchanged; others may be
        # wrapped in a Header, so those go through the policy as before.
        plain = isinstance(raw, str) and raw.isascii()
        value = raw if plain else str(mime.policy.header_fetch_parse(name, raw))
        headers.setdefault(name.lower(), []).append(value)
    return headers


def _header(headers: Headers, name: str) -> str:
    values = headers.get(name)
    return _unfold(_decoded(values[0])) if values else ""


def _decoded(value: str) -> str:
    """RFC 2047 words decoded (mail-parser); plain ASCII has none and is only stripped."""
    if value.isascii() and "=?" not in value:
        return value.strip()
    return decode_header_part(value)


def _unfold(value: str) -> str:
    return " ".join(value.split())


def _first_address(values: list[str] | None) -> tuple[str, str]:
    if not values:
        return "", ""
    simple = _simple_mailbox(values[0])
    if simple:
        display, address = simple
        return _unfold(display if display != address else ""), address.lower()
    for display, address in get_addresses(values[0], decode_names=True):
        if address:
            return _unfold(display if display != address else ""), address.strip().lower()
    # No parsable mailbox: keep the words so trust can still see "Amazon" in them.
    return _unfold(_decoded(values[0])), ""


def _simple_mailbox(value: str) -> tuple[str, str] | None:
    """``(display name, address)`` of a header in one of the common forms, else None."""
    if not value.isascii() or "=?" in value:
        return None
    found = SIMPLE_MAILBOX.fullmatch(value)
    if not found:
        return None
    quoted, phrase, angle, bare = found.group("quoted", "phrase", "angle", "bare")
    name = quoted if quoted is not None else " ".join((phrase or "").split())
    return name, angle or bare


def _addresses(headers: Headers, name: str) -> str:
    # Only the addresses are kept, so the stdlib's plain parser is enough; the cap
    # stops a header listing thousands of recipients from costing a second.
    values = headers.get(name)
    if not values:
        return ""
    simple = _simple_mailbox(values[0][:MAX_ADDRESS_CHARS])
    if simple:
        return simple[1].lower()
    found = getaddresses([values[0][:MAX_ADDRESS_CHARS]])
    return ", ".join(dict.fromkeys(a.lower() for _, a in found if "@" in a))


def _date(headers: Headers) -> datetime | None:
    values = headers.get("date")
    if not values:
        return None
    try:
        return _plain_date(values[0]) or parsedate_to_datetime(values[0])
    except (TypeError, ValueError, IndexError):
        return None


def _plain_date(value: str) -> datetime | None:
    """A date in the form nearly every server writes, read as parsedate_to_datetime reads it.

    None when the value has any other form; a ValueError when it names no real time.
    """
    found = PLAIN_DATE.fullmatch(value)
    month = MONTHS.get(found.group(2).lower(), 0) if found else 0
    if not found or not month:
        return None
    day, _, year, hour, minute, second, sign, zone_h, zone_m = found.groups()
    offset = int(zone_h) * 3600 + int(zone_m) * 60
    years = int(year)
    if years < 100:  # the stdlib reads "0069" as 2069 and "0070" as 1970
        years += 1900 if years > 68 else 2000
    moment = (years, month, int(day), int(hour), int(minute), int(second))
    if sign == "-" and not offset:
        return datetime(*moment)  # "-0000": UTC, the sender's zone unknown (RFC 5322)
    return datetime(*moment, tzinfo=timezone(timedelta(seconds=-offset if sign == "-" else offset)))


def _body(mime: email.message.Message) -> tuple[str, list[str]]:
    """The readable text (plain parts first, else HTML) and every href of the HTML.

    A forwarded message attached whole (message/rfc822) chooses for itself: a
    colleague's plain note must not hide the HTML-only notice forwarded under it.
    """
    groups: dict[int, tuple[list[str], list[str]]] = {}
    for part, subtype, content_type, owner in _text_parts(mime):
        content = _decode_part(part, content_type)
        if content:
            plain, html = groups.setdefault(owner, ([], []))
            (html if subtype == "html" else plain).append(content)
    if len(groups) > 1:
        return _nested_body(list(groups.values()))
    plain, html = next(iter(groups.values()), ([], []))
    text = "\n".join(plain).strip()
    if not html:
        return _tidy(text), []
    if text:  # the plain part is the text; the HTML part still gives its links
        return _tidy(text), html_hrefs("\n".join(html))
    html_text, hrefs = html_to_text("\n".join(html))
    # html_to_text tidied it already; only a cut at the length cap can leave a space.
    return html_text.rstrip(), hrefs


def _nested_body(groups: list[tuple[list[str], list[str]]]) -> tuple[str, list[str]]:
    """The text of a message and the messages nested in it, each read on its own."""
    texts: list[str] = []
    for plain, html in groups:
        text = "\n".join(plain).strip()
        texts.append(_tidy(text) if text else html_to_text("\n".join(html))[0].rstrip())
    every_html = "\n".join(h for _, html in groups for h in html)
    hrefs = html_hrefs(every_html) if every_html else []
    return _tidy("\n\n".join(t for t in texts if t)), hrefs


def _text_parts(
    mime: email.message.Message, owner: int = 0
) -> Iterator[tuple[email.message.Message, str, object, int]]:
    """The plain and HTML parts that are not attachments, with subtype, Content-Type and
    the message they belong to (the top one, or a message nested in it whole)."""
    # Each header is looked up once and read as get_content_type(),
    # get_content_disposition() and get_filename() would read it.
    if mime.is_multipart():
        nested = _media_type(mime.get("content-type"), mime.get_default_type()) in NESTED_MESSAGES
        for sub in mime.get_payload():
            if isinstance(sub, email.message.Message):
                yield from _text_parts(sub, id(sub) if nested else owner)
        return
    content_type = mime.get("content-type")
    media_type = _media_type(content_type, mime.get_default_type())
    if media_type != "text/plain" and media_type != "text/html":
        return
    disposition = mime.get("content-disposition")
    if disposition is not None and _media_type(disposition, "") == "attachment":
        return
    named = _may_name_a_file(content_type) or _may_name_a_file(disposition)
    if named and mime.get_filename():
        return
    yield mime, media_type[5:], content_type, owner


def _media_type(value: object, default: str) -> str:
    """The value before any parameter, lower-cased, as Message.get_content_type() reads it."""
    if value is None:
        return default
    media_type = str(value).partition(";")[0].strip().lower()
    if default and media_type.count("/") != 1:
        return "text/plain"  # RFC 2045 5.2: an invalid Content-Type is plain text
    return media_type


def _may_name_a_file(value: object) -> bool:
    # A header without "name" anywhere in it has neither a filename nor a name parameter.
    return value is not None and "name" in str(value).lower()


def _charset(part: email.message.Message, value: object) -> str | None:
    """``part.get_content_charset()``, read directly when charset is the only parameter."""
    found = ONLY_CHARSET.fullmatch(value) if isinstance(value, str) else None
    if not found:
        return part.get_content_charset()
    return (found.group(1) or found.group(2)).lower()


def _decode_part(part: email.message.Message, content_type: object) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    charset = _charset(part, content_type) or "utf-8"
    try:
        return payload.decode(charset)
    except (LookupError, UnicodeError):
        # Mislabelled charsets are common; UTF-8 then Windows-1252 read nearly all.
        try:
            return payload.decode("utf-8")
        except UnicodeError:
            return payload.decode("cp1252", errors="replace")


def html_hrefs(html: str) -> list[str]:
    """The hrefs an HTML body links to, as :func:`html_to_text` finds them."""
    root = _html_root(html)
    if root is None:
        return []
    etree.strip_elements(root, *SKIP_TAGS, with_tail=False)
    return [h.strip() for h in _HREFS(root)[:MAX_HREFS]]


def _html_root(html: str) -> etree._Element | None:
    html = html[:MAX_HTML_CHARS]
    if not html.strip():
        return None
    try:
        return etree.fromstring(html, _HTML_PARSER)
    except (etree.LxmlError, ValueError):
        return None


def html_to_text(html: str) -> tuple[str, list[str]]:
    """Readable text of an HTML body and the hrefs it links to.

    Markup, styles, scripts and comments go; block elements become line breaks and
    table cells are separated by `` | `` so a table still reads row by row.
    """
    root = _html_root(html)
    if root is None:
        return "", []
    # Everything below runs in lxml's C loops: marking blocks and cells in the tree
    # and serialising it as text is several times faster than walking it in Python.
    etree.strip_elements(root, *SKIP_TAGS, with_tail=False)
    hrefs = [h.strip() for h in _HREFS(root)[:MAX_HREFS]]
    for block in root.iter(*BLOCK_TAGS):
        if block.tag != "br":
            block.text = BREAK + block.text if block.text else BREAK
        block.tail = BREAK + block.tail if block.tail else BREAK
    for cell in root.iter(*CELL_TAGS):
        if cell.getprevious() is not None:
            cell.text = " | " + cell.text if cell.text else " | "
    text = etree.tostring(root, method="text", encoding="unicode")
    # Markup decides where lines break, not the line ends of the source.
    text = text.replace("\n", " ").replace("\r", " ").replace(BREAK, "\n")
    return _tidy(text, blank_lines=False), hrefs


def _tidy(text: str, blank_lines: bool = True) -> str:
    """Spaces collapsed, invisible characters dropped, at most one blank line in a row.

    Lines break where ``str.splitlines()`` breaks them and spaces are what
    ``str.split()`` splits on, as ``" ".join(line.split())`` over every line would
    have it; a few whole-text ``replace`` calls and one split do it several times
    faster on long footers.
    """
    text = text[: MAX_TEXT_CHARS * 3]
    for char in ZERO_WIDTH:
        if char in text:
            text = text.replace(char, "")
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    for char, same in ODD_SPACES if text.isascii() else ODD_SPACES + WIDE_SPACES:
        if char in text:
            text = text.replace(char, same)
    while "  " in text:
        text = text.replace("  ", " ")
    # Only " " and "\n" are left, so str.strip() trims a line of its one space.
    lines = list(map(str.strip, text.split("\n")))
    if not blank_lines:
        return "\n".join(filter(None, lines))[:MAX_TEXT_CHARS]
    # A blank line is kept after a line with words, never after another blank one.
    kept = [line for line, before in zip(lines, ["", *lines[:-1]], strict=True) if line or before]
    return "\n".join(kept).strip()[:MAX_TEXT_CHARS]


def find_urls(text: str) -> list[str]:
    """What ``URL.findall(text)`` finds, found faster.

    A pattern that starts with a case-blind ``https?`` makes the regex engine try
    every position of the text; here ``str.find`` jumps from one ``://`` to the
    next and the pattern is only tried where a URL could start.
    """
    found: list[str] = []
    end = 0  # matches do not overlap: the next one starts after the last
    at = text.find("://")
    while at >= 0:
        for start in (at - 5, at - 4):  # "https://" or "http://"
            match = URL.match(text, start) if start >= end else None
            if match:
                found.append(match.group())
                end = match.end()
                break
        at = text.find("://", max(at + 3, end))
    return found


def find_order_ids(text: str) -> tuple[str, ...]:
    """Amazon order IDs (3-7-7 digits) in order of appearance, without repeats."""
    found: list[str] = []
    for match in ORDER_TAIL.finditer(text):
        start = match.start() - 3
        head = text[start : match.start()]
        before = text[start - 1 : start] if start > 0 else ""
        glued = before.isdigit() or before == "-"
        if start >= 0 and head.isdigit() and head.isascii() and not glued:
            found.append(head + match.group())
    return tuple(dict.fromkeys(found))


def find_asins(text: str) -> tuple[str, ...]:
    """ASINs (B0 and eight letters or digits) standing as words of their own."""
    found = (
        m.group() for m in ASIN.finditer(text)
        if m.start() == 0 or not text[m.start() - 1].isalnum()
    )
    return tuple(dict.fromkeys(found))


def _host(url: str) -> str:
    rest = url.split("://", 1)[1] if "://" in url else ""
    host = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    return host.rpartition("@")[2].split(":", 1)[0].lower().rstrip(".")


@lru_cache(maxsize=4096)
def _amazon_site(host: str) -> str:
    return site_of(host)


def _is_seller_central(url: str, host: str) -> bool:
    secure = url[:8].lower() == "https://"
    return secure and host.startswith("sellercentral.") and bool(_amazon_site(host))


def _buyer_name(sender_name: str, subject: str) -> str:
    relay = RELAY_NAME.match(sender_name)
    if relay:
        return relay.group("name").strip(" \"'")
    found = SUBJECT_BUYER.search(subject)
    return found.group("name").strip(" \"'") if found else ""


def site_of(domain: str) -> str:
    """The Amazon site a domain belongs to (``amazon.de`` for ``marketplace.amazon.de``).

    Empty when the domain is not one of Amazon's (see ``taxonomy.is_amazon_domain``).
    """
    labels = domain.strip().lower().rstrip(".").rsplit(".", 3)
    # Three labels first, so "x.amazon.com.mx" is Mexico and not amazon.com.
    for size in (3, 2):
        site = ".".join(labels[-size:])
        if len(labels) >= size and site in AMAZON_DOMAINS:
            return site
    return ""


def _marketplace(domain: str, marketplace_id: str, links: Iterable[str]) -> str:
    if site := site_of(domain):
        return site
    if site := MARKETPLACE_IDS.get(marketplace_id.strip().upper(), ""):
        return site
    for link in links:
        if site := _amazon_site(_host(link)):
            return site
    return ""
