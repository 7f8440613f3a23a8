"""Sender trust: who presents as Amazon, and who is really Amazon."""

from __future__ import annotations

import pytest

from triage.message import Message
from triage.trust import assess, authserv_id, normalise

GOOD_DMARC = (
    "mx.example.net; spf=pass smtp.mailfrom=bounces.amazon.com; "
    "dkim=pass header.d=amazon.com; dmarc=pass (p=QUARANTINE) header.from=amazon.com"
)


def msg(
    address: str = "seller-notification@amazon.com",
    name: str = "Amazon Seller Central",
    subject: str = "Sold, ship now",
    text: str = "",
    auth: tuple[str, ...] = (GOOD_DMARC,),
    from_count: int = 1,
) -> Message:
    return Message(
        sender_name=name,
        sender_address=address,
        sender_domain=address.rpartition("@")[2],
        subject=subject,
        text=text,
        authentication_results=auth,
        from_count=from_count,
    )


# (case, message, presents_as_amazon, authenticated)
CASES = [
    ("genuine, dmarc pass", msg(), True, True),
    (
        "genuine buyer relay, dkim aligned on subdomain",
        msg(
            "x1@marketplace.amazon.de",
            "Jane Doe - Amazon Marketplace",
            auth=("mx.example.net; dkim=pass header.d=amazon.de; dmarc=none",),
        ),
        True,
        True,
    ),
    (
        "genuine, spf aligned only",
        msg(
            "a@amazon.co.uk",
            auth=("mx.example.net; spf=pass smtp.mailfrom=b@bounces.amazon.co.uk",),
        ),
        True,
        True,
    ),
    (
        "genuine, dkim header.i",
        msg(auth=("mx.example.net; dkim=pass header.i=@amazon.com",)),
        True,
        True,
    ),
    (
        "Microsoft header without authserv-id",
        msg(
            auth=(
                "spf=pass (sender IP is 1.2.3.4) smtp.mailfrom=amazon.com; dkim=pass "
                "(signature was verified) header.d=amazon.com;dmarc=pass action=none "
                "header.from=amazon.com;compauth=pass reason=100",
            )
        ),
        True,
        True,
    ),
    ("no Authentication-Results", msg(auth=()), True, False),
    (
        "pass only lower in the stack",
        msg(
            auth=(
                "mx.example.net; spf=fail smtp.mailfrom=amazon.com; dkim=none; dmarc=fail "
                "header.from=amazon.com",
                GOOD_DMARC,
            )
        ),
        True,
        False,
    ),
    (
        "amazonses dkim only",
        msg(
            auth=(
                "mx.example.net; dkim=pass header.d=amazonses.com; spf=pass "
                "smtp.mailfrom=0100@amazonses.com; dmarc=fail header.from=amazon.com",
            )
        ),
        True,
        False,
    ),
    (
        "dmarc pass for another domain than From",
        msg(auth=("mx.example.net; dmarc=pass header.from=evil.example",)),
        True,
        False,
    ),
    (
        "dmarc pass for another Amazon site than From",
        msg(auth=("mx.example.net; dmarc=pass header.from=amazon.de",)),
        True,
        False,
    ),
    (
        "dkim pass, signer not aligned",
        msg(auth=("mx.example.net; dkim=pass header.d=evil.example",)),
        True,
        False,
    ),
    ("dkim fail", msg(auth=("mx.example.net; dkim=fail header.d=amazon.com",)), True, False),
    ("lookalike amaz0n", msg("service@amaz0n.com", "Amazon"), True, False),
    ("lookalike amazon-support.com", msg("help@amazon-support.com", "Support"), True, False),
    ("lookalike amazon.com.evil.io", msg("a@amazon.com.evil.io", "Account"), True, False),
    ("lookalike amazon.de.example", msg("a@amazon.de.example", "Konto"), True, False),
    (
        "punycode domain (amаzon.com, Cyrillic а)",
        msg("a@xn--amzon-5ve.com", "Service"),
        True,
        False,
    ),
    (
        "punycode label under an Amazon-looking domain",
        msg("a@xn--amzon-5ve.amazon.com.evil.io", "Service"),
        True,
        False,
    ),
    (
        "amazon name over a foreign address",
        msg(
            "noreply@mailer.example",
            "Amazon Security",
            auth=("mx.example.net; dmarc=pass header.from=mailer.example",),
        ),
        True,
        False,
    ),
    (
        "Cyrillic homoglyph display name",
        msg(
            "x@mailer.example",
            "Аmаzоn Sеrvісе",
            auth=("mx.example.net; dmarc=pass header.from=mailer.example",),
        ),
        True,
        False,
    ),
    ("leet and spaced display name", msg("x@mailer.example", "A m @ z 0 n"), True, False),
    ("zero-width characters in the name", msg("x@mailer.example", "Am\u200bazon"), True, False),
    ("two From headers", msg(from_count=2), True, False),
    (
        "Amazon in the subject only",
        msg(
            "x@mailer.example",
            "Support",
            "Your Amazon account is on hold",
            auth=("mx.example.net; dmarc=pass header.from=mailer.example",),
        ),
        True,
        False,
    ),
    (
        "Seller Central branding in the body",
        msg(
            "x@mailer.example",
            "Support",
            "Action required",
            "Log in to Seller Central to verify your identity.",
            auth=(),
        ),
        True,
        False,
    ),
    (
        "supplier, not Amazon at all",
        msg(
            "orders@supplier.example",
            "Acme Supplies",
            "Invoice 42",
            auth=("mx.example.net; dmarc=pass header.from=supplier.example",),
        ),
        False,
        False,
    ),
    (
        "friend mentions buying on Amazon in passing",
        msg(
            "anna@example.org",
            "Anna",
            "Re: weekend",
            "I bought the tent on Amazon last week, it is great.",
            auth=(),
        ),
        False,
        False,
    ),
    (
        "the Amazon river is not Amazon",
        msg("x@travel.example", "Travel", "Amazonian cruise"),
        False,
        False,
    ),
]


@pytest.mark.parametrize(
    ("message", "presents", "authenticated"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_assess(message: Message, presents: bool, authenticated: bool) -> None:
    trust = assess(message)
    assert (trust.presents_as_amazon, trust.authenticated) == (presents, authenticated)
    assert trust.suspicious == (presents and not authenticated)
    assert trust.reason


STACK = (
    "relay.attacker.example; dmarc=pass header.from=amazon.com",
    "mx.seller.example; spf=fail smtp.mailfrom=amazon.com; dmarc=fail header.from=amazon.com",
    "mx.provider.example; dmarc=pass header.from=amazon.com",
)


@pytest.mark.parametrize(
    ("trusted", "authenticated"),
    [
        ((), False),  # the topmost header is the attacker's, but it is topmost: it counts
        (["mx.provider.example"], True),
        (["MX.SELLER.EXAMPLE"], False),
        (["mx.seller.example", "mx.provider.example"], False),  # topmost trusted one wins
        (["nobody.example"], False),
    ],
)
def test_trusted_authserv_id_is_chosen(trusted: list[str], authenticated: bool) -> None:
    # Without a trusted list the topmost header is taken as the receiving server's.
    stack = STACK[1:] if not trusted else STACK
    assert assess(msg(auth=stack), trusted).authenticated is authenticated


def test_untrusted_only_reason_says_so() -> None:
    trust = assess(msg(auth=STACK), ["nobody.example"])
    assert trust.suspicious
    assert "trusted" in trust.reason


def test_lower_pass_reason_says_so() -> None:
    trust = assess(msg(auth=STACK[1:]))
    assert "lower in the stack" in trust.reason


@pytest.mark.parametrize(
    ("header", "server"),
    [
        ("mx.example.net; dkim=pass header.d=amazon.com", "mx.example.net"),
        ("mx.google.com 1; spf=pass", "mx.google.com"),
        ("(comment) mx.example.net;\tdmarc=pass", "mx.example.net"),
        ("spf=pass (sender IP is 1.2.3.4) smtp.mailfrom=amazon.com", ""),
    ],
)
def test_authserv_id(header: str, server: str) -> None:
    assert authserv_id(header) == server


@pytest.mark.parametrize(
    ("text", "plain"),
    [
        ("Аmаzоn", "amazon"),  # Cyrillic А, а, о
        ("ΑΜΑΖΟΝ", "amazon"),  # Greek capitals
        ("𝐀𝐦𝐚𝐳𝐨𝐧", "amazon"),  # mathematical bold
        ("Ａｍａｚｏｎ", "amazon"),  # full-width
        ("amaz0n", "amazon"),
        ("arnazon", "amazon"),
        ("Pr\u200ei\u200em\u200ee", "prime"),  # invisible marks between letters
    ],
)
def test_normalise_undoes_lookalikes(text: str, plain: str) -> None:
    assert normalise(text) == plain


@pytest.mark.parametrize(
    ("text", "plain"),
    [
        ("Àmázön Sèller", "amazon seller"),  # accents are combining marks once decomposed
        ("A\u20ddmazon", "amazon"),  # an enclosing mark
        ("Straße", "strasse"),  # casefolded, not only lower-cased
        ("Amazon 日本", "amazon 日本"),  # other scripts are kept
        ("\uab7a\uab87", "\u13aa\u13b7"),  # Cherokee casefolds to its capitals
        ("$ELLER CENTRAL", "seller central"),
        ("VVAREHOUSE", "warehouse"),
        ("", ""),
    ],
)
def test_normalise_folds_case_marks_and_scripts(text: str, plain: str) -> None:
    assert normalise(text) == plain
