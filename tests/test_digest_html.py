"""The HTML digest as a seller sees it: headless Chromium at desktop and phone widths.

Screenshots are kept in ``$TRIAGE_TEST_ARTIFACTS`` (default ``tests/artifacts/``).
"""

from __future__ import annotations

import html
import json
import os
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pytest
from lxml import html as lxml_html
from receivers import record

from triage import digest, replyclock
from triage.document import render
from triage.message import Message
from triage.state import Database
from triage.verdict import Action, Verdict

NOW = datetime(2025, 11, 24, 8, 0, tzinfo=UTC)
TZ = ZoneInfo("Europe/London")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(os.environ.get("TRIAGE_TEST_ARTIFACTS") or Path(__file__).parent / "artifacts")
HOSTILE = [
    "<script>alert(1)</script> Your account",
    '"><img src=x onerror=alert(1)> Verify your identity',
    "</table></ul><h2>Fake section</h2>",
]
ORDER = "305-1234567-7654321"
SEVERITY_RGB = {"critical": "rgb(198, 40, 40)", "high": "rgb(217, 99, 11)"}

PERFORMANCE_MAILS = [
    (40, "Order Defect Rate: 0.6% (target: under 1%). Late Shipment Rate: 2.1% (target: under "
         "4%). Valid Tracking Rate: 97.5% (target: above 95%). Account Health Rating: 310."),
    (20, "Order Defect Rate: 0.8% (target: under 1%). Late Shipment Rate: 3.2% (target: under "
         "4%). Valid Tracking Rate: 96% (target: above 95%). Account Health Rating: 260."),
    (1, "Order Defect Rate: 1.35% (target: under 1%). Late Shipment Rate: 4.6% (target: under "
        "4%). Valid Tracking Rate: 93.1% (target: above 95%). Account Health Rating: 180."),
]


def mail(db: Database, subject: str, type_: str, severity: str, hours_ago: float, **kw) -> int:
    at = NOW - timedelta(hours=hours_ago)
    suspicious = bool(kw.get("suspicious"))
    verdict = Verdict(
        type_, severity, 0.9, amazon=not suspicious, suspicious=suspicious,
        actions=kw.get("actions", []),
    )
    message = Message(
        subject=subject,
        sender_address=kw.get("sender", "seller-notification@amazon.de"),
        order_ids=tuple(kw.get("orders", ())),
        links=tuple(kw.get("links", ())),
        text=kw.get("text", ""),
        buyer_name=kw.get("buyer", ""),
        message_id=f"<{subject[:10]}-{hours_ago}@amazon.de>",
    )
    return record(db, message, verdict, received_at=at, now=at)


def everything(db: Database) -> None:
    """A week of a German seller's mail with every section of the digest in it."""
    for days_ago, text in PERFORMANCE_MAILS:
        mail(db, "Account Health: your performance", "account_health", "high", days_ago * 24,
             sender="seller-performance@amazon.de", text=text)
    # One order's story: a buyer writes, opens a claim, a return and a refund follow.
    mail(db, "Inquiry from Amazon customer Anna (Order: 305-1234567-7654321)",
         "buyer_message", "high", 30, orders=[ORDER], buyer="Anna",
         sender="anna-x1@marketplace.amazon.de")
    mail(db, "A-to-z Guarantee claim for order 305-1234567-7654321", "claim", "critical", 6,
         orders=[ORDER], text="Please respond by November 27, 2025.",
         links=["https://sellercentral.amazon.de/gp/guarantee-claims/claim?id=42"])
    mail(db, "Return request for order 305-1234567-7654321", "return", "normal", 5,
         orders=[ORDER])
    mail(db, "Policy warning: Restricted products", "policy", "critical", 3)
    mail(db, "Question about delivery (Order: 028-5555555-5555555)", "buyer_message", "high",
         4, orders=["028-5555555-5555555"], buyer="Jonas",
         sender="jonas-y2@marketplace.amazon.de")
    mail(db, "Negative feedback received", "feedback", "high", 8)
    mail(db, "Stranded inventory", "inventory", "normal", 9)
    mail(db, "Your payment is on its way", "payment", "low", 10)
    mail(db, "Your order has shipped: 028-1111111-2222222", "order", "high", 7,
         orders=["028-1111111-2222222"], actions=[Action("rescue", "INBOX")])
    for subject in HOSTILE:
        mail(db, subject, "account_health", "critical", 1, suspicious=True,
             sender="security@amaz0n-verify.example",
             links=["http://amaz0n-verify.example/login"])
    # Buyer messages of the past days, answered in time or not, for the daily rate.
    with db.transaction() as conn:
        for n in range(1, 7):
            opened = NOW - timedelta(days=n, hours=2)
            for k in range(3):
                row = conn.execute(
                    "INSERT INTO messages (folder, fingerprint, received_at, processed_at, type, "
                    "severity, history, actions) "
                    "VALUES ('INBOX', ?, ?, ?, 'buyer_message', 'high', 1, '[\"ignore\"]')",
                    (f"rate-{n}-{k}", opened.isoformat(), opened.isoformat()),
                ).lastrowid
                replyclock.open_clock(conn, int(row or 0), received_at=opened, order_id=None,
                                      thread="", relay="", buyer_name="", subject="")
                late = k == 2 and n % 2 == 0  # answered, but after the 24 hours
                answered = opened + timedelta(hours=30 if late else 3)
                replyclock.mark_answered(conn, [int(row or 0)], answered)


def html_digest(db: Database) -> str:
    built = digest.build_digest(db.conn, title="Amazon mail: daily digest, Mon 24 Nov",
                                since=NOW - timedelta(hours=36), until=NOW, tz=TZ)
    return render(digest.to_document(built, TZ), "html")


# Chromium's headless window is at least 500 px wide, so the digest is shown in a frame
# of the width under test; the probe reads what a person would notice from inside it.
PROBE = """
<script>
window.addEventListener('load', function () {
  var doc = document.getElementById('view').contentDocument;
  var root = doc.documentElement;
  var out = {scrollWidth: root.scrollWidth, clientWidth: root.clientWidth,
             scrollHeight: root.scrollHeight, cards: []};
  doc.querySelectorAll('table.card').forEach(function (card) {
    var mark = card.querySelector('td.mark');
    var button = card.querySelector('a.button');
    out.cards.push({severity: card.getAttribute('data-severity'),
                    mark: getComputedStyle(mark).backgroundColor,
                    button: button ? button.href : null,
                    buttonInside: button ? button.getBoundingClientRect().right <= root.clientWidth
                                         : null});
  });
  var pre = document.createElement('pre');
  pre.id = 'probe';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
  var copy = document.createElement('div');
  copy.id = 'copy';
  copy.innerHTML = doc.body.innerHTML;
  document.body.appendChild(copy);
});
</script>
"""


def framed(body: str, width: int, height: int, script: str = "") -> str:
    return (
        '<!DOCTYPE html><html><body style="margin:0;background:#d0d7de">'
        f'<iframe id="view" style="width:{width}px;height:{height}px;border:0;display:block;'
        f'margin:0 auto" '
        f'srcdoc="{html.escape(body, quote=True)}"></iframe>{script}</body></html>'
    )


def chromium(tmp_path: Path, page: Path, width: int, height: int, *args: str) -> str:
    assert CHROMIUM is not None
    result = subprocess.run(
        [
            CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--hide-scrollbars", f"--user-data-dir={tmp_path / 'profile'}",
            f"--window-size={max(width, 500)},{height}", *args, page.as_uri(),
        ],
        capture_output=True, text=True, timeout=120, check=True,
    )
    return result.stdout


def screenshot(tmp_path: Path, body: str, width: int, height: int, shot: Path) -> None:
    page = tmp_path / f"shot-{width}.html"
    page.write_text(framed(body, width, height), encoding="utf-8")
    chromium(tmp_path, page, width, height, f"--screenshot={shot}")


def probe(tmp_path: Path, body: str, width: int) -> tuple[dict, lxml_html.HtmlElement]:
    page = tmp_path / f"probe-{width}.html"
    page.write_text(framed(body, width, 2000, PROBE), encoding="utf-8")
    dom = lxml_html.fromstring(chromium(tmp_path, page, width, 2000, "--dump-dom"))
    return json.loads(dom.get_element_by_id("probe").text_content()), dom.get_element_by_id("copy")


@pytest.fixture
def rendered(db, tmp_path) -> str:
    everything(db)
    return html_digest(db)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
@pytest.mark.parametrize("width", [1200, 375])
def test_the_digest_reads_well_in_a_browser_at_desktop_and_phone_width(rendered, tmp_path, width):
    found, dom = probe(tmp_path, rendered, width)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / f"digest-{width}.png"
    screenshot(tmp_path, rendered, width, found["scrollHeight"], shot)
    assert shot.stat().st_size > 10_000

    # Nothing to scroll sideways, even on a phone.
    assert found["scrollWidth"] <= found["clientWidth"] == width
    ids = [e.get("id") for e in dom.xpath(".//td[contains(@class, 'section')]")]
    assert ids == ["critical", "high", "normal", "low", "rescued", "phishing",
                   "open-buyer-messages", "reply-rate", "account-health", "period"]
    assert dom.get_element_by_id("at-a-glance") is not None
    # Severity colours: every critical and high card carries its level's colour.
    by_level = {c["severity"] for c in found["cards"]}
    assert by_level == {"critical", "high"}
    for card in found["cards"]:
        assert card["mark"] == SEVERITY_RGB[card["severity"]]
    # Each critical item's button opens an https Seller Central page of amazon.<tld>.
    critical = [c for c in found["cards"] if c["severity"] == "critical"]
    assert len(critical) == 2
    for card in critical:
        url = urlsplit(card["button"])
        assert url.scheme == "https" and url.hostname == "sellercentral.amazon.de"
        assert card["buttonInside"]
    # Hostile subjects are text on the page, not markup.
    text = dom.text_content()
    for subject in HOSTILE:
        assert " ".join(subject.split()) in " ".join(text.split())
    assert dom.xpath(".//img") == []
    assert dom.xpath(".//script") == []
    assert [h.text_content() for h in dom.xpath(".//h2")].count("Fake section") == 0


def test_phishing_gets_no_button_and_no_link(rendered):
    tree = lxml_html.fromstring(rendered)
    phishing = tree.get_element_by_id("phishing")
    assert phishing.xpath(".//a") == []
    assert "amaz0n-verify" not in " ".join(tree.xpath("//a/@href"))
    assert all(urlsplit(h).hostname.startswith("sellercentral.amazon.")
               for h in tree.xpath("//a/@href"))


def test_one_orders_mail_reads_as_one_story_in_order(rendered):
    tree = lxml_html.fromstring(rendered)
    cards = [c for c in tree.xpath("//table[contains(@class, 'card')]")
             if ORDER in c.text_content()]
    assert len(cards) == 1  # the claim leads, the buyer's message and the return follow it
    story = [li.text_content() for li in cards[0].xpath(".//ol[contains(@class, 'story')]/li")]
    assert [s.split(" · ")[1] for s in story] == ["Buyer message", "Claim", "Return or refund"]
    assert "A-to-z claim on order 305-1234567-7654321 (3 mails)" in cards[0].text_content()
    # The claim's own secure Seller Central link is its button.
    assert cards[0].xpath(".//a[contains(@class, 'button')]/@href") == [
        "https://sellercentral.amazon.de/gp/guarantee-claims/claim?id=42"
    ]


def test_top_strip_counts_levels_and_names_the_first_thing_to_do(rendered):
    tree = lxml_html.fromstring(rendered)
    strip = tree.get_element_by_id("at-a-glance")
    cells = strip.xpath(".//td[@data-severity]")
    counts = {td.get("data-severity"): td.text_content() for td in cells}
    assert counts == {"critical": "2Critical", "high": "5High", "normal": "2Normal", "low": "1Low"}
    first = strip.xpath(".//td[contains(@class, 'first')]")[0].text_content()
    assert "A-to-z claim on order 305-1234567-7654321: respond by Thu 27 Nov · 3 days left" in first
    assert "https://sellercentral.amazon.de/gp/guarantee-claims/claim?id=42" in first


def test_charts_show_reply_rate_against_90_percent_and_metrics_against_targets(rendered):
    tree = lxml_html.fromstring(rendered)
    rate = tree.get_element_by_id("reply-rate").text_content()
    assert "Amazon's 90%" in rate and "67% (2/3)" in rate and "100% (3/3)" in rate
    health = tree.get_element_by_id("account-health").text_content()
    assert "Order defect rate" in health and "target under 1%" in health
    assert "1.35%" in health and "Worse by 0.75 points since" in health
    assert "Account health rating" in health and "target at least 200" in health
    assert "Missing Amazon's target: Order defect rate, Late shipment rate, Valid tracking rate, "\
        "Account health rating." in health
    period = tree.get_element_by_id("period").text_content()
    assert "Mail by type" in period and "Mail by severity" in period
    # Bars are table cells with a width, no script and no image.
    assert tree.xpath("//td[contains(@class, 'bar-fill')]/@width")


def test_an_account_health_card_says_what_the_mail_stated(rendered):
    tree = lxml_html.fromstring(rendered)
    card = next(c for c in tree.xpath("//table[contains(@class, 'card')]")
                if "Account health" in c.text_content())
    facts = [p.text_content() for p in card.xpath(".//p[contains(@class, 'fact')]")]
    assert facts == [
        "Order defect rate 1.35%, past its target (under 1%)",
        "Late shipment rate 4.6%, past its target (under 4%)",
        "Valid tracking rate 93.1%, past its target (at least 95%)",
        "Account health rating 180, past its target (at least 200)",
    ]
