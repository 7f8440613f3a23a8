"""Mail its headers already settle: clearly not Amazon, and not a buyer relayed by Amazon.

Most of a seller's mailbox is newsletters, carrier notices, supplier and personal mail.
Reading such a mail in full (MIME tree, HTML to text, links) and asking the model costs
several times what its headers and one look over its bytes cost, and changes nothing:
a mail that is not from an Amazon domain is never seller mail, and one that nowhere
names Amazon cannot be phishing that imitates it.

A mail is settled here only when nothing in it names Amazon: not its sender, subject
or any header, nor its body once quoted-printable and base64 are undone, tags dropped,
look-alike letters and spaced-out letters undone (as :mod:`triage.trust` reads them),
and it carries no Amazon order ID. Anything the cheap look cannot read with
confidence (a charset that could spell Latin look-alikes in other bytes, UTF-16, a
broken header) goes the full way. The settled mail still meets the seller's rules,
on its headers and the opening of the text the look found.

What is read: the first :data:`OPENING_BYTES` of the mail, as fetched, not all of it.
The look runs over its whole header block (a header block that does not end within
the opening is never settled) and the body bytes that follow it in the opening, with
encodings undone as above; a mail the look does not settle is fetched whole and read
in full. So a mail that names Amazon nowhere in its headers and nowhere in the first
8 KB of its body (every text part that starts there included) is settled without its
tail being read. On every mail the project holds (the held-out set, the rendered
training corpus and the real-world corpora in ``tests/corpora``, Amazon phishing
included) the opening settles no mail that presents as Amazon or is of an Amazon
type; of the 299 mails held that are longer than the opening, 8 are settled by it
that the whole mail would have sent to the full read for something in their tail
(an amazonaws.com link, a word in a footer), none of them presenting as Amazon.
``tests/test_screen.py`` proves it on each run.
"""

from __future__ import annotations

import binascii
import html
import re
import string
from dataclasses import dataclass, replace

import re2

from triage.message import Message, parse, site_of
from triage.trust import normalise, presents_as_amazon

# The only charsets whose bytes the look reads as it reads UTF-8 or Latin-1: a
# Cyrillic or Greek charset could spell "аmazon" in bytes the look would not know.
PLAIN_CHARSETS = frozenset({
    "us-ascii", "ascii", "utf-8", "utf8", "iso-8859-1", "latin1", "latin-1", "iso-8859-15",
    "windows-1252", "cp1252",
})
# "=3D" is "=" in quoted-printable HTML (<meta charset=3D"utf-8">). On lower-cased bytes.
CHARSET = re.compile(rb"charset\s*=\s*(?:3d)?[\"']?([\w.:-]+)")
BASE64_HEAD = re.compile(rb"content-transfer-encoding:\s*base64")
# The blank line that ends the header block, found from its first LF (a pattern that
# opens with an optional CR is tried at every byte); a CR before that LF is its own.
HEAD_END = re.compile(rb"\n\r?\n")
# Boundaries and part headers; found from line ends, which is quick.
MIME_LINE = re.compile(r"\n(?:--|[Cc]ontent-|MIME-|\s+\w+=)[^\n]*")
NON_ASCII = re.compile(r"[^\x00-\x7f]+")
TAG = re.compile(r"<(?:style|script|head)\b.*?</(?:style|script|head)\s*>|<[^>]*>",
                 re.IGNORECASE | re.DOTALL)
# Looked for in normalised text (look-alikes undone) with everything but letters and
# digits squeezed out, so "A m a z o n", "Ama<b>zon</b>" and "a.m.a.z.o.n" are found.
# Wider than anything trust.py or the model answers to, on purpose: a false alarm
# here only costs the full read.
AMAZON_MARKS = (b"amaz", b"amzn", b"sellercentral", b"prime", b"atoz", b"azguarant")
# One bytes.translate squeezes and folds ASCII in C: capitals and trust.CONFUSABLES'
# leet signs to letters; everything else that is not a letter or digit dropped.
_LEET = "0134579@$|!"
_FOLD = bytes.maketrans(
    (string.ascii_uppercase + _LEET).encode(), (string.ascii_lowercase + "oieastgasli").encode()
)
_DROP = bytes(c for c in range(128) if not chr(c).isalnum() and chr(c) not in _LEET)
# "rn" passes for "m" ("arnazon"): each mark is also looked for so spelled, which finds
# what replacing every "rn" by "m" would (no mark holds "rn", "v" or "w").
SQUEEZED_MARKS = (*AMAZON_MARKS, *(m.replace(b"m", b"rn") for m in AMAZON_MARKS if b"m" in m))
# All of them in one pass: RE2 looks for many literals at once in C, three times quicker
# than a substring search for each.
SQUEEZED_MARK = re2.compile(b"|".join(re.escape(mark) for mark in SQUEEZED_MARKS))
BYTE_MARKS = (b"amaz", b"amzn")
# The 7-7 digits of an Amazon order ID (3-7-7), looser about spaces.
ORDER_ID = re.compile(r"-\s*\d{7}\s*-\s*\d{7}")
# The seller's rules read this much of a settled mail's text (their regexes cost in
# proportion to it); the opening is what a rule about a newsletter or an invoice reads.
TEXT_CHARS = 2_000
# How much of a mail the look reads (see the module's docstring): a seller's newsletters
# and notices are 5-20 KB, mostly markup; an Amazon mail or an imitation of one says so
# in its headers or the opening of its text.
OPENING_BYTES = 8192
REASON = "settled by its headers and a look at its text: not Amazon, not a buyer relay"


@dataclass(frozen=True)
class Settled:
    """What the pipeline gets in place of the model's answer for a settled mail."""

    type: str = "other"
    severity: str = "low"
    confidence: float = 1.0
    reason: str = REASON


SETTLED = Settled()


def screen(raw: bytes, size: int | None = None, whole: bool = True) -> Message | None:
    """The mail as its headers and a light look read it when that settles it, else None.

    None means: parse and classify in full. ``raw`` is the whole mail, or with
    ``whole=False`` its opening (at most :data:`OPENING_BYTES`, see the module's
    docstring); ``size`` is the whole mail's size when ``raw`` is not all of it.
    """
    found = HEAD_END.search(raw)
    if found is None:
        return None  # headers longer than the opening: read in full
    cut = found.start()
    if cut and raw[cut - 1] == ord("\r"):
        cut -= 1
    head, body = raw[:cut], raw[found.end():]
    lower = raw.lower()
    if any(mark in lower for mark in BYTE_MARKS) or not _plain_charsets(lower):
        return None
    message = parse(head + b"\r\n\r\n")
    if message.error or message.from_count != 1 or not message.sender_domain:
        return None
    if site_of(message.sender_domain) or presents_as_amazon(message)[0]:
        return None
    if _names_amazon(" ".join((message.sender_name, message.sender_address, message.subject,
                              message.reply_to, *message.extra_headers.values()))):
        return None
    if BASE64_HEAD.search(lower) and b"multipart/" not in lower:
        # A single part in base64: the text is all of the body, decoded.
        body = b"Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n" + body
    text = _readable(body, whole)
    if text is None:
        return None
    return replace(message, text=text[:TEXT_CHARS], size=len(raw) if size is None else size)


def _plain_charsets(lower: bytes) -> bool:
    return all(c.decode("ascii", "replace") in PLAIN_CHARSETS for c in CHARSET.findall(lower))


def _readable(body: bytes, whole: bool = True) -> str | None:
    """The body's words, encodings undone; None when it names Amazon or cannot be read.

    Base64 text parts are decoded and looked at; attachments and images are skipped,
    as the full parse skips them. What is not base64 is read as quoted-printable
    (which leaves plain 7-bit and 8-bit text as it is).
    """
    if b"\r" in body:
        # Every CR goes, not only those of CRLF: a one-byte replace is several times
        # quicker, and a stray CR inside a word only joins the word up.
        body = body.replace(b"\r", b"")
    lower = body.lower()
    kept: list[bytes] = []
    cursor = 0
    at = lower.find(b"base64")
    try:
        while at >= 0:
            start = lower.find(b"\n\n", at)
            if start < 0:
                break
            end = lower.find(b"\n--", start)
            end = len(body) if end < 0 else end
            headers = lower[max(lower.rfind(b"\n\n", 0, at), 0) : start]
            at_type = headers.rfind(b"content-type:")
            if at_type < 0 or headers[at_type + 13 :].lstrip().startswith(b"text/"):
                encoded = body[start:end]
                if end == len(body) and not whole:
                    # The opening may end inside a base64 line: read the whole lines.
                    encoded = encoded[: encoded.rfind(b"\n") + 1]
                run = binascii.a2b_base64(encoded)
                if run.count(b"\x00") > len(run) // 8:
                    return None  # UTF-16 or UTF-32 text: not read here
                kept += (binascii.a2b_qp(body[cursor:start]), run)
            else:
                kept.append(binascii.a2b_qp(body[cursor:start]))
            cursor = end
            at = lower.find(b"base64", end)
        kept.append(binascii.a2b_qp(body[cursor:]))
        decoded = b"\n".join(kept)
    except (binascii.Error, ValueError):
        return None
    lowered = decoded.lower()
    if any(mark in lowered for mark in BYTE_MARKS):
        return None
    text = _words(MIME_LINE.sub(" ", decoded.decode("utf-8", "replace")))
    if "\x00" in text or _names_amazon(text):
        return None
    # Spaces collapsed only in what the rules read: the look above ignores them.
    opening = " ".join(text[: TEXT_CHARS * 6 // 5].split())
    if len(opening) < TEXT_CHARS:  # mostly spaces: read further
        opening = " ".join(text[: TEXT_CHARS * 2].split())
    return opening[:TEXT_CHARS]


def _words(text: str) -> str:
    """Text without tags (they part words, as a browser shows them), entities read."""
    text = TAG.sub(" ", text)
    return html.unescape(text) if "&" in text else text


def _names_amazon(text: str) -> bool:
    if ORDER_ID.search(text):
        return True
    if not text.isascii():
        # Look-alikes from other scripts, accents, invisibles: trust.normalise, run by run
        # of non-ASCII characters (it reads a character at a time), not over all the text.
        text = NON_ASCII.sub(lambda run: normalise(run.group()), text)
    squeezed = text.encode("utf-8", "replace").translate(_FOLD, _DROP)
    return SQUEEZED_MARK.search(squeezed) is not None
