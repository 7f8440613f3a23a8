"""Chat targets: Markdown in messages each service takes, never cut inside a link."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from receivers import record

from triage import chat, notify
from triage.document import split_body
from triage.message import Message
from triage.notifypolicy import NotifyPolicy
from triage.schedule import DigestSchedule
from triage.settings import NotifySettings, Settings
from triage.verdict import Verdict

NOW = datetime(2025, 11, 24, 8, 0, tzinfo=UTC)
TZ = notify.ZoneInfo("Europe/London")
LINK = re.compile(r"\[(?:\\.|[^\]\\])*\]\([^)\s]*\)")

URLS = {
    "discord": "discord://4174216298/JHMHI8qBe7bk2ZwO5U711o3dV_js",
    "telegram": "tgram://123456789:abcdefg_hijklmnop/-1001234567",
    "slack": "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ",
    "mail": "mailto://user:secret@example.com",
}


def target(kind: str) -> notify.Target:
    settings = Settings(imap=None, notify=NotifySettings(urls=(URLS[kind],)),
                        state_dir=Path("."), rules_path=Path("rules.yaml"))
    (found,) = notify.load_targets(settings)
    return found


@pytest.mark.parametrize(
    ("kind", "body_format", "max_chars"),
    [("discord", "markdown", 2000), ("telegram", "markdown", 4096), ("slack", "markdown", 3500),
     ("mail", "html", 32768)],
)
def test_each_service_gets_its_own_shape(kind, body_format, max_chars):
    found = target(kind)
    assert (found.body_format, found.max_chars) == (body_format, max_chars)


def busy_day(db) -> None:
    for n in range(80):
        order = f"028-{n:07d}-1234567"
        message = Message(
            subject=f"Inquiry from Amazon customer Buyer {n} about a question (Order: {order})",
            sender_address="buyer@marketplace.amazon.de",
            order_ids=(order,),
            links=(f"https://sellercentral.amazon.de/messaging/thread?id={n}&order={order}",),
            message_id=f"<q{n}@amazon.de>",
        )
        at = NOW - timedelta(minutes=5 * n + 5)
        record(db, message, Verdict("buyer_message", "high", 0.9, amazon=True), received_at=at,
               now=at)


@pytest.mark.parametrize(("kind", "limit", "most"), [("discord", 2000, 5), ("telegram", 3500, 4)])
def test_a_long_digest_is_split_then_summarised_never_inside_a_link(db, kind, limit, most):
    busy_day(db)
    chosen = target(kind)
    with db.transaction() as conn:
        assert notify.queue_digest(conn, DigestSchedule("daily"), None, NOW, TZ)
        notify.expand(conn, [chosen], NotifyPolicy(), NOW)
    parts = [row["body"] for row in notify.pending(db)]
    assert 1 < len(parts) <= most
    for part in parts:
        assert len(part) <= limit
        # Every link that starts in a part ends in it.
        assert part.count("](https://") == len(LINK.findall(part))
    full = db.conn.execute("SELECT body_markdown FROM notifications").fetchone()[0]
    if len(split_body(full, limit)) > most:
        assert "more entries" in parts[-1] and "triage digest --preview" in parts[-1]
    else:
        assert "".join(parts) == full
    titles = [row["title"] for row in notify.pending(db)]
    assert titles[0].endswith(f"(1/{len(parts)})")


@pytest.mark.parametrize(
    ("line", "limit"),
    [
        ("word " * 50 + "[Open in Seller Central](https://sellercentral.amazon.de/x?id=1) end", 80),
        ("[a b c](https://sellercentral.amazon.de/a) " * 10, 50),
        ("see https://sellercentral.amazon.de/very/long/path?with=query and more words " * 3, 70),
    ],
)
def test_a_long_line_is_cut_at_a_space_outside_links(line, limit):
    parts = split_body(line, limit)
    assert len(parts) > 1 and "".join(parts) == line
    assert all(len(p) <= limit for p in parts)
    for whole in [*LINK.findall(line), *re.findall(r"(?<!\()https://[^\s)]+", line)]:
        assert any(whole in part for part in parts), whole


def test_a_short_body_is_one_message():
    assert chat.parts("# Digest\n\nAll quiet.\n", 2000) == ["# Digest\n\nAll quiet.\n"]
