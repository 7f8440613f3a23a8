"""The 24-hour reply clock, driven by an injected clock through reminders, answer and breach."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

import pytest
from receivers import record, run_cli

from triage import notify, notifypolicy, replyclock
from triage.message import Message
from triage.settings import NotifySettings, Settings
from triage.verdict import Action, Verdict

OPENED = datetime(2025, 11, 22, 10, 0, tzinfo=UTC)  # a Saturday: weekends count
ORDER = "114-1111111-2222222"
RELAY = "abcd1234@marketplace.amazon.co.uk"


# The notify section the daemon would hold for the rules file below.
NO_DIGESTS = notifypolicy.NotifyPolicy(digests=())


def config(tmp_path: Path, url: str) -> Settings:
    rules = tmp_path / "rules.yaml"
    rules.write_text("version: 1\nnotify:\n  digests: []\n", encoding="utf-8")
    return Settings(None, NotifySettings(urls=("reminder=" + url,)), tmp_path, rules)


def buyer_message(message_id: str = "<q1@marketplace.amazon.co.uk>") -> Message:
    return Message(
        sender_name="Jane - Amazon Marketplace",
        sender_address=RELAY,
        sender_domain="marketplace.amazon.co.uk",
        subject=f"Inquiry from Amazon customer Jane (Order: {ORDER})",
        order_ids=(ORDER,),
        buyer_name="Jane",
        message_id=message_id,
        notification_type="BBC_MESSAGE_SENT_TO_MERCHANT",
    )


def buyer_verdict() -> Verdict:
    return Verdict("buyer_message", "high", 0.95, amazon=True, actions=[Action("digest")])


def test_reminders_at_12h_4h_1h_then_breach(tmp_path, db, http):
    record(db, buyer_message(), buyer_verdict(), received_at=OPENED, now=OPENED)
    settings = config(tmp_path, http.url())
    for hours in (0, 11, 12, 12.5, 20, 23, 23.5, 24, 30):
        notify.deliver_due(db, settings, OPENED + timedelta(hours=hours), policy=NO_DIGESTS)
    assert http.titles == [
        "Reply to Jane (order 114-1111111-2222222): 12 hours left",
        "Reply to Jane (order 114-1111111-2222222): 4 hours left",
        "Reply to Jane (order 114-1111111-2222222): 1 h 00 min left",
        "24 hours passed without a reply to Jane (order 114-1111111-2222222)",
    ]


def test_after_an_outage_only_the_most_urgent_reminder_is_sent(tmp_path, db, http):
    record(db, buyer_message(), buyer_verdict(), received_at=OPENED, now=OPENED)
    settings = config(tmp_path, http.url())
    notify.deliver_due(db, settings, OPENED + timedelta(hours=22), policy=NO_DIGESTS)
    assert http.titles == ["Reply to Jane (order 114-1111111-2222222): 2 hours left"]


@pytest.mark.parametrize(
    "answer",
    [
        # Amazon's copy of the seller's reply, matched by order ID.
        Message(
            sender_address="donotreply@amazon.co.uk",
            subject=f"Message sent to Jane (Order: {ORDER})",
            order_ids=(ORDER,),
            notification_type="BBC_MESSAGE_CONFIRMATION_TO_MERCHANT",
        ),
        # The same, matched by thread only.
        Message(
            sender_address="donotreply@amazon.co.uk",
            subject="Your message has been sent",
            in_reply_to="<q1@marketplace.amazon.co.uk>",
            notification_type="BBC_MESSAGE_CONFIRMATION_TO_MERCHANT",
        ),
    ],
)
def test_amazons_copy_of_the_reply_stops_the_clock(tmp_path, db, http, answer):
    record(db, buyer_message(), buyer_verdict(), received_at=OPENED, now=OPENED)
    later = OPENED + timedelta(hours=3)
    answer_verdict = Verdict("buyer_message", "high", 0.9, amazon=True)
    record(db, answer, answer_verdict, received_at=later, now=later)
    settings = config(tmp_path, http.url())
    notify.deliver_due(db, settings, OPENED + timedelta(hours=30), policy=NO_DIGESTS)
    assert http.posts == []
    assert replyclock.reply_rate(db.conn, OPENED + timedelta(days=1), 7).in_time == 1


def test_a_reply_in_the_sent_folder_stops_the_clock(tmp_path, db, http):
    record(db, buyer_message(), buyer_verdict(), received_at=OPENED, now=OPENED)
    later = OPENED + timedelta(hours=2)
    sent = Message(sender_address="me@shop.example", to=RELAY, subject="Re: your order", date=later)
    record(db, sent, Verdict("other", "low", 0.5), received_at=later, now=later, folder_role="sent")
    assert replyclock.open_clocks(db.conn) == []


def test_the_answered_flag_stops_the_clock_and_late_answers_count_as_late(tmp_path, db):
    first = record(db, buyer_message(), buyer_verdict(), received_at=OPENED, now=OPENED)
    assert [r.message_row for r in notify.open_clock_rows(db.conn)] == [first]
    with db.transaction() as conn:
        notify.mark_answered(conn, [first], OPENED + timedelta(hours=25))
    assert notify.open_clock_rows(db.conn) == []
    rate = replyclock.reply_rate(db.conn, OPENED + timedelta(days=2), 7)
    assert (rate.in_time, rate.needing) == (0, 1)


def test_a_new_message_in_the_same_thread_opens_a_new_clock(tmp_path, db):
    record(db, buyer_message(), buyer_verdict(), received_at=OPENED, now=OPENED)
    later = OPENED + timedelta(hours=5)
    record(
        db,
        buyer_message("<q2@marketplace.amazon.co.uk>"),
        buyer_verdict(),
        received_at=later,
        now=later,
    )
    clocks = replyclock.open_clocks(db.conn)
    assert [c.due_at for c in clocks] == [OPENED + timedelta(hours=24), later + timedelta(hours=24)]


def test_phishing_dressed_as_a_buyer_message_opens_no_clock(db):
    fake = Verdict("buyer_message", "high", 0.9, suspicious=True)
    record(db, buyer_message(), fake, received_at=OPENED, now=OPENED)
    assert replyclock.open_clocks(db.conn) == []


@pytest.mark.parametrize(
    ("answers", "in_time", "needing", "percent"),
    [
        ([1, 2, 3], 3, 3, 100.0),
        ([1, 30, None], 1, 3, 100 / 3),  # one late, one never answered
        ([], 0, 0, None),
    ],
)
def test_reply_rate_is_answered_within_24h_over_messages_needing_a_reply(
    db, answers, in_time, needing, percent
):
    now = OPENED + timedelta(days=5)
    for n, hours in enumerate(answers):
        opened = OPENED + timedelta(minutes=n)
        row = record(
            db, buyer_message(f"<m{n}@x>"), buyer_verdict(), received_at=opened, now=opened
        )
        if hours is not None:
            with db.transaction() as conn:
                notify.mark_answered(conn, [row], opened + timedelta(hours=hours))
    rate = replyclock.reply_rate(db.conn, now, 7)
    assert (rate.in_time, rate.needing) == (in_time, needing)
    assert rate.percent == percent


# --- "no response needed" ----------------------------------------------------------------


def buyer_mail(subject: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = "Jane - Amazon Marketplace <abcd1234@marketplace.amazon.co.uk>"
    msg["To"] = "seller@example.com"
    msg["Subject"] = subject
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = f"<{subject.replace(' ', '-')}@marketplace.amazon.co.uk>"
    msg.set_content("Thank you, the parcel arrived. No need to answer!\n")
    return msg.as_bytes()


def test_no_response_needed_keyword_set_in_any_client_stops_the_clock(dovecot, db, tmp_path, http):
    from test_daemon import make_daemon

    dovecot.append("INBOX", buyer_mail("buyer question thanks"))
    keep = dovecot.append("INBOX", buyer_mail("buyer question where is it"))
    daemon = make_daemon(dovecot.imap_settings(), db, notify)  # the real notifier
    daemon.run_once()
    assert len(replyclock.open_clocks(db.conn)) == 2
    # The seller sets the keyword on the thank-you note in their mail client.
    with dovecot.client() as client:
        client.select_folder("INBOX")
        thanks = next(uid for uid in client.search("ALL") if uid != keep)
        client.add_flags([thanks], [replyclock.NO_RESPONSE_KEYWORD])
    daemon.run_once()
    still_open = replyclock.open_clocks(db.conn)
    assert [c.subject for c in still_open] == ["buyer question where is it"]
    # Reminders stop at once: 23 hours on, only the open question is chased.
    later = datetime.now(UTC) + timedelta(hours=23)
    notify.deliver_due(db, config(tmp_path, http.url()), later)
    # The new-mail alert falls back to this reminder-only target (no alert is dropped).
    reminders = [t for t in http.titles if t.startswith("Reply to ")]
    assert reminders == ["Reply to Jane: 59 minutes left"], http.titles
    # The reply rate counts it as not needing a reply, as Amazon does.
    rate = replyclock.reply_rate(db.conn, datetime.now(UTC) + timedelta(days=2), 7)
    assert (rate.in_time, rate.needing) == (0, 1)


def test_no_response_needed_from_the_command_line(tmp_path, db, http):
    now = datetime.now(UTC)
    record(db, buyer_message(), buyer_verdict(), received_at=now, now=now)
    wrong = run_cli(tmp_path, "reply-clock", "no-response", "not-an-order")
    assert wrong.returncode == 2 and "expected an order ID" in wrong.stderr
    done = run_cli(tmp_path, "reply-clock", "no-response", ORDER)
    assert done.returncode == 0, done.stderr
    assert f"Stopped: Jane (order {ORDER})" in done.stdout
    again = run_cli(tmp_path, "reply-clock", "no-response", ORDER)
    assert again.returncode == 1 and "No open reply clock" in again.stdout
    assert replyclock.open_clocks(db.conn) == []
    notify.deliver_due(db, config(tmp_path, http.url()), now + timedelta(hours=23))
    assert http.titles == []
