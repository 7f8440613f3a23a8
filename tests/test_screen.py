"""Mail the headers settle skips the full read and the model, and no Amazon mail is settled.

The proof runs over every mail the project holds: the held-out set (genuine Amazon
mail and phishing that imitates it), the training corpus, and the real-world corpora
(real Amazon phishing, Amazon shopping mail, carrier notices, messy MIME).
"""

from __future__ import annotations

import binascii
import csv
from collections.abc import Callable
from pathlib import Path

import pytest

from triage import corpus, trust
from triage.message import Message, parse
from triage.pipeline import Pipeline
from triage.rules import parse_rules
from triage.screen import OPENING_BYTES, SETTLED, screen

ROOT = Path(__file__).resolve().parent.parent
HELDOUT = ROOT / "models" / "heldout"
CORPUS = ROOT / "models" / "corpus"
CORPORA = Path(__file__).resolve().parent / "corpora"

NEWSLETTER = (
    b"From: \"Shopify Plus\" <news@shopifyplus.com>\r\n"
    b"To: orders@brightnookhome.com\r\nSubject: Five ways to grow this spring\r\n"
    b"Message-ID: <n-1@shopifyplus.com>\r\nDate: Mon, 30 Nov 2026 10:00:00 +0000\r\n"
    b"MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    b"<html><body><table><tr><td><h1>Grow this spring</h1><p>Our new invoice templat=\r\n"
    b"es and shipping guide.</p></td></tr></table></body></html>\r\n"
)


def variant(body: bytes, subject: bytes = b"Five ways to grow this spring") -> bytes:
    head, _, _ = NEWSLETTER.partition(b"\r\n\r\n")
    head = head.replace(b"Five ways to grow this spring", subject)
    return head + b"\r\n\r\n" + body


def amazon_like(raw: bytes) -> bool:
    """What the full read says: the mail presents as Amazon or is authenticated as it."""
    message = parse(raw)
    if message.error:
        return False
    found = trust.assess(message)
    return found.presents_as_amazon or found.authenticated


def test_a_newsletter_is_settled_with_its_headers_and_words() -> None:
    message = screen(NEWSLETTER)
    assert message is not None
    assert message.sender_address == "news@shopifyplus.com"
    assert message.subject == "Five ways to grow this spring"
    assert "invoice templates and shipping guide" in message.text
    assert "<" not in message.text


@pytest.mark.parametrize("body", [
    b"<p>Your Amazon seller account</p>",
    b"<p>Your A m a z o n account</p>",
    b"<p>Your Ama<b>zon</b> account</p>",
    b"<p>Your &#65;mazon account</p>",
    "<p>Your Аmazon account</p>".encode(),  # Cyrillic capital A
    b"<p>Your arnaz0n account</p>",
    b"<p>Seller Central: action required</p>",
    b"<p>About order 203-9733014-8474730</p>",
    b"<p>Your am=\r\nazon account</p>",
])
def test_any_sign_of_amazon_in_the_text_means_the_full_read(body: bytes) -> None:
    assert screen(variant(body)) is None


def test_amazon_in_base64_text_means_the_full_read() -> None:
    raw = (NEWSLETTER.split(b"Content-Type:")[0]
           + b"Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
           + b"PHA+WW91ciBBbWF6b24gYWNjb3VudCBpcyBhdCByaXNrPC9wPg==\r\n")
    assert screen(raw) is None


@pytest.mark.parametrize("subject", [b"Your Amazon order", b"=?utf-8?b?QW1hem9uIG9yZGVy?="])
def test_amazon_in_the_subject_means_the_full_read(subject: bytes) -> None:
    assert screen(variant(b"<p>hello</p>", subject)) is None


def test_an_unusual_charset_means_the_full_read() -> None:
    raw = NEWSLETTER.replace(b"charset=utf-8", b"charset=koi8-r")
    assert screen(raw) is None


def test_the_verdict_of_a_settled_mail_says_so() -> None:
    message = screen(NEWSLETTER)
    assert message is not None
    rules = parse_rules(
        "version: 1\nrules:\n  - name: supplier-news\n    match:\n      body: invoice templates\n"
        "    tags: [supplier]\n"
    )
    verdict = Pipeline(classifier=None, rules=rules).decide(  # type: ignore[arg-type]
        [message], predictions=[SETTLED])[0]
    assert (verdict.type, verdict.severity, verdict.suspicious, verdict.amazon) == (
        "other", "low", False, False)
    assert verdict.reasons[0].startswith("settled by its headers")
    # The seller's rules still read the settled mail.
    assert "supplier" in verdict.tags


def heldout_files() -> list[tuple[Path, dict[str, str]]]:
    with (HELDOUT / "labels.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [(HELDOUT / "mail" / r["file"], r) for r in rows]


def opening(raw: bytes) -> Message | None:
    """What the screen says from the opening alone, as a backfill fetches it first."""
    return screen(raw[:OPENING_BYTES], size=len(raw), whole=len(raw) <= OPENING_BYTES)


def test_a_long_newsletter_is_settled_by_its_opening() -> None:
    raw = variant(b"<p>Our new invoice templates.</p>" + b"<p>Grow this spring.</p>\r\n" * 800)
    assert len(raw) > 2 * OPENING_BYTES
    message = opening(raw)
    assert message is not None
    assert message.size == len(raw)
    assert message.text.startswith("Our new invoice templates.")


def test_amazon_in_a_base64_line_cut_by_the_opening_is_found() -> None:
    head = (NEWSLETTER.split(b"Content-Type:")[0] + b"Content-Type: text/html; charset=utf-8\r\n"
            + b"Content-Transfer-Encoding: base64\r\n\r\n")
    text = b"<p>Spring news for you.</p>" * 200 + b"<p>Your Amazon account</p>" + b"<p>x</p>" * 900
    encoded = binascii.b2a_base64(text, newline=False)
    body = b"\r\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76))
    raw = head + body + b"\r\n"
    cut = raw[:OPENING_BYTES]
    assert b"\r\n" in cut[len(head):] and not cut.endswith(b"\r\n")  # cut inside a line
    assert opening(raw) is None


@pytest.mark.parametrize("read", [screen, opening], ids=["whole", "opening"])
def test_no_held_out_amazon_mail_or_phishing_is_settled(
    read: Callable[[bytes], Message | None],
) -> None:
    settled = []
    for path, row in heldout_files():
        raw = path.read_bytes()
        if read(raw) is None:
            continue
        settled.append(path.name)
        assert row["type"] == "other" and row["genuine"] == "true", path.name
        assert not amazon_like(raw), path.name
    assert settled, "the held-out set has mail from others, which the headers settle"


@pytest.mark.parametrize("read", [screen, opening], ids=["whole", "opening"])
def test_no_training_mail_of_an_amazon_type_is_settled(
    read: Callable[[bytes], Message | None],
) -> None:
    families = corpus.load_families(CORPUS)
    assert len(families) > 50
    wrong = [family.family for family in families if family.type != "other"
             for raw in corpus.render_family(family) if read(raw) is not None]
    assert wrong == []


def real_world_files(folder: str) -> list[Path]:
    return [p for p in sorted((CORPORA / folder).rglob("*"))
            if p.is_file() and p.suffix != ".md" and "LICENSE" not in p.name]


@pytest.mark.parametrize("read", [screen, opening], ids=["whole", "opening"])
@pytest.mark.parametrize("folder", sorted(p.name for p in CORPORA.iterdir() if p.is_dir()))
def test_no_real_world_mail_that_presents_as_amazon_is_settled(
    folder: str, read: Callable[[bytes], Message | None],
) -> None:
    for path in real_world_files(folder):
        raw = path.read_bytes()
        if read(raw) is not None:
            assert not amazon_like(raw), path


def test_the_opening_settles_no_more_than_the_whole_mail_but_its_tail() -> None:
    raws = [path.read_bytes() for path, _ in heldout_files()]
    raws += [path.read_bytes() for folder in sorted(CORPORA.iterdir()) if folder.is_dir()
             for path in real_world_files(folder.name)]
    raws += [raw for family in corpus.load_families(CORPUS) for raw in corpus.render_family(family)]
    longer = [raw for raw in raws if len(raw) > OPENING_BYTES]
    assert len(longer) > 100, "the proof needs mail longer than the opening"
    differ = [raw for raw in longer if (screen(raw) is None) != (opening(raw) is None)]
    # Only mail whose tail alone the whole read stops at (an amazonaws.com link, a
    # charset or a word in a footer) and that does not present as Amazon.
    assert all(opening(raw) is not None and not amazon_like(raw) for raw in differ)
    assert len(differ) * 20 < len(longer)
