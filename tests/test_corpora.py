"""Real-world mail (see tests/corpora/README.md): parsing survives it, trust is not fooled."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest

from triage.message import Message, parse
from triage.trust import Trust, assess

CORPORA = Path(__file__).parent / "corpora"
FOLDERS = ("cpython-test-email", "mail-parser", "mikel-mail", "package-notices",
           "phishing-pot-amazon")


def mail_files(folder: str) -> list[Path]:
    return sorted(
        p for p in (CORPORA / folder).rglob("*")
        if p.is_file() and not p.name.startswith(("LICENSE", "README"))
    )


@cache
def parsed(path: Path) -> Message:
    return parse(path.read_bytes())


@pytest.mark.parametrize("folder", FOLDERS)
def test_every_file_parses(folder: str) -> None:
    files = mail_files(folder)
    assert files, f"no mail found in {folder}"
    read = 0
    for path in files:
        m = parsed(path)  # an escaping exception fails the test
        assert isinstance(m, Message)
        assert m.size == path.stat().st_size
        read += bool(m.error or m.subject or m.text or m.sender_address)
    # A few fixtures are only headers nobody reads (say, X-Foobar); the rest give something.
    assert read >= 0.95 * len(files)


def test_unreadable_files_give_a_reason() -> None:
    empty = parsed(CORPORA / "package-notices" / "inpost_pl_out_for_delivery.eml")
    assert empty.error == "empty message"


@cache
def phishing() -> list[tuple[Path, Trust]]:
    return [(p, assess(parsed(p))) for p in mail_files("phishing-pot-amazon")]


def test_phishing_is_never_authenticated() -> None:
    assert len(phishing()) == 250
    assert [p.name for p, t in phishing() if t.authenticated] == []


def test_phishing_that_presents_as_amazon_is_suspicious() -> None:
    presenting = [t for _, t in phishing() if t.presents_as_amazon]
    # 70 of the 250 present as Amazon; the others name Amazon only through the
    # infrastructure they were sent through or host their pages on (amazonses.com,
    # amazonaws.com), a passing mention ("gift cards to retailers like Amazon"), or
    # "Amazonian" — none of which is a claim to be Amazon.
    assert len(presenting) >= 70
    assert all(t.suspicious for t in presenting)


@pytest.mark.parametrize(
    "name",
    ["sample-1081.eml", "sample-2201.eml", "sample-3480.eml", "sample-5211.eml",
     "sample-2614.eml"],
)
def test_known_impersonations_are_suspicious(name: str) -> None:
    trust = assess(parsed(CORPORA / "phishing-pot-amazon" / name))
    assert trust.suspicious, trust.reason


@pytest.mark.parametrize(
    ("name", "order_id", "marketplace"),
    [
        ("amazon_delivered.eml", "123-1234567-1234567", "amazon.com"),
        ("amazon_delivered_it.eml", "123-4567890-1234567", "amazon.it"),
        ("amazon_shipped.eml", "123-1234567-1234567", "amazon.com"),
        ("amazon_shipped_alt_2.eml", "113-9999999-8459426", "amazon.com"),
        ("amazon_shipped_it.eml", "405-5236882-9395563", "amazon.it"),
        ("amazon_uk_delivered.eml", "205-2169302-5352337", "amazon.co.uk"),
        ("amazon_uk_shipped_2.eml", "123-4567890-1234567", "amazon.co.uk"),
        ("amazon_hub_notice_2.eml", "111-4396615-4512227", "amazon.com"),
    ],
)
def test_amazon_shopping_mail_has_its_order_id(name: str, order_id: str, marketplace: str) -> None:
    m = parsed(CORPORA / "package-notices" / name)
    assert m.error == ""
    assert m.order_id == order_id
    assert m.marketplace == marketplace
    assert m.text


def test_amazon_shopping_mail_without_headers_is_not_trusted() -> None:
    # These copies had their Authentication-Results removed: Amazon-looking, unproven.
    m = parsed(CORPORA / "package-notices" / "amazon_shipped.eml")
    assert assess(m).suspicious


@pytest.mark.parametrize("name", ["ups_out_for_delivery.eml", "dhl_out_for_delivery.eml",
                                  "royal_mail_uk_delivered.eml"])
def test_carrier_notices_do_not_present_as_amazon(name: str) -> None:
    assert not assess(parsed(CORPORA / "package-notices" / name)).presents_as_amazon
