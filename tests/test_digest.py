"""Digests: priority order, sections, escaping of hostile mail, rendering in a real browser."""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import markdown
import pytest
from lxml import html as lxml_html
from receivers import SmtpReceiver, record, run_cli

from triage import digest
from triage.document import Document, render, split_body
from triage.message import Message
from triage.schedule import DigestSchedule
from triage.state import Database
from triage.verdict import Action, Verdict

NOW = datetime(2025, 11, 24, 8, 0, tzinfo=UTC)
TZ = ZoneInfo("Europe/London")
HOSTILE = [
    "<script>alert(1)</script> Your account",
    "</table></ul></section><h2>Fake section</h2>",
    "[Verify now](http://evil.example/login) **urgent**",
]


def mail(db: Database, subject: str, type_: str, severity: str, hours_ago: float = 1, **kw):
    at = NOW - timedelta(hours=hours_ago)
    verdict = Verdict(
        type_,
        severity,
        0.9,
        amazon=not kw.get("suspicious"),
        suspicious=bool(kw.get("suspicious")),
        actions=kw.get("actions", []),
    )
    message = Message(
        subject=subject,
        sender_address=kw.get("sender", "x@amazon.com"),
        order_ids=tuple(kw.get("orders", ())),
        links=tuple(kw.get("links", ())),
        text=kw.get("text", ""),
    )
    return record(db, message, verdict, received_at=at, now=at)


def filled(db: Database) -> None:
    mail(db, "Stranded inventory", "inventory", "high", 3)
    mail(db, "Payment on its way", "payment", "low", 2)
    mail(db, "Return requested", "return", "normal", 2)
    mail(
        db,
        "Claim received",
        "claim",
        "critical",
        5,
        orders=["111-1111111-1111111"],
        links=["https://sellercentral.amazon.com/claims/1"],
        text="respond by November 27, 2025",
    )
    mail(db, "Account at risk", "account_health", "critical", 1)
    mail(db, "Negative feedback", "feedback", "high", 4)
    mail(db, "Rescued notice", "order", "high", 2, actions=[Action("rescue", "INBOX")])
    mail(db, "Ignored newsletter", "marketing", "low", 1, actions=[Action("ignore")])
    for subject in HOSTILE:
        mail(
            db,
            subject,
            "account_health",
            "critical",
            1,
            suspicious=True,
            sender="evil@amaz0n.example",
        )


def document(db: Database) -> Document:
    built = digest.build_digest(db.conn, title="Digest", since=None, until=NOW)
    return digest.to_document(built, TZ)


def test_sections_come_in_priority_order_with_counts(db):
    filled(db)
    text = render(document(db), "text")
    headings = [line for line in text.splitlines() if line.startswith("== ")]
    assert headings == [
        "== Critical (2) ==",
        "== High (3) ==",
        "== Normal (1) ==",
        "== Low (1) ==",
        "== Rescued from spam (1) ==",
        "== Suspected phishing (3) ==",
        "== Open buyer messages (0) ==",
        "== Reply rate within 24 hours ==",
        "== This period at a glance ==",
    ]
    assert "Ignored newsletter" not in text
    # Within a level: the one with a deadline first, then by time.
    critical = text.split("== Critical (2) ==")[1].split("== High")[0]
    assert critical.index("Claim received") < critical.index("Account at risk")
    assert "respond by Thu 27 Nov · 3 days left" in critical


def test_phishing_is_only_ever_listed_as_suspected_phishing(db):
    filled(db)
    text = render(document(db), "text")
    genuine = text.split("== Suspected phishing")[0]
    assert all("Fake section" not in part for part in genuine.split("\n"))
    assert "Verify now" not in genuine


@pytest.mark.parametrize("body_format", ["html", "markdown"])
def test_hostile_subjects_cannot_inject_markup_or_links(db, body_format):
    filled(db)
    body = render(document(db), body_format)
    page = body if body_format == "html" else markdown.markdown(body)
    tree = lxml_html.fromstring(page)
    assert tree.xpath("//script") == []
    assert [h.text_content() for h in tree.xpath("//h2")][-4:] == [
        "Suspected phishing (3)",
        "Open buyer messages (0)",
        "Reply rate within 24 hours",
        "This period at a glance",
    ]
    hrefs = tree.xpath("//a/@href")
    assert "https://sellercentral.amazon.com/claims/1" in hrefs
    assert all(h.startswith("https://sellercentral.amazon.com/") for h in hrefs)
    assert "evil.example" not in " ".join(hrefs)
    assert "Fake section" in tree.text_content()  # shown as text, not as a heading


def test_long_groups_are_trimmed_with_and_n_more(db):
    for n in range(30):
        mail(db, f"Listing {n}", "inventory", "low", 1 + n / 100)
    built = digest.build_digest(db.conn, title="Digest", since=None, until=NOW)
    text = render(digest.to_document(built, TZ, max_items=10), "text")
    assert text.count("Listing ") == 10
    assert "- and 20 more" in text


def test_long_chat_bodies_are_split_at_line_boundaries():
    body = "".join(f"line {n:03d}\n" for n in range(300))
    parts = split_body(body, 1000)
    assert all(len(p) <= 1000 for p in parts)
    assert "".join(parts) == body
    assert all(p.endswith("\n") for p in parts)


@pytest.mark.parametrize(
    ("schedule", "last", "expected"),
    [
        (DigestSchedule("h", every=timedelta(hours=1)), "2025-11-24T08:20", "2025-11-24T09:20"),
        (DigestSchedule("d", at=time(8)), "2025-11-24T08:00", "2025-11-25T08:00"),
        (DigestSchedule("d", at=time(8)), "2025-11-24T07:59", "2025-11-24T08:00"),
        # 08:00 in London is 07:00 UTC in summer time.
        (DigestSchedule("d", at=time(8)), "2025-06-01T12:00", "2025-06-02T07:00"),
        (DigestSchedule("w", at=time(8), weekday=0), "2025-11-24T08:00", "2025-12-01T08:00"),
        (DigestSchedule("m", at=time(8), monthday=1), "2025-11-24T08:00", "2025-12-01T08:00"),
        (DigestSchedule("m", at=time(8), monthday=1), "2025-12-01T08:00", "2026-01-01T08:00"),
        # The 31st in a 30-day month is its last day; February's is the 28th.
        (DigestSchedule("m", at=time(8), monthday=31), "2025-11-24T08:00", "2025-11-30T08:00"),
        (DigestSchedule("m", at=time(8), monthday=30), "2026-01-30T08:00", "2026-02-28T08:00"),
    ],
)
def test_schedules_follow_the_sellers_time_zone(schedule, last, expected):
    last_at = datetime.fromisoformat(last).replace(tzinfo=UTC)
    assert schedule.next_after(last_at, TZ) == datetime.fromisoformat(expected).replace(tzinfo=UTC)


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_the_html_digest_renders_in_a_browser_in_priority_order(db, tmp_path):
    filled(db)
    page = tmp_path / "digest.html"
    page.write_text(render(document(db), "html"), encoding="utf-8")
    result = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    dom = lxml_html.fromstring(result.stdout)
    assert dom.xpath("//td[contains(@class, 'section')]/@id") == [
        "critical",
        "high",
        "normal",
        "low",
        "rescued",
        "phishing",
        "open-buyer-messages",
        "reply-rate",
        "period",
    ]
    assert dom.xpath("//script") == []
    assert len(dom.xpath("//td[@id='phishing']//li")) == 3


def test_digest_preview_prints_and_sends_nothing_then_now_sends_once(db, tmp_path):
    filled(db)
    smtp = SmtpReceiver()
    try:
        preview = run_cli(tmp_path, "digest", "--preview", urls=smtp.url())
        assert preview.returncode == 0, preview.stderr
        assert "== Critical (2) ==" in preview.stdout
        assert smtp.inbox == []
        sent = run_cli(tmp_path, "digest", "--now", urls=smtp.url())
        assert sent.returncode == 0, sent.stderr
        again = run_cli(tmp_path, "digest", "--now", urls=smtp.url())
        assert "Nothing new" in again.stdout
    finally:
        smtp.stop()
    assert len(smtp.inbox) == 1
    html_body = smtp.inbox[0].body("html")
    assert "<script>" not in html_body and "Critical (2)" in html_body


@pytest.mark.parametrize(
    ("digests", "reason"),
    [
        ('[{name: monthly, at: "08:00", monthday: 0}]', "monthday must be a day from 1 to 31"),
        ('[{name: monthly, at: "08:00", monthday: first}]', "monthday must be a day from 1 to 31"),
        ("[{name: monthly, every: 1d, monthday: 1}]", "monthday goes with 'at'"),
        (
            '[{name: monthly, at: "08:00", weekday: monday, monthday: 1}]',
            "monthday goes with 'at' and not 'weekday'",
        ),
    ],
)
def test_a_wrong_monthly_digest_is_refused_with_file_and_line(tmp_path, digests, reason):
    from triage.errors import RulesError
    from triage.notifypolicy import policy_from_file

    rules = tmp_path / "rules.yaml"
    rules.write_text(f"version: 1\nnotify:\n  digests: {digests}\n", encoding="utf-8")
    with pytest.raises(RulesError) as caught:
        policy_from_file(rules)
    assert caught.value.line == 3 and reason in caught.value.reason


def test_a_monthly_digest_is_read_from_rules_yaml(tmp_path):
    from triage.notifypolicy import policy_from_file

    rules = tmp_path / "rules.yaml"
    rules.write_text(
        'version: 1\nnotify:\n  digests:\n    - {name: monthly, at: "09:00", monthday: 1}\n',
        encoding="utf-8",
    )
    (schedule,) = policy_from_file(rules).digests
    assert (schedule.name, schedule.at, schedule.monthday) == ("monthly", time(9), 1)
    assert not schedule.rolling()


def test_preview_writes_the_html_mail_to_look_at(db, tmp_path):
    filled(db)
    page = tmp_path / "preview.html"
    shown = run_cli(tmp_path, "digest", "--preview", "--html", str(page))
    assert shown.returncode == 0, shown.stderr
    assert "== Critical (2) ==" in shown.stdout
    tree = lxml_html.fromstring(page.read_text(encoding="utf-8"))
    assert tree.xpath("//td[@id='critical']//table[@data-severity='critical']")
    refused = run_cli(tmp_path, "digest", "--now", "--html", str(page))
    assert refused.returncode != 0


def test_mailed_digest_is_multipart_alternative_with_the_links_in_its_text(db, tmp_path):
    filled(db)
    smtp = SmtpReceiver()
    try:
        sent = run_cli(tmp_path, "digest", "--now", urls=smtp.url())
        assert sent.returncode == 0, sent.stderr
    finally:
        smtp.stop()
    (mail_,) = smtp.inbox
    assert mail_.message.get_content_type() == "multipart/alternative"
    text = mail_.body("plain")
    assert "Critical (2)" in text and "Do this first" in text
    assert "https://sellercentral.amazon.com/claims/1" in text
    assert "<script>" in text  # a hostile subject, as the text it is
    assert "{" not in text.split("Critical (2)")[0]  # no CSS leaked into the text


def test_answered_buyer_messages_go_after_those_still_waiting(db):
    from triage import replyclock

    first = mail(db, "Where is my parcel?", "buyer_message", "high", 5,
                 sender="a1@marketplace.amazon.com", orders=["111-0000001-0000001"])
    mail(db, "Can I change the size?", "buyer_message", "high", 2,
         sender="b2@marketplace.amazon.com", orders=["111-0000002-0000002"])
    with db.transaction() as conn:
        replyclock.mark_answered(conn, [first], NOW - timedelta(hours=4))
    text = render(document(db), "text")
    high = text.split("== High (2) ==")[1]
    assert high.index("Can I change the size?") < high.index("Where is my parcel?")
    assert "Do this first: Answer a buyer about order 111-0000002-0000002" in text
