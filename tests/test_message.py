"""Parsing raw mail into a Message: headers, body text, Amazon identifiers."""

from __future__ import annotations

import quopri
from datetime import UTC, datetime

import pytest
from hostile import CLAIM_ORDER, CORRUPTIONS, claim_mail

from triage.message import Message, html_to_text, parse


def mail(headers: str, body: str = "Hello\n", content_type: str = "text/plain") -> bytes:
    head = headers.strip("\n").replace("\n", "\r\n")
    return (
        f"{head}\r\nMIME-Version: 1.0\r\nContent-Type: {content_type}; charset=utf-8\r\n\r\n{body}"
    ).encode()


BUYER_MESSAGE = mail(
    """
Authentication-Results: mx.example.net; dkim=pass header.d=marketplace.amazon.de;
 spf=pass smtp.mailfrom=bounces.marketplace.amazon.de; dmarc=pass header.from=marketplace.amazon.de
Authentication-Results: evil.example; dmarc=pass header.from=amazon.de
From: "Jane Doe - Amazon Marketplace" <abc123xyz@marketplace.amazon.de>
Reply-To: abc123xyz@marketplace.amazon.de
To: Seller <seller@example.com>
Subject: Product details inquiry from Amazon customer Jane Doe (Order: 302-1234567-7654321)
Date: Tue, 02 Jul 2024 09:30:00 +0000
Message-ID: <0102abc@email.amazon.de>
In-Reply-To: <prev@example.com>
References: <first@example.com> <prev@example.com>
X-Space-Notification-Type: BBC_MESSAGE_SENT_TO_MERCHANT
X-Marketplace-ID: A1PA6795UKMFR9
""",
    "------------- Begin message -------------\n\nDoes B07XJ8C8F5 fit a 2019 model?\n\n"
    "------------- End message -------------\n\n"
    "Reply: https://sellercentral.amazon.de/messaging/reply?id=1\n",
)


def test_buyer_message_fields() -> None:
    m = parse(BUYER_MESSAGE)
    assert m.error == ""
    assert (m.sender_name, m.sender_address, m.sender_domain) == (
        "Jane Doe - Amazon Marketplace",
        "abc123xyz@marketplace.amazon.de",
        "marketplace.amazon.de",
    )
    assert m.reply_to == "abc123xyz@marketplace.amazon.de"
    assert m.to == "seller@example.com"
    assert m.date == datetime(2024, 7, 2, 9, 30, tzinfo=UTC)
    assert m.message_id == "<0102abc@email.amazon.de>"
    assert m.in_reply_to == "<prev@example.com>"
    assert m.references == ("<first@example.com>", "<prev@example.com>")
    assert m.notification_type == "BBC_MESSAGE_SENT_TO_MERCHANT"
    assert m.marketplace_id == "A1PA6795UKMFR9"
    assert m.order_ids == ("302-1234567-7654321",)
    assert m.order_id == "302-1234567-7654321"
    assert m.asins == ("B07XJ8C8F5",)
    assert m.buyer_name == "Jane Doe"
    assert m.marketplace == "amazon.de"
    assert m.links == ("https://sellercentral.amazon.de/messaging/reply?id=1",)
    assert "Does B07XJ8C8F5 fit a 2019 model?" in m.text


def test_authentication_results_all_in_order_topmost_first() -> None:
    m = parse(BUYER_MESSAGE)
    assert len(m.authentication_results) == 2
    assert m.authentication_results[0].startswith("mx.example.net; dkim=pass")
    # Folded continuation lines come back as one line.
    assert "\n" not in m.authentication_results[0]
    assert m.authentication_results[1].startswith("evil.example;")


@pytest.mark.parametrize(
    ("subject", "sender", "buyer"),
    [
        (
            "Inquiry from Amazon customer Max Mustermann (Order: 111-1111111-1111111)",
            "Amazon <x@amazon.com>",
            "Max Mustermann",
        ),
        (
            "Anfrage von Amazon-Kunde Erika Muster (Bestellung: 302-1111111-1111111)",
            "Amazon <x@amazon.de>",
            "Erika Muster",
        ),
        ("Hello", '"Li Wei - Amazon Marketplace" <y@marketplace.amazon.co.uk>', "Li Wei"),
        ("Your order has shipped", "Amazon <x@amazon.com>", ""),
    ],
)
def test_buyer_name(subject: str, sender: str, buyer: str) -> None:
    m = parse(mail(f"From: {sender}\nSubject: {subject}"))
    assert m.buyer_name == buyer


@pytest.mark.parametrize(
    ("headers", "body", "marketplace"),
    [
        ("From: a@marketplace.amazon.co.uk", "", "amazon.co.uk"),
        ("From: a@amazon.com.mx", "", "amazon.com.mx"),
        ("From: a@example.com\nX-Marketplace-ID: A13V1IB3VIYZZH", "", "amazon.fr"),
        ("From: a@example.com", "See https://sellercentral.amazon.it/home", "amazon.it"),
        ("From: a@amazon.de.example", "", ""),
        ("From: a@example.com", "See https://sellercentral.amazon.it.evil.io/home", ""),
    ],
)
def test_marketplace(headers: str, body: str, marketplace: str) -> None:
    assert parse(mail(headers, body)).marketplace == marketplace


@pytest.mark.parametrize(
    ("text", "ids"),
    [
        (
            "Order 111-2222222-3333333 and #404-5555555-6666666.",
            ("111-2222222-3333333", "404-5555555-6666666"),
        ),
        ("twice 111-2222222-3333333 111-2222222-3333333", ("111-2222222-3333333",)),
        ("too long 1111-2222222-3333333 or 111-2222222-33333333", ()),
        ("phone 555-1234 and 12-1234567-1234567", ()),
    ],
)
def test_order_ids(text: str, ids: tuple[str, ...]) -> None:
    assert parse(mail("From: a@example.com\nSubject: x", text)).order_ids == ids


def test_rfc2047_subject_and_sender_name() -> None:
    raw = mail(
        "From: =?UTF-8?Q?J=C3=BCrgen_M=C3=BCller?= <j@example.de>\n"
        "Subject: =?ISO-8859-1?Q?Bestellbest=E4tigung?= =?UTF-8?B?w6TDtsO8?="
    )
    m = parse(raw)
    assert m.sender_name == "Jürgen Müller"
    assert m.subject == "Bestellbestätigungäöü"


def test_unknown_charset_is_read_gracefully() -> None:
    raw = (
        b"From: a@example.com\r\nSubject: x\r\nContent-Type: text/plain; charset=x-bogus\r\n\r\n"
        b"Gr\xc3\xbc\xc3\x9fe aus K\xc3\xb6ln\r\n"
    )
    m = parse(raw)
    assert m.error == ""
    assert "Grüße aus Köln" in m.text


def test_latin1_body_mislabelled_as_utf8() -> None:
    raw = b"From: a@example.com\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nK\xf6ln\r\n"
    assert parse(raw).text == "Köln"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "empty message"),
        (b"   \r\n", "empty message"),
    ],
)
def test_unreadable_message_sets_error(raw: bytes, reason: str) -> None:
    m = parse(raw)
    assert isinstance(m, Message)
    assert m.error == reason


def test_garbage_never_raises() -> None:
    m = parse(b"\x00\xff\xfe" * 1000)
    assert isinstance(m, Message)
    assert m.size == 3000


HTML_NOTICE = """<!DOCTYPE html><html><head><title>t</title>
<style>p { color: red }</style><script>alert('x')</script></head>
<body><!-- a comment --><div>Hello <b>Seller</b>,</div>
<p>Your listing was removed.<br>Please act.</p>
<table><tr><th>Order</th><th>ASIN</th></tr>
<tr><td>111-2222222-3333333</td><td>B0ABCDEFGH</td></tr></table>
<ul><li>one</li><li>two</li></ul>
<a href="https://sellercentral.amazon.com/performance">Account Health</a>
<a href="https://evil.example/login">Log in</a>
</body></html>"""


def test_html_to_text_is_readable() -> None:
    text, hrefs = html_to_text(HTML_NOTICE)
    assert text.splitlines() == [
        "Hello Seller,",
        "Your listing was removed.",
        "Please act.",
        "Order | ASIN",
        "111-2222222-3333333 | B0ABCDEFGH",
        "one",
        "two",
        "Account Health Log in",
    ]
    assert hrefs == ["https://sellercentral.amazon.com/performance", "https://evil.example/login"]


def test_html_only_mail_uses_html_text_and_links() -> None:
    body = quopri.encodestring(HTML_NOTICE.encode()).decode()
    raw = mail(
        "From: Amazon <seller-performance@amazon.com>\nSubject: Policy\n"
        "Content-Transfer-Encoding: quoted-printable",
        body,
        "text/html",
    )
    m = parse(raw)
    assert "alert" not in m.text and "color" not in m.text and "comment" not in m.text
    assert "Order | ASIN" in m.text
    assert m.order_ids == ("111-2222222-3333333",)
    assert m.asins == ("B0ABCDEFGH",)
    assert m.links == ("https://sellercentral.amazon.com/performance",)
    assert m.link_hosts == ("sellercentral.amazon.com", "evil.example")


def test_plain_part_preferred_over_html() -> None:
    raw = (
        b"From: a@example.com\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/alternative; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nplain words\r\n"
        b"--b\r\nContent-Type: text/html\r\n\r\n<p>html words</p>\r\n--b--\r\n"
    )
    assert parse(raw).text == "plain words"


def test_a_forwarded_html_notice_is_read_under_a_plain_note() -> None:
    # A colleague forwards Amazon's HTML-only notice whole, with a plain note on top:
    # each message picks its own part, so the notice is read, not hidden by the note.
    raw = (
        b"From: Luc <luc@boutique.example>\r\nSubject: TR: info\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nje te transfere ce mail\r\n"
        b"--b\r\nContent-Type: message/rfc822\r\n\r\n"
        b"From: seller-performance@amazon.fr\r\nSubject: Offre retiree\r\n"
        b'Content-Type: multipart/alternative; boundary="c"\r\n\r\n'
        b'--c\r\nContent-Type: text/html\r\n\r\n<p>Nous avons retir\xc3\xa9 votre offre'
        b' <a href="https://sellercentral.amazon.fr/x">ici</a></p>\r\n--c--\r\n--b--\r\n'
    )
    m = parse(raw)
    assert m.text.startswith("je te transfere ce mail\n\n")
    assert "Nous avons retiré votre offre" in m.text
    assert m.links == ("https://sellercentral.amazon.fr/x",)


def test_attachment_text_is_not_body() -> None:
    raw = (
        b"From: a@example.com\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nthe body\r\n"
        b"--b\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; filename=a.txt\r\n"
        b"\r\nattached 111-2222222-3333333\r\n--b--\r\n"
    )
    m = parse(raw)
    assert m.text == "the body"
    assert m.order_ids == ()


def test_counts_from_headers() -> None:
    raw = mail("From: a@amazon.com\nFrom: b@evil.example\nSubject: x")
    assert parse(raw).from_count == 2


def test_long_body_is_capped() -> None:
    m = parse(mail("From: a@example.com", "word " * 100_000))
    assert 0 < len(m.text) <= 20_000


@pytest.mark.parametrize(
    ("body", "text"),
    [
        # An inner boundary that starts with the outer one must not cut the outer parts.
        (b"--b\r\nContent-Type: multipart/alternative; boundary=\"b_2\"\r\n\r\n"
         b"--b_2\r\nContent-Type: text/plain\r\n\r\ninner plain\r\n--b_2--\r\n--b--\r\n",
         "inner plain"),
        # No closing delimiter: what came is still read.
        (b"--b\r\nContent-Type: text/plain\r\n\r\ncut short", "cut short"),
        # Preamble and epilogue are not body text.
        (b"preamble\r\n--b\r\nContent-Type: text/plain\r\n\r\nreal\r\n--b--\r\nepilogue\r\n",
         "real"),
        # A forwarded message's text is read through the message/rfc822 part.
        (b"--b\r\nContent-Type: message/rfc822\r\n\r\nFrom: x@example.com\r\nSubject: fwd\r\n"
         b"\r\nforwarded words\r\n--b--\r\n", "forwarded words"),
    ],
)
def test_multipart_structure(body: bytes, text: str) -> None:
    raw = (b"From: a@example.com\r\nMIME-Version: 1.0\r\n"
           b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n' + body)
    assert parse(raw).text == text


# The forms of the address and date headers met in practice, each read the same
# whichever path (the quick common-form reader or the general parser) handles it.
@pytest.mark.parametrize(
    ("sender", "name", "address"),
    [
        ('"Amazon Seller Central" <Seller-Notification@Amazon.com>', "Amazon Seller Central",
         "seller-notification@amazon.com"),
        ("Amazon Seller Central <seller@amazon.com>", "Amazon Seller Central", "seller@amazon.com"),
        ("Iron Co. <a@b.example>", "Iron Co.", "a@b.example"),
        ("\n Monika Richter - Amazon Marketplace\n <x1@marketplace.amazon.de>",
         "Monika Richter - Amazon Marketplace", "x1@marketplace.amazon.de"),
        ("seller@amazon.com", "", "seller@amazon.com"),
        ("<seller@amazon.com>", "", "seller@amazon.com"),
        ('"seller@amazon.com" <seller@amazon.com>', "", "seller@amazon.com"),
        ('"Amazon.com" <spoof@evil.example>', "Amazon.com", "spoof@evil.example"),
        ('"" <a@b.example>', "", "a@b.example"),
        ("=?UTF-8?Q?Amazon_Verk=C3=A4ufer?= <a@amazon.de>", "Amazon Verkäufer", "a@amazon.de"),
        ("a@b.example (Amazon Support)", "Amazon Support", "a@b.example"),
        ('"Jane \\"JD\\" Doe" <j@b.example>', 'Jane "JD" Doe', "j@b.example"),
        ("Amazon Security", "Amazon Security", ""),
    ],
)
def test_sender_forms(sender: str, name: str, address: str) -> None:
    m = parse(mail(f"From: {sender}\nSubject: x"))
    assert (m.sender_name, m.sender_address) == (name, address)


@pytest.mark.parametrize(
    ("to", "addresses"),
    [
        ("Seller <Seller@Example.com>", "seller@example.com"),
        ("seller@example.com", "seller@example.com"),
        ("Oak Co. <o@example.com>", "o@example.com"),
        ("a@example.com, B <b@example.com>, a@example.com", "a@example.com, b@example.com"),
        ("Team: a@example.com, b@example.com;", "a@example.com, b@example.com"),
        ("undisclosed-recipients:;", ""),
    ],
)
def test_recipient_forms(to: str, addresses: str) -> None:
    assert parse(mail(f"From: a@example.com\nTo: {to}")).to == addresses


@pytest.mark.parametrize(
    ("value", "date"),
    [
        ("Tue, 02 Jul 2024 09:30:00 +0000", datetime(2024, 7, 2, 9, 30, tzinfo=UTC)),
        ("2 Jul 2024 09:30:00 +0200", datetime(2024, 7, 2, 7, 30, tzinfo=UTC)),
        ("Tue,  2 jul 2024 09:30:00 -0130 (PDT)", datetime(2024, 7, 2, 11, 0, tzinfo=UTC)),
        # -0000 says the sender's zone is unknown: a time without a zone.
        ("Tue, 02 Jul 2024 09:30:00 -0000", datetime(2024, 7, 2, 9, 30)),
        ("Tue, 02 Jul 24 09:30:00 +0000", datetime(2024, 7, 2, 9, 30, tzinfo=UTC)),
        ("Tue, 02 Jul 2024 09:30 EST", datetime(2024, 7, 2, 14, 30, tzinfo=UTC)),
        ("Tue, 32 Jul 2024 09:30:00 +0000", None),
        ("Tue, 02 Jul 2024 24:00:00 +0000", None),
        ("yesterday", None),
    ],
)
def test_date_forms(value: str, date: datetime | None) -> None:
    assert parse(mail(f"From: a@example.com\nDate: {value}")).date == date


@pytest.mark.parametrize(
    ("raw", "subject", "text"),
    [
        (b"Subject: one\r\n two\r\n\tthree\r\n\r\nbody\r\n", "one two three", "body"),
        (b"Subject: x\r\nX-Empty:\r\n\r\nbody\r\n", "x", "body"),
        # A line that is no header ends the headers: it and the rest are body.
        (b"Subject: x\r\nthis is no header\r\nmore\r\n", "x", "this is no header\nmore"),
        (b"Subject: x\r\nno blank line before the body", "x", "no blank line before the body"),
        # An mbox envelope line before the headers is not a header.
        (b"From someone Tue Jul  2 09:30:00 2024\nSubject: x\n\nbody\n", "x", "body"),
        (b"Subject: x\rX-Y: z\r\rbody\r", "x", "body"),
    ],
)
def test_header_block_forms(raw: bytes, subject: str, text: str) -> None:
    m = parse(raw)
    assert (m.subject, m.text) == (subject, text)


@pytest.mark.parametrize(
    ("body", "text"),
    [
        ("a\tb  c\u00a0\u2003d", "a b c d"),
        ("  lead and trail  \n\n\n\nnext\u2028line", "lead and trail\n\nnext\nline"),
        ("in\u200bvisi\u00adble\ufeff", "invisible"),
        ("one\r\ntwo\rthree\x0cfour", "one\ntwo\nthree\nfour"),
        (" \t \n \n", ""),
    ],
)
def test_plain_text_whitespace(body: str, text: str) -> None:
    assert parse(mail("From: a@example.com", body)).text == text


@pytest.mark.parametrize(
    ("html", "text"),
    [
        ("<p>a&nbsp;&nbsp;b</p>\n\n<p>\n   c\td  </p>", "a b\nc d"),
        ("<div>x</div><div></div><div> </div><div>y</div>", "x\ny"),
        ("<span>a</span> <span>b</span><br/><br/>c", "a b\nc"),
    ],
)
def test_html_text_whitespace(html: str, text: str) -> None:
    raw = mail("From: a@example.com", f"<html><body>{html}</body></html>", "text/html")
    assert parse(raw).text == text


@pytest.mark.parametrize(
    ("body", "links", "hosts"),
    [
        ("See https://sellercentral.amazon.de/x?u=http://evil.example/y now.",
         ("https://sellercentral.amazon.de/x?u=http://evil.example/y",),
         ("sellercentral.amazon.de",)),
        ("HTTPS://SELLERCENTRAL.AMAZON.COM/a and xhttps://sellercentral.amazon.fr/b",
         ("HTTPS://SELLERCENTRAL.AMAZON.COM/a", "https://sellercentral.amazon.fr/b"),
         ("sellercentral.amazon.com", "sellercentral.amazon.fr")),
        ("(http://sellercentral.amazon.it/c) https:// ://x https://a.example:8443/d",
         (), ("sellercentral.amazon.it", "a.example")),
        ("twice https://a.example/1 https://a.example/1 https://b.example", (),
         ("a.example", "b.example")),
    ],
)
def test_links_in_text(body: str, links: tuple[str, ...], hosts: tuple[str, ...]) -> None:
    m = parse(mail("From: a@example.com", body))
    assert (m.links, m.link_hosts) == (links, hosts)


@pytest.mark.parametrize(
    ("headers", "text"),
    [
        ("Content-Type: text/plain; charset=iso-8859-1", "Köln"),
        ('Content-Type: TEXT/PLAIN; CHARSET="ISO-8859-1"', "Köln"),
        ("Content-Type: text/plain; format=flowed; charset=iso-8859-1", "Köln"),
        ("Content-Type: text/plain; charset*=iso-8859-1''x", "Köln"),
        # A part with a file name is an attachment, whatever its disposition says.
        ("Content-Type: text/plain; charset=iso-8859-1; name=a.txt", ""),
        ("Content-Type: text/plain; charset=iso-8859-1\nContent-Disposition: inline; filename=a",
         ""),
        ('Content-Type: text/plain; charset=iso-8859-1; name=""', "Köln"),
        ("Content-Type: text/plain; charset=iso-8859-1\nContent-Disposition: inline", "Köln"),
        ("Content-Type: image/png", ""),
        ("Content-Type: text", "Köln"),  # not a type at all: read as plain text
    ],
)
def test_text_part_headers(headers: str, text: str) -> None:
    raw = f"From: a@example.com\r\n{headers}\r\n\r\n".replace("\n", "\r\n").encode()
    assert parse(raw.replace(b"\r\r\n", b"\r\n") + b"K\xf6ln\r\n").text == text


# --- one stray byte must not hide a notice -----------------------------------------------


@pytest.mark.parametrize("corruption", CORRUPTIONS)
def test_a_stray_byte_does_not_hide_a_claim(corruption: str) -> None:
    m = parse(claim_mail(corruption))
    assert m.error == ""
    assert m.sender_address == "atoz-guarantee-no-reply@amazon.com"
    assert m.subject.startswith("A-to-z Guarantee claim filed")
    assert m.order_ids == (CLAIM_ORDER,)
    assert "respond within 3 calendar days" in m.text
    assert m.links == ("https://sellercentral.amazon.com/gp/guarantee-claims/home.html",)


def test_control_characters_leave_the_text_readable() -> None:
    m = parse(claim_mail("ctrl-in-html"))
    assert "\x1c" not in m.text
    assert "A-to-z Guarantee claim filed" in m.text
