"""Alerts, routing and the outbox, against real HTTP and SMTP receivers."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from receivers import HttpReceiver, SmtpReceiver, record, run_cli

from triage import notify, notifypolicy
from triage.errors import ConfigError, RulesError
from triage.message import Message
from triage.rules import load_rules
from triage.settings import NotifySettings, Settings
from triage.state import Database
from triage.verdict import Action, Verdict

NOW = datetime(2025, 11, 23, 9, 0, tzinfo=UTC)  # a Sunday
LINK = "https://sellercentral.amazon.com/gp/guarantee-claims/home.html?claimId=42"


def settings(tmp_path: Path, *urls: str, rules: str = "") -> Settings:
    rules_path = tmp_path / "rules.yaml"
    rules_path.write_text("version: 1\n" + rules, encoding="utf-8")
    return Settings(
        imap=None,
        notify=NotifySettings(urls=urls, timezone="Europe/London"),
        state_dir=tmp_path,
        rules_path=rules_path,
    )


def claim(order: str = "111-1234567-1234567", **kwargs: object) -> Message:
    fields: dict[str, object] = {
        "sender_address": "atoz-guarantee-no-reply@amazon.com",
        "sender_domain": "amazon.com",
        "subject": f"A-to-z Guarantee claim received for order {order}",
        "order_ids": (order,),
        "links": (LINK,),
        "message_id": f"<claim-{order}@amazon.com>",
    }
    fields.update(kwargs)
    return Message(**fields)  # type: ignore[arg-type]


def verdict(type_: str = "claim", severity: str = "critical", **kwargs: object) -> Verdict:
    fields: dict[str, object] = {"amazon": True, "actions": [Action("alert")]}
    fields.update(kwargs)
    return Verdict(type=type_, severity=severity, confidence=0.9, **fields)  # type: ignore[arg-type]


def test_a_to_z_claim_is_pushed_with_order_deadline_and_link(tmp_path, db, http):
    record(db, claim(), verdict(), received_at=NOW, now=NOW)
    report = notify.deliver_due(db, settings(tmp_path, http.url()), NOW)
    assert report.sent == 1
    assert http.titles == [
        "A-to-z claim on order 111-1234567-1234567: respond by Wed 26 Nov (3 days)"
    ]
    assert LINK in http.messages[0]


@pytest.mark.parametrize(
    ("sender", "subject", "text", "expected"),
    [
        (
            "cb-seller-notification@amazon.com",
            "Chargeback notification",
            "",
            "Chargeback on order 111-1234567-1234567: respond by Sun 30 Nov (7 days)",
        ),
        (
            "atoz-guarantee-no-reply@amazon.com",
            "Claim",
            "Please respond by November 28, 2025.",
            "A-to-z claim on order 111-1234567-1234567: respond by Fri 28 Nov (5 days)",
        ),
        (
            "atoz-guarantee-no-reply@amazon.com",
            "Claim",
            "You must respond within 2 days.",
            "A-to-z claim on order 111-1234567-1234567: respond by Tue 25 Nov (2 days)",
        ),
    ],
)
def test_deadline_comes_from_the_mail_or_amazons_terms(
    tmp_path, db, http, sender, subject, text, expected
):
    record(
        db,
        claim(sender_address=sender, subject=subject, text=text),
        verdict(),
        received_at=NOW,
        now=NOW,
    )
    notify.deliver_due(db, settings(tmp_path, http.url()), NOW)
    assert http.titles == [expected]


def test_several_arriving_together_become_one_grouped_alert(tmp_path, db, http):
    for n in range(3):
        record(db, claim(order=f"111-000000{n}-1234567"), verdict(), received_at=NOW, now=NOW)
    notify.deliver_due(db, settings(tmp_path, http.url()), NOW)
    assert http.titles == ["3 Amazon notices need you"]
    assert all(f"111-000000{n}-1234567" in http.messages[0] for n in range(3))


def test_suspicious_mail_is_never_presented_as_genuine(tmp_path, db, http):
    fake = claim(sender_address="atoz@amaz0n-claims.example", sender_domain="amaz0n-claims.example")
    record(db, fake, verdict(amazon=False, suspicious=True), received_at=NOW, now=NOW)
    notify.deliver_due(db, settings(tmp_path, http.url()), NOW)
    assert http.titles[0].startswith("Suspected phishing")
    assert "sellercentral" not in http.messages[0]


@pytest.mark.parametrize(
    ("history", "actions", "severity", "pushed"),
    [
        (False, [Action("alert")], "high", 1),
        (True, [Action("alert")], "critical", 0),  # history: stored, not pushed
        (False, [Action("digest")], "normal", 0),
        (False, [Action("digest")], "critical", 0),  # the rules chose the digest
        (False, [], "critical", 1),  # no choice made: critical goes out by default
        (False, [Action("ignore")], "critical", 0),
    ],
)
def test_what_is_pushed_at_once(tmp_path, db, http, history, actions, severity, pushed):
    record(
        db,
        claim(),
        verdict(severity=severity, actions=actions),
        received_at=NOW,
        now=NOW,
        history=history,
    )
    notify.deliver_due(db, settings(tmp_path, http.url()), NOW)
    assert len(http.posts) == pushed


def test_tags_route_critical_to_the_phone_and_digests_to_email(tmp_path, db, http):
    smtp = SmtpReceiver()
    try:
        config = settings(tmp_path, "critical=" + http.url("phone"), "digest=" + smtp.url())
        record(db, claim(), verdict(), received_at=NOW, now=NOW)
        notify.deliver_due(db, config, NOW)
        assert http.paths == ["/phone"] and smtp.inbox == []
        # Monday 09:00: the daily digest is due, and the weekly summary too.
        notify.deliver_due(db, config, NOW + timedelta(days=1))
        assert len(http.posts) == 1
        assert sorted(m.message["Subject"] for m in smtp.inbox) == [
            "Amazon mail: daily digest, Mon 24 Nov",
            "Amazon mail: weekly digest, Mon 24 Nov",
        ]
        assert ">Critical (1)</h2>" in smtp.inbox[0].body("html")
    finally:
        smtp.stop()


def test_a_target_down_then_up_gets_the_alert_exactly_once(tmp_path, db, http):
    config = settings(tmp_path, http.url())
    record(db, claim(), verdict(), received_at=NOW, now=NOW)
    http.stop()
    assert notify.deliver_due(db, config, NOW).failed == 1
    http.start()
    # Backing off: the next try waits, then goes through once.
    assert notify.deliver_due(db, config, NOW + timedelta(seconds=5)).sent == 0
    assert notify.deliver_due(db, config, NOW + timedelta(seconds=31)).sent == 1
    reopened = Database(db.path)  # a restart
    try:
        assert notify.deliver_due(reopened, config, NOW + timedelta(hours=1)).sent == 0
    finally:
        reopened.close()
    assert len(http.posts) == 1
    assert notify.pending(db) == []


def test_backoff_doubles_while_the_target_refuses(tmp_path, db, http):
    config = settings(tmp_path, http.url())
    record(db, claim(), verdict(), received_at=NOW, now=NOW)
    http.status = 500
    tries = [NOW + timedelta(seconds=s) for s in (0, 30, 60, 90, 150, 209, 210)]
    failed = [notify.deliver_due(db, config, t).failed for t in tries]
    assert failed == [1, 1, 0, 1, 0, 0, 1]  # retries after 30 s, 60 s, 120 s...
    http.status = 200
    assert notify.deliver_due(db, config, NOW + timedelta(hours=2)).sent == 1
    assert len(http.posts) == 1


def test_only_the_failed_target_is_retried(tmp_path, db, http):
    other = HttpReceiver()
    try:
        config = settings(tmp_path, http.url("a"), other.url("b"))
        record(db, claim(), verdict(), received_at=NOW, now=NOW)
        other.status = 503
        report = notify.deliver_due(db, config, NOW)
        assert (report.sent, report.failed) == (1, 1)
        other.status = 200
        notify.deliver_due(db, config, NOW + timedelta(minutes=5))
        assert len(http.posts) == 1 and len(other.posts) == 1
    finally:
        other.stop()


def test_quiet_hours_hold_back_all_but_critical(tmp_path, db, http):
    night = datetime(2025, 11, 23, 23, 0, tzinfo=UTC)
    config = settings(
        tmp_path,
        "alert=" + http.url(),
        rules="notify:\n  quiet_hours: {from: '22:00', to: '07:00'}\n",
    )
    policy = notifypolicy.policy_from_file(config.rules_path)
    record(
        db,
        claim(order="111-0000001-0000001"),
        verdict(severity="high"),
        received_at=night,
        now=night,
    )
    notify.deliver_due(db, config, night, policy=policy)
    record(
        db,
        claim(order="111-0000002-0000002"),
        verdict(),
        received_at=night,
        now=night + timedelta(seconds=1),
    )
    notify.deliver_due(db, config, night + timedelta(seconds=1), policy=policy)
    assert len(http.posts) == 1 and "111-0000002-0000002" in http.titles[0]
    notify.deliver_due(db, config, night + timedelta(hours=7, minutes=59), policy=policy)
    # The digests reach this alert-only target too (no target takes their tag).
    alerts = lambda: [t for t in http.titles if "digest" not in t]  # noqa: E731
    assert len(alerts()) == 1
    notify.deliver_due(db, config, night + timedelta(hours=8), policy=policy)
    assert len(alerts()) == 2 and "111-0000001-0000001" in alerts()[1]


def test_silence_is_reported_once_per_silence(tmp_path, db, http):
    config = settings(tmp_path, "alert=" + http.url())
    record(
        db,
        claim(),
        verdict(actions=[Action("digest")], severity="normal"),
        received_at=NOW,
        now=NOW,
    )
    for hours in (0, 71, 72, 80, 100):
        notify.deliver_due(db, config, NOW + timedelta(hours=hours))
    # Digests also reach this alert-only target, no target taking their tag.
    assert [t for t in http.titles if "digest" not in t] == ["No mail from Amazon for 72 hours"]
    later = NOW + timedelta(hours=101)
    record(
        db,
        claim(order="111-0000009-0000009"),
        verdict(actions=[Action("digest")], severity="normal"),
        received_at=later,
        now=later,
    )
    notify.deliver_due(db, config, later + timedelta(hours=73))
    assert len([t for t in http.titles if "digest" not in t]) == 2


def test_operator_notes_are_delivered(tmp_path, db, http):
    notify.notify_operator(db, "triage backfilled 12 older messages", NOW)
    notify.deliver_due(db, settings(tmp_path, http.url()), NOW)
    assert "backfilled 12 older messages" in http.messages[0]


@pytest.mark.parametrize(
    ("section", "line", "reason"),
    [
        ("notify:\n  colour: red\n", 4, "unknown key 'colour'"),
        ("notify:\n  reminders: [12h, soon]\n", 4, "expected a duration"),
        ("notify:\n  alert: {severities: [urgent]}\n", 4, "unknown name 'urgent'"),
        ("notify:\n  digests:\n    - {name: d, at: '8 o clock'}\n", 5, "expected a time"),
        ("notify:\n  digests:\n    - {name: d, every: 1h, at: '08:00'}\n", 5, "either 'every'"),
        ("notify:\n  quiet_hours: '22-7'\n", 4, "quiet_hours"),
    ],
)
def test_bad_notify_sections_are_refused_with_file_and_line(tmp_path, section, line, reason):
    path = tmp_path / "rules.yaml"
    path.write_text("version: 1\n\n" + section, encoding="utf-8")
    with pytest.raises(RulesError) as caught:
        load_rules(path).section("notify")
    assert caught.value.line == line
    assert reason in str(caught.value)


def test_a_full_notify_section_is_read(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text(
        "version: 1\nnotify:\n  alert: {severities: [critical, high], types: [feedback]}\n"
        "  route: {critical: [phone]}\n  digests:\n    - {name: morning, at: '07:30'}\n"
        "  reminders: [6h, 30m]\n  silence_after: 2d\n",
        encoding="utf-8",
    )
    policy = notifypolicy.policy_from_file(path)
    assert policy.alert_severities == ("critical", "high")
    assert policy.tags_for("alert", "critical") == ("alert", "critical", "phone")
    assert [d.name for d in policy.digests] == ["morning"]
    assert policy.reminders == (timedelta(hours=6), timedelta(minutes=30))
    assert policy.silence_after == timedelta(days=2)


def test_an_unusable_url_is_refused_without_showing_it(tmp_path):
    with pytest.raises(ConfigError) as caught:
        notify.load_targets(settings(tmp_path, "nosuchscheme://user:hunter2@host"))
    assert "hunter2" not in str(caught.value)


def test_notify_test_reports_each_target_with_secrets_masked(tmp_path, http):
    smtp = SmtpReceiver()
    try:
        down = HttpReceiver()
        down.stop()
        urls = f"{http.url()} {smtp.url()},{down.url('gone')}"
        result = run_cli(tmp_path, "notify", "--test", urls=urls)
    finally:
        smtp.stop()
    assert result.returncode == 1
    assert "secret-pass" not in result.stdout + result.stderr
    assert f"ok      json://127.0.0.1:{http.port}/hook" in result.stdout
    assert f"ok      mailto://user:****@127.0.0.1:{smtp.port}" in result.stdout
    assert f"FAILED  json://127.0.0.1:{down.port}/gone" in result.stdout
    assert len(http.posts) == 1 and len(smtp.inbox) == 1


# --- nothing dropped for want of a target ------------------------------------------------


def buyer(order: str) -> Message:
    return claim(order=order, subject=f"Inquiry from Amazon customer Jo (Order: {order})",
                 sender_address="jo@marketplace.amazon.com", links=())


def test_readme_tag_example_delivers_every_alert(tmp_path, db, http):
    # TRIAGE_NOTIFY_URLS="phone+reminder=json://... digest=json://..." and the README's
    # routes (critical and claim to the phone).
    config = settings(tmp_path, "phone+reminder=" + http.url("phone"),
                      "digest=" + http.url("digest"))
    policy = notifypolicy.NotifyPolicy(routes={"critical": ("phone",), "claim": ("phone",)})
    record(db, claim(), verdict(), received_at=NOW, now=NOW)
    notify.deliver_due(db, config, NOW, policy=policy)
    assert http.paths == ["/phone"]
    # A buyer message pushed at once carries no tag either target has: it goes to the
    # default targets (here both, as both are tagged) instead of nowhere.
    later = NOW + timedelta(minutes=1)
    record(db, buyer("111-0000003-0000003"), verdict("buyer_message", "high"),
           received_at=later, now=later)
    notify.deliver_due(db, config, later, policy=policy)
    assert sorted(http.paths[1:]) == ["/digest", "/phone"]
    assert all("111-0000003-0000003" in m for m in http.messages[1:])
    assert notify.pending(db) == []


def test_an_alert_no_tag_takes_is_logged_with_its_tags(tmp_path, db, http, caplog):
    config = settings(tmp_path, "digest=" + http.url("digest"))
    record(db, claim(), verdict(), received_at=NOW, now=NOW)
    notify.deliver_due(db, config, NOW)
    assert http.paths == ["/digest"]
    assert "no notification target takes the tags alert, critical, claim" in caplog.text


def test_check_rules_warns_about_a_route_to_a_tag_no_target_has(tmp_path, http):
    (tmp_path / "rules.yaml").write_text("", encoding="utf-8")
    result = run_cli(tmp_path, "check-rules", str(tmp_path / "own-rules.yaml"),
                     urls="phone=" + http.url("phone"))
    assert "cannot read" in result.stdout  # the file named must exist
    rules_file = tmp_path / "own-rules.yaml"
    rules_file.write_text("version: 1\nnotify:\n  route:\n    claim: [pager]\n", encoding="utf-8")
    result = run_cli(tmp_path, "check-rules", str(rules_file), urls="phone=" + http.url("phone"))
    assert result.returncode == 0
    assert "warning: notify: route: claim: no notification target has the tag pager" in (
        result.stdout
    )


def test_digest_now_without_a_target_fails_and_keeps_the_digest(tmp_path, http):
    db = Database(tmp_path / "triage.db")
    try:
        record(db, claim(), verdict(actions=[Action("digest")]), received_at=NOW, now=NOW)
    finally:
        db.close()
    result = run_cli(tmp_path, "digest", "--now")
    assert result.returncode != 0
    assert "no notification target" in result.stdout + result.stderr
    # Nothing was marked sent: the same digest still goes out once a target is set.
    result = run_cli(tmp_path, "digest", "--now", urls=http.url())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "digest sent to 1 target(s)" in result.stdout
    assert "111-1234567-1234567" in http.messages[0]


# --- recovery ---------------------------------------------------------------------------


def test_a_target_that_recovers_gets_its_queue_oldest_first_at_once(tmp_path, db, http):
    config = settings(tmp_path, http.url())
    http.status = 500
    orders = [f"111-000000{i}-000000{i}" for i in range(1, 5)]
    for minute, order in enumerate(orders):
        when = NOW + timedelta(minutes=minute)
        record(db, claim(order=order), verdict(), received_at=when, now=when)
        notify.deliver_due(db, config, when)
    # One probe per round while it is down, not one per queued alert.
    assert len(http.posts) <= len(orders)
    http.posts.clear()
    http.status = 200
    report = notify.deliver_due(db, config, NOW + timedelta(minutes=30))
    assert report.sent == len(orders)
    assert [next(o for o in orders if o in t) for t in http.titles] == orders
    assert notify.pending(db) == []


def test_labels_mask_every_kind_of_secret(tmp_path):
    url = ("json://user:UrlPassw0rd@127.0.0.1:9/hooks/PathT0kenSecret"
           "?+X-Api-Key=HeaderT0kenSecret")
    (target,) = notify.load_targets(settings(tmp_path, url))
    for secret in ("UrlPassw0rd", "PathT0kenSecret", "HeaderT0kenSecret"):
        assert secret not in target.label
    assert target.label.startswith("json://user:****@127.0.0.1:9/hooks/****?")


def test_an_unreadable_mail_that_presents_as_amazon_is_pushed_and_digested(tmp_path, db, http):
    from triage.sync import unreadable_verdict

    message = Message(sender_address="atoz-guarantee-no-reply@amazon.com",
                      sender_domain="amazon.com", subject="A-to-z Guarantee claim filed",
                      error="unreadable message: broken beyond repair")
    row = record(db, message, unreadable_verdict(message.error, message), received_at=NOW,
                 now=NOW)
    with db.transaction() as conn:  # as the sync records it
        conn.execute("UPDATE messages SET error = ? WHERE id = ?", (message.error, row))
    config = settings(tmp_path, http.url())
    notify.deliver_due(db, config, NOW)
    assert http.titles == [
        "Could not read a mail from atoz-guarantee-no-reply@amazon.com: "
        "check Seller Central (not its links)"
    ]
    assert "A-to-z Guarantee claim filed" in http.messages[0]
    notify.deliver_due(db, config, NOW + timedelta(days=1))  # the daily digest
    digest = next(m for t, m in zip(http.titles, http.messages, strict=True) if "daily" in t)
    assert "could not read this mail from atoz-guarantee-no-reply@amazon.com" in digest


def test_digest_now_with_a_broken_rules_file_still_sends(tmp_path, http, monkeypatch, capsys):
    for name in [n for n in os.environ if n.startswith("TRIAGE_")]:
        monkeypatch.delenv(name)
    rules_path = tmp_path / "rules.yaml"
    rules_path.write_text("version: 1\nrules: [\n", encoding="utf-8")
    monkeypatch.setenv("TRIAGE_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("TRIAGE_RULES", str(rules_path))
    monkeypatch.setenv("TRIAGE_NOTIFY_URLS", http.url())
    db = Database(tmp_path / "triage.db")
    try:
        record(db, claim(), verdict(actions=[Action("digest")]), received_at=NOW, now=NOW)
    finally:
        db.close()
    assert notify.digest_now(preview=False, now=NOW + timedelta(minutes=1)) == 0
    assert f"{rules_path}:3" in capsys.readouterr().err
    assert "111-1234567-1234567" in http.messages[0]
