"""Account-health metrics: read in five languages, kept per account, alerted on, drawn."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from receivers import record

from triage import notify, performance
from triage.errors import RulesError
from triage.message import Message
from triage.settings import NotifySettings, Settings
from triage.verdict import Action, Verdict

DATA = Path(__file__).parent / "data" / "metrics"
NOW = datetime(2025, 11, 24, 8, 0, tzinfo=UTC)


def labelled() -> list[tuple[str, int, dict, dict]]:
    cases = []
    for path in sorted(DATA.glob("*.yaml")):
        for index, item in enumerate(yaml.safe_load(path.read_text(encoding="utf-8"))):
            cases.append((path.stem, index, item["text"], item["stated"]))
    return cases


def score() -> tuple[int, int, list[str]]:
    """Stated values and targets read exactly, out of all stated; and what was wrong."""
    right = total = 0
    wrong = []
    for name, index, text, stated in labelled():
        found = performance.extract(text)
        for key, expected in stated.items():
            value, target = expected if isinstance(expected, list) else (expected, None)
            got = found.get(key)
            for what, want, have in [
                ("value", value, got.value if got else None),
                ("target", target, got.target if got else None),
            ]:
                if want is None:
                    continue
                total += 1
                right += have == want
                if have != want:
                    wrong.append(f"{name}[{index}] {key} {what}: {have} != {want}")
        wrong += [f"{name}[{index}] {key}: not stated" for key in set(found) - set(stated)]
    return right, total, wrong


def test_stated_values_are_read_exactly_in_five_languages():
    right, total, wrong = score()
    languages = {name for name, *_ in labelled()}
    assert {"en", "de", "fr", "it", "es"} <= languages
    assert total >= 100
    print(f"metric values read exactly: {right}/{total} = {right / total:.1%}; missed: {wrong}")
    assert right / total >= 0.95, wrong
    assert not [w for w in wrong if w.endswith("not stated")]  # nothing made up


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Order Defect Rate: 1.35% (target: under 1%)", {"odr": (1.35, 1.0)}),
        ("Ihre Bestellmängelquote: 1,2 % (Ziel: unter 1 %)", {"odr": (1.2, 1.0)}),
        ("Your order defect rate (target: under 1%) is 0.4%", {"odr": (0.4, 1.0)}),
        ("Account Health Rating: 180/1000", {"ahr": (180.0, None)}),
        ("Your ODR over the last 60 days is 0.9%", {"odr": (0.9, None)}),
        ("Order defect rate: see Seller Central", {}),
        ("Your rating is fine.", {}),
    ],
)
def test_extraction_table(text, expected):
    found = performance.extract(text)
    assert {k: (v.value, v.target) for k, v in found.items()} == expected


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("metrics: {}\nlanguages: {}\nextra: 1\n", 3, "unknown key 'extra'"),
        (
            "metrics:\n  odr: {label: ODR, unit: '%', target: 1, better: down, fast: 1}\n"
            "languages: {}\n",
            2,
            "unknown direction 'down'",
        ),
    ],
)
def test_a_broken_patterns_file_is_refused_with_file_and_line(text, line, reason):
    with pytest.raises(RulesError) as caught:
        performance.parse(text, "performance.yaml")
    assert caught.value.path == "performance.yaml" and caught.value.line == line
    assert reason in caught.value.reason


def test_a_bad_regular_expression_names_its_line():
    shipped = (Path(performance.__file__).parent / "data" / "performance.yaml").read_text("utf-8")
    broken = shipped.replace("'late response rate'", "'late (response rate'")
    with pytest.raises(RulesError) as caught:
        performance.parse(broken, "performance.yaml")
    line = shipped.splitlines().index(
        next(x for x in shipped.splitlines() if "'late response rate'" in x)
    )
    assert caught.value.line == line + 1 and "bad regular expression" in caught.value.reason


def health_mail(db, text: str, days_ago: float, sender: str = "seller-performance@amazon.de"):
    at = NOW - timedelta(days=days_ago)
    message = Message(subject="Account Health", sender_address=sender, text=text,
                      message_id=f"<health-{days_ago}@amazon.de>")
    verdict = Verdict("account_health", "high", 0.9, amazon=True, actions=[Action("digest")])
    return record(db, message, verdict, received_at=at, now=at)


def settings(tmp_path: Path, url: str) -> Settings:
    rules = tmp_path / "rules.yaml"
    rules.write_text("version: 1\n", encoding="utf-8")
    return Settings(imap=None, notify=NotifySettings(urls=(url,), timezone="Europe/London"),
                    state_dir=tmp_path, rules_path=rules)


def test_a_metric_crossing_its_target_or_worsening_fast_is_pushed(db, http, tmp_path):
    config = settings(tmp_path, "alert=" + http.url())

    def alerts() -> list[str]:
        # With no digest target the digests fall back to this one; only alerts count here.
        return [t for t in http.titles if "digest" not in t]

    health_mail(db, "Order Defect Rate: 0.3% (target: under 1%). Late Shipment Rate: 1%.", 30)
    health_mail(db, "Order Defect Rate: 0.4% (target: under 1%). Late Shipment Rate: 1.2%.", 20)
    notify.deliver_due(db, config, NOW - timedelta(days=20))
    assert alerts() == []  # within target and steady: nothing to push
    health_mail(db, "Order Defect Rate: 0.8% (target: under 1%). Late Shipment Rate: 1.1%.", 10)
    notify.deliver_due(db, config, NOW - timedelta(days=10))
    assert alerts() == ["Order defect rate worsened to 0.8%"]
    health_mail(db, "Order Defect Rate: 1.35% (target: under 1%). Late Shipment Rate: 1%.", 1)
    notify.deliver_due(db, config, NOW)
    assert alerts()[-1] == "Order defect rate 1.35%: past Amazon's target"
    assert "https://sellercentral.amazon.de/performance/dashboard" in "".join(http.messages)
    # Still above target a day later: no second alert for the same crossing.
    health_mail(db, "Order Defect Rate: 1.4% (target: under 1%).", 0)
    notify.deliver_due(db, config, NOW + timedelta(hours=1))
    assert len(alerts()) == 2


def test_metrics_are_kept_per_account_with_their_date(db):
    health_mail(db, "Account Health Rating: 250.", 5)
    health_mail(db, "Account Health Rating: 190.", 2)
    with db.transaction() as conn:
        conn.execute("UPDATE messages SET account = 'shop-eu' WHERE id = 1")
        conn.execute("UPDATE account_metrics SET account = 'shop-eu' WHERE message_row = 1")
    series = performance.history(db.conn, NOW)
    assert [(s.account, s.metric.key, [r.value for r in s.readings]) for s in series] == [
        ("default", "ahr", [190.0]),
        ("shop-eu", "ahr", [250.0]),
    ]
    assert all(s.show_account for s in series)
    assert series[0].latest.breaches() and not series[1].latest.breaches()
