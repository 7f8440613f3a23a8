"""An unsure critical verdict reaches the seller as "possibly critical"."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from receivers import record

from triage import digest, notify
from triage.document import render
from triage.message import Message
from triage.model import Prediction
from triage.pipeline import Pipeline
from triage.rules import load_rules
from triage.settings import NotifySettings, Settings
from triage.verdict import POSSIBLY_CRITICAL, Action, Verdict

NOW = datetime(2025, 11, 24, 8, 0, tzinfo=UTC)
ROOT = Path(__file__).parent.parent


class Unsure:
    """A classifier that says high, but not sure it is not critical."""

    def predict(self, messages):
        return [Prediction("account_health", "high", 0.7, possibly_critical=True) for _ in messages]


def notice(subject: str) -> Message:
    return Message(subject=subject, sender_address="seller-performance@amazon.com",
                   sender_domain="amazon.com", message_id=f"<{subject}@amazon.com>")


def unsure_verdict() -> Verdict:
    return Verdict("account_health", "high", 0.7, amazon=True, actions=[Action("alert")],
                   possibly_critical=True, tags=[POSSIBLY_CRITICAL])


def record_unsure(db, subject: str) -> None:
    row = record(db, notice(subject), unsure_verdict(), received_at=NOW, now=NOW)
    # The sync stores the verdict's tags with the mail; the test helper leaves them out.
    with db.transaction() as conn:
        conn.execute("UPDATE messages SET tags = ? WHERE id = ?", (f'["{POSSIBLY_CRITICAL}"]', row))


def test_the_pipeline_keeps_the_models_doubt() -> None:
    pipeline = Pipeline(Unsure(), load_rules(ROOT / "rules.yaml"), rescue_folder="INBOX")
    [verdict] = pipeline.decide([notice("Update on your reinstatement request")])
    assert verdict.possibly_critical
    assert POSSIBLY_CRITICAL in verdict.tags
    assert verdict.to_json()["possibly_critical"] is True


def test_the_alert_says_possibly_critical(tmp_path, db, http) -> None:
    record_unsure(db, "Update on your appeal")
    rules = tmp_path / "rules.yaml"
    rules.write_text("version: 1\n", encoding="utf-8")
    settings = Settings(imap=None, state_dir=tmp_path, rules_path=rules,
                        notify=NotifySettings(urls=(http.url(),), timezone="UTC"))
    notify.deliver_due(db, settings, NOW)
    assert len(http.messages) == 1
    assert "possibly critical" in http.messages[0]


def test_the_digest_says_possibly_critical(db) -> None:
    record_unsure(db, "Update on your appeal")
    sure = Verdict("account_health", "high", 0.9, amazon=True)
    record(db, notice("Your rating improved"), sure, received_at=NOW, now=NOW)
    built = digest.build_digest(db.conn, title="Digest", since=None, until=NOW)
    text = render(digest.to_document(built, digest.ZoneInfo("UTC")), "text")
    lines = [line for line in text.splitlines() if "Update on your appeal" in line]
    assert lines and all("possibly critical" in line for line in lines)
    assert "possibly critical" not in "".join(
        line for line in text.splitlines() if "Your rating improved" in line
    )
