"""Where a digest's buttons lead: Seller Central, on the mail's own marketplace, https only."""

from __future__ import annotations

import pytest

from triage import sellercentral
from triage.errors import RulesError
from triage.taxonomy import TYPES

ORDER = "305-1234567-7654321"


@pytest.mark.parametrize(
    ("type_", "sender", "link", "order", "expected"),
    [
        # The mail's own secure Seller Central link wins.
        ("claim", "atoz-guarantee-no-reply@amazon.de",
         "https://sellercentral.amazon.de/gp/guarantee-claims/claim?id=9", ORDER,
         ("Respond to the claim", "https://sellercentral.amazon.de/gp/guarantee-claims/claim?id=9")),
        ("policy", "seller-performance@amazon.co.uk",
         "https://sellercentral-europe.amazon.com/performance/notifications", None,
         ("Open the policy notice",
          "https://sellercentral-europe.amazon.com/performance/notifications")),
        # Not https, not Seller Central, or not Amazon's: the marketplace's known page instead.
        ("claim", "atoz-guarantee-no-reply@amazon.fr",
         "http://sellercentral.amazon.fr/gp/guarantee-claims/home", ORDER,
         ("Respond to the claim", "https://sellercentral.amazon.fr/gp/guarantee-claims/home")),
        ("account_health", "seller-performance@amazon.it", "https://www.amazon.it/gp/help", None,
         ("Open Account Health", "https://sellercentral.amazon.it/performance/dashboard")),
        ("buyer_message", "x1@marketplace.amazon.es",
         "https://sellercentral.amazon.es.evil.example/messaging", ORDER,
         ("Reply to the buyer", "https://sellercentral.amazon.es/messaging/inbox")),
        ("order", "auto-confirm@amazon.com.mx", "", ORDER,
         ("Open the order", f"https://sellercentral.amazon.com.mx/orders-v3/order/{ORDER}")),
        ("order", "auto-confirm@amazon.com", "", None,
         ("Open the order", "https://sellercentral.amazon.com/orders-v3/order")),
        # An unknown marketplace falls back to amazon.com's Seller Central.
        ("feedback", "someone@example.org", "", None,
         ("Open Feedback Manager", "https://sellercentral.amazon.com/feedback-manager/index.html")),
        ("marketing", "news@amazon.de", "", None, None),
    ],
)
def test_buttons_lead_to_the_right_page(type_, sender, link, order, expected):
    assert sellercentral.load().button(type_, sender, link, order) == expected


def test_every_type_a_seller_acts_on_has_a_page():
    pages = sellercentral.load().pages
    assert set(TYPES) - set(pages) == {"marketing", "other"}


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("default: com\nhosts:\n  de: seller.example.de\npages: {}\n", 3,
         "not a Seller Central host"),
        ("default: com\nhosts:\n  zz: sellercentral.amazon.zz\npages: {}\n", 3,
         "unknown marketplace TLD 'zz'"),
        ("default: de\nhosts:\n  com: sellercentral.amazon.com\npages: {}\n", 1,
         "default 'de' is not one of the hosts"),
        ("default: com\nhosts:\n  com: sellercentral.amazon.com\npages:\n"
         "  claim: {label: Claim, path: 'https://evil.example/x'}\n", 5, "a path starts with"),
    ],
)
def test_a_wrong_data_file_is_refused_with_its_line(text, line, reason):
    with pytest.raises(RulesError) as caught:
        sellercentral.parse(text, "sellercentral.yaml")
    assert caught.value.line == line and reason in caught.value.reason
