"""A broken rules.yaml edit while the daemon runs: refused, told at once, nothing stops."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from receivers import HttpReceiver, record

from triage import health, notify
from triage.daemon import deliver_due, tell_operator_refused
from triage.liverules import RulesWatcher
from triage.message import Message
from triage.notifypolicy import NotifyPolicy
from triage.rules import Rules, load_rules
from triage.settings import NotifySettings, Settings
from triage.state import Database
from triage.verdict import Action, Verdict

GOOD = """\
version: 1
notify:
  route:
    critical: [phone]
"""


def test_a_refused_edit_is_sent_at_once_with_the_last_good_targets(
    tmp_path: Path, http: HttpReceiver
) -> None:
    rules_path = tmp_path / "rules.yaml"
    rules_path.write_text(GOOD, encoding="utf-8")
    settings = Settings(None, NotifySettings(urls=("phone=" + http.url("phone"),)), tmp_path,
                        rules_path)
    running = {"rules": load_rules(rules_path)}
    watcher = RulesWatcher(
        rules_path,
        lambda rules: running.update(rules=rules),
        tell_operator_refused(settings, lambda: running["rules"].section("notify")),
    )
    heartbeat = health.configure(tmp_path, max_age=60)
    heartbeat.beat("shop")
    # A broken edit: the file on disk stays broken while everything below runs.
    rules_path.write_text(GOOD + "  digests: [\n", encoding="utf-8")
    assert watcher.check() is False
    deadline = time.monotonic() + 10  # sent at once, from a thread of its own
    while not http.posts and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(http.posts) == 1
    assert f"{rules_path}:6: not valid YAML" in http.messages[0]
    assert "last good rules keep running" in http.messages[0]
    assert not heartbeat.check().ok
    # A critical claim arriving now still goes out, to the last good policy's route.
    db = Database(settings.database_path)
    try:
        now = datetime.now(UTC)
        record(db, Message(subject="A-to-z claim", sender_address="atoz@amazon.com"),
               Verdict("claim", "critical", 0.9, amazon=True, actions=[Action("alert")]),
               received_at=now, now=now)
        notify.deliver_due(db, settings, now, policy=running["rules"].section("notify"))
    finally:
        db.close()
    assert http.paths == ["/phone", "/phone"]
    assert isinstance(running["rules"], Rules)
    # A good edit takes over and health recovers.
    rules_path.write_text(GOOD + "  max_chars: 2000\n", encoding="utf-8")
    watcher.apply = lambda rules: (running.update(rules=rules), health.set_problem("rules", None))
    assert watcher.check() is True
    assert running["rules"].section("notify").max_chars == 2000
    assert heartbeat.check().ok
    health.configure(None, max_age=60)


def test_a_critical_alert_waiting_for_a_target_makes_the_daemon_unhealthy(
    tmp_path: Path, http: HttpReceiver
) -> None:
    rules_path = tmp_path / "rules.yaml"
    rules_path.write_text("version: 1\n", encoding="utf-8")
    nobody = Settings(None, NotifySettings(urls=()), tmp_path, rules_path)
    heartbeat = health.configure(tmp_path, max_age=3600)
    arrived = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    heartbeat.beat("shop", now=arrived.timestamp())
    db = Database(tmp_path / "triage.db")
    try:
        record(db, Message(subject="A-to-z claim", sender_address="atoz@amazon.com"),
               Verdict("claim", "critical", 0.9, amazon=True, actions=[Action("alert")]),
               received_at=arrived, now=arrived)
        policy = NotifyPolicy()
        deliver_due(db, nobody, arrived, policy)
        assert heartbeat.check(now=arrived.timestamp()).ok
        later = arrived + timedelta(minutes=11)
        deliver_due(db, nobody, later, policy)
        sick = heartbeat.check(now=arrived.timestamp())
        assert not sick.ok and "a critical alert has waited 11 min" in sick.reason
        # A target at last: the alert goes out and health recovers.
        reachable = Settings(None, NotifySettings(urls=(http.url(),)), tmp_path, rules_path)
        deliver_due(db, reachable, later, policy)
        assert len(http.posts) == 1
        assert heartbeat.check(now=arrived.timestamp()).ok
    finally:
        db.close()
        health.configure(None, max_age=60)
