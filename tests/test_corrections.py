"""The seller's corrections: stored per account, followed by similar mail, never by phishing.

The pipeline tests use a fixed stand-in classifier, so they say what corrections do
whatever the trained model reads; the command line and the mailbox tests use the
real model and a real Dovecot.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import pytest
from test_daemon import settings_for

from triage import corrections, trainfolders
from triage.corrections import Correction, CorrectionError, Recall
from triage.daemon import Daemon, Timing
from triage.mailbox import Mailbox
from triage.message import Message, parse
from triage.model import Classifier
from triage.pipeline import Pipeline
from triage.rules import load_rules, parse_rules
from triage.settings import ImapSettings, default_model_dir
from triage.state import Database
from triage.sync import fingerprint

ROOT = Path(__file__).resolve().parent.parent
AUTH = ("mx.example.net; dkim=pass header.d=amazon.com; spf=pass smtp.mailfrom=amazon.com; "
        "dmarc=pass header.from=amazon.com")
NOW = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)

needs_model = pytest.mark.skipif(
    not (default_model_dir() / "triage-model.json").exists(), reason="no trained model"
)


def notice(sender: str, subject: str, body: str, auth: str | None = AUTH,
           message_id: str = "") -> bytes:
    msg = EmailMessage()
    if auth:
        msg["Authentication-Results"] = auth
    msg["From"] = sender
    msg["To"] = "seller@example.com"
    msg["Subject"] = subject
    if message_id:
        msg["Message-ID"] = message_id
    msg.set_content(body)
    return bytes(msg)


def delayed(amount: str, day: str, n: int = 1) -> bytes:
    return notice(
        '"Amazon Payments" <payments-messages@amazon.com>',
        f"Your funds transfer of {amount} has been delayed",
        f"Hello,\n\nThe transfer of {amount} to your bank account, planned for {day}, has "
        "been delayed while we review recent activity on your account. The funds stay in "
        "your seller account until the review ends; no action is needed from you unless "
        "we ask for documents.\n\nAmazon Payments\n",
        message_id=f"<delayed-{n}@amazon.com>",
    )


NEWSLETTER = notice(
    '"Amazon Seller News" <seller-news@amazon.co.uk>',
    "New this month: account health tools and a webinar on suspensions",
    "Hello,\n\nThis month we introduce new account health tools and invite you to a webinar "
    "on how suspensions are reviewed. Register on Seller Central.\n",
)


# -- the store -------------------------------------------------------------------------


def record(db: Database, raw: bytes, model: tuple[str, str], fixed: tuple[str, str],
           account: str = "shop") -> int:
    message = parse(raw)
    with db.transaction() as conn:
        return corrections.record(conn, account, fingerprint(message, raw), message, model,
                                  fixed, "cli", NOW)


def test_a_correction_survives_a_restart_and_can_be_undone(tmp_path: Path) -> None:
    db = Database(tmp_path / "triage.db")
    number = record(db, delayed("£812.40", "12 November"), ("payment", "low"), ("payment", "high"))
    db.close()
    db = Database(tmp_path / "triage.db")
    [kept] = corrections.listing(db, "shop")
    assert (kept.id, kept.type, kept.severity, kept.model_severity) == (number, "payment",
                                                                         "high", "low")
    assert kept.sender == "payments-messages@amazon.com"
    assert "has been delayed" in kept.subject and "review" in kept.body
    assert corrections.listing(db, "another-shop") == []
    corrections.undo(db, number, "shop")
    assert not Recall.load(db, "shop")
    assert corrections.listing(db, "shop")[0].undone


def test_correcting_the_same_mail_again_replaces_the_first(db: Database) -> None:
    raw = delayed("£812.40", "12 November")
    first = record(db, raw, ("payment", "low"), ("payment", "high"))
    assert record(db, raw, ("payment", "low"), ("payment", "high")) == first
    second = record(db, raw, ("payment", "low"), ("account_health", "high"))
    active = corrections.listing(db, "shop", active_only=True)
    assert [c.id for c in active] == [second] and second != first


@pytest.mark.parametrize(
    ("type_", "severity", "says"),
    [
        ("paymnet", "high", "unknown type 'paymnet'"),
        ("payment", "urgent", "unknown severity 'urgent'"),
        ("payment", "critical", "a payment is never critical (it can be: high, low)"),
    ],
)
def test_a_correction_outside_the_taxonomy_is_refused(type_: str, severity: str, says: str) -> None:
    with pytest.raises(CorrectionError, match=says.replace("(", r"\(").replace(")", r"\)")):
        corrections.validate(type_, severity)


# -- following a correction ------------------------------------------------------------


def stored(subject: str, body: str, *, sender: str = "seller-news@amazon.com",
           was: tuple[str, str] = ("claim", "critical"),
           now: tuple[str, str] = ("marketing", "low")) -> Correction:
    return Correction(1, "shop", "mid:x", sender, subject, body, *was, *now, NOW, "cli")


@pytest.mark.parametrize(
    ("score", "same_sender", "said", "was", "now", "follows"),
    [
        (0.9, False, ("payment", "low"), ("payment", "low"), ("payment", "high"), True),
        (0.6, False, ("payment", "low"), ("payment", "low"), ("payment", "high"), False),
        (0.6, True, ("payment", "low"), ("payment", "low"), ("payment", "high"), True),
        # news: a sender's mail the model misread as it misread the one the seller called
        # marketing
        (0.1, True, ("payment", "low"), ("payment", "low"), ("marketing", "low"), True),
        (0.1, False, ("payment", "low"), ("payment", "low"), ("marketing", "low"), False),
        # ... not the same sender's mail the model read otherwise (no-reply@amazon also
        # sends orders)
        (0.1, True, ("return", "normal"), ("payment", "low"), ("marketing", "low"), False),
        # ... but no order to ship today is taken for news unless the seller said so of one
        (0.1, True, ("order", "high"), ("payment", "low"), ("marketing", "low"), False),
        (0.1, True, ("order", "high"), ("order", "high"), ("marketing", "low"), True),
        # a critical is lowered only by a correction that lowered a critical
        (0.95, True, ("policy", "critical"), ("policy", "high"), ("policy", "normal"), False),
        (0.95, True, ("policy", "critical"), ("policy", "critical"), ("policy", "high"), True),
        # ... and only for the same template: the sender's reinstatement, lowered from
        # critical, does not lower its next deactivation
        (0.6, True, ("account_health", "critical"), ("account_health", "critical"),
         ("account_health", "normal"), False),
        (0.1, True, ("claim", "critical"), ("payment", "low"), ("marketing", "low"), False),
    ],
)
def test_which_mail_follows_a_correction(
    score: float, same_sender: bool, said: tuple[str, str], was: tuple[str, str],
    now: tuple[str, str], follows: bool,
) -> None:
    correction = stored("s", "b", was=was, now=now)
    assert corrections.follows(correction, score, same_sender, said) is follows


@pytest.mark.parametrize(
    ("score", "said", "no_worse", "follows"),
    [
        # the sender's kind of mail, misread exactly as the corrected one, telling of
        # nothing worse: its critical is lowered too
        (0.6, ("account_health", "critical"), True, True),
        # ... not when it names a bad outcome the corrected one did not
        (0.6, ("account_health", "critical"), False, False),
        # ... nor when the model misread it otherwise
        (0.6, ("policy", "critical"), True, False),
        # ... nor when it is less alike than the sender's kind of mail
        (0.45, ("account_health", "critical"), True, False),
    ],
)
def test_a_critical_is_lowered_for_the_senders_kind_of_mail_only_when_nothing_is_worse(
    score: float, said: tuple[str, str], no_worse: bool, follows: bool,
) -> None:
    correction = stored("s", "b", was=("account_health", "critical"),
                        now=("account_health", "normal"))
    assert corrections.follows(correction, score, True, said, lambda: no_worse) is follows
    assert corrections.follows(correction, score, False, said, lambda: no_worse) is False


def test_no_worse_reads_what_happened() -> None:
    reinstated = corrections.outcomes("Your selling privileges have been reinstated", "")
    suspended = corrections.outcomes("We have suspended your selling privileges", "")
    nothing = corrections.outcomes("Your selling privileges", "")
    assert corrections.no_worse(lambda: reinstated, reinstated)
    assert not corrections.no_worse(lambda: suspended, reinstated)
    # good news lowered the corrected mail: a mail without it is not lowered by it
    assert not corrections.no_worse(lambda: nothing, reinstated)
    assert corrections.no_worse(lambda: nothing, suspended)


PERFORMANCE = '"Seller Performance" <seller-performance@amazon.com>'


def test_a_reinstatement_lowers_the_next_one_but_not_a_deactivation(db: Database) -> None:
    recall = recall_of(db, notice(
        PERFORMANCE, "Your selling privileges have been reinstated",
        "Hello,\n\nThank you for your plan of action. We have reinstated your selling "
        "privileges on Amazon.com and your listings will be active again within 24 hours."
        "\n\nSeller Performance\n"), ("account_health", "critical"), ("account_health", "normal"))
    reinstated = parse(notice(
        PERFORMANCE, "Your selling privileges on Amazon.co.uk are reinstated",
        "Hello,\n\nWe reviewed your appeal and reinstated your account. Your listings will be "
        "active again within 24 hours.\n\nSeller Performance\n"))
    deactivated = parse(notice(
        PERFORMANCE, "Your selling privileges on Amazon.co.uk are removed",
        "Hello,\n\nWe have suspended your selling privileges on Amazon.com and your listings "
        "will not be active. Send a plan of action within 17 days.\n\nSeller Performance\n"))
    pipe = Pipeline(Fixed("account_health", "critical"), parse_rules(DEFAULTS, "rules.yaml"))
    lowered, kept = pipe.decide([reinstated, deactivated], corrections=recall)
    assert (lowered.type, lowered.severity) == ("account_health", "normal")
    assert lowered.decided_by.startswith("correction:")
    assert (kept.severity, kept.decided_by) == ("critical", "model")


def test_one_amazon_sender_across_marketplaces() -> None:
    assert corrections.sender_key("Seller-News@amazon.co.uk") == "seller-news@amazon"
    assert corrections.sender_key("seller-news@amazon.com") == "seller-news@amazon"
    lookalike = "news@amazon.co.uk.example.net"
    assert corrections.sender_key(lookalike) == lookalike


DEFAULTS = """
version: 1
defaults:
  alert: [critical, high]
  digest: [normal, low]
rules: []
"""


@dataclass(frozen=True)
class Said:
    type: str
    severity: str
    confidence: float = 0.9


class Fixed:
    """A classifier that reads every mail the same way."""

    def __init__(self, type_: str, severity: str) -> None:
        self.said = Said(type_, severity)

    def predict(self, messages: Sequence[Message], /) -> list[Said]:
        return [self.said for _ in messages]


def recall_of(db: Database, raw: bytes, model: tuple[str, str], fixed: tuple[str, str]) -> Recall:
    record(db, raw, model, fixed)
    return Recall.load(db, "shop")


def test_similar_mail_follows_at_once_and_says_why(db: Database) -> None:
    recall = recall_of(db, delayed("£812.40", "12 November", 1), ("payment", "low"),
                       ("payment", "high"))
    pipe = Pipeline(Fixed("payment", "low"), parse_rules(DEFAULTS, "rules.yaml"))
    later, unrelated = parse(delayed("€1.204,90", "3 December", 2)), parse(NEWSLETTER)
    followed, other = pipe.decide([later, unrelated], corrections=recall)
    assert (followed.type, followed.severity) == ("payment", "high")
    assert followed.decided_by.startswith("correction:")
    assert any(r.startswith("corrected by you on 2026-11-20: similar to 'Your funds transfer")
               for r in followed.reasons)
    assert [a.kind for a in followed.actions] == ["alert"]  # how to notify follows too
    assert (other.type, other.severity, other.decided_by) == ("payment", "low", "model")
    assert [a.kind for a in other.actions] == ["digest"]
    assert pipe.decide([later])[0].severity == "low"  # without the corrections: the model


def test_suspected_phishing_never_follows_a_correction(db: Database) -> None:
    recall = recall_of(db, delayed("£812.40", "12 November"), ("payment", "low"),
                       ("payment", "high"))
    lookalike = notice('"Amazon Payments" <payments-messages@amazon.com>',
                       "Your funds transfer of £99.00 has been delayed",
                       parse(delayed("£99.00", "1 December")).text,
                       auth="mx.example.net; dkim=fail; spf=fail; dmarc=fail "
                            "header.from=amazon.com")
    pipe = Pipeline(Fixed("payment", "low"), rescue_folder="INBOX")
    [verdict] = pipe.decide([parse(lookalike)], folder="Junk", role="junk", corrections=recall)
    assert verdict.suspicious
    assert (verdict.type, verdict.severity, verdict.decided_by) == ("payment", "low", "model")
    assert not any(a.kind in ("rescue", "move") for a in verdict.actions)


RULES = """
version: 1
rules:
  - name: news-about-suspensions-is-critical
    match: {subject: "/suspension/"}
    type: account_health
    severity: critical
"""


def test_a_rules_critical_stands_unless_the_seller_lowered_a_critical(db: Database) -> None:
    rules = parse_rules(RULES, "rules.yaml")
    pipe = Pipeline(Fixed("marketing", "low"), rules)
    mail = parse(notice('"Amazon Seller News" <seller-news@amazon.com>',
                        "A webinar on suspension reviews", "Join our webinar next week."))
    # Corrected from what the model said alone (marketing/low): not a critical lowered.
    low = recall_of(db, NEWSLETTER, ("marketing", "low"), ("marketing", "low"))
    assert pipe.decide([mail], corrections=low)[0].severity == "critical"
    # The seller saw a critical from this sender and said it was news.
    lowered = recall_of(db, NEWSLETTER, ("account_health", "critical"), ("marketing", "low"))
    verdict = pipe.decide([mail], corrections=lowered)[0]
    assert (verdict.type, verdict.severity) == ("marketing", "low")
    assert any("your correction stands over rule:news-about" in r for r in verdict.reasons)
    assert any(r.startswith("corrected by you on 2026-11-20: seller-news@amazon.co.uk sends "
                            "marketing, like 'New this month") for r in verdict.reasons)
    assert [a.kind for a in verdict.actions] == ["digest"]


# -- the command line ----------------------------------------------------------------------


def triage(*args: str, state: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIAGE_")}
    env["TRIAGE_STATE_DIR"] = str(state)
    return subprocess.run([sys.executable, "-m", "triage.cli", *args], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=120, check=False)


@needs_model
def test_correct_then_classify_then_undo(tmp_path: Path) -> None:
    state = tmp_path / "state"
    (tmp_path / "news.eml").write_bytes(NEWSLETTER)
    (tmp_path / "next.eml").write_bytes(notice(
        '"Amazon Seller News" <seller-news@amazon.com>',
        "New this month: shipping settings and a webinar on account health",
        "Hello,\n\nThis month we introduce new shipping settings and invite you to a webinar "
        "on account health. Register on Seller Central.\n"))
    refused = triage("correct", str(tmp_path / "news.eml"), "--type", "newsletter", state=state)
    assert refused.returncode == 2
    assert "unknown type 'newsletter' (expected one of: buyer_message" in refused.stderr
    done = triage("correct", str(tmp_path / "news.eml"), "--type", "marketing", state=state)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("correction 1 for local: ")
    assert done.stdout.split(": ")[1].endswith("-> marketing/low")

    classified = triage("classify", "--json", str(tmp_path / "next.eml"), state=state)
    verdict = json.loads(classified.stdout)
    assert (verdict["type"], verdict["severity"], verdict["decided_by"]) == (
        "marketing", "low", "correction:1")

    listed = triage("corrections", "--json", state=state)
    [row] = [json.loads(line) for line in listed.stdout.splitlines()]
    assert (row["id"], row["how"], row["corrected"], row["undone"]) == (
        1, "cli", {"type": "marketing", "severity": "low"}, False)
    assert triage("corrections", "--undo", "1", state=state).returncode == 0
    again = json.loads(triage("classify", "--json", str(tmp_path / "next.eml"),
                              state=state).stdout)
    assert again["decided_by"] != "correction:1"
    assert "(undone)" in triage("corrections", state=state).stdout


# -- the mailbox ---------------------------------------------------------------------------


def shipped_daemon(imap: ImapSettings, db: Database) -> Daemon:
    """A daemon with the shipped model and rules on the test mailbox, sending nothing."""
    pipe = Pipeline(Classifier.load(), load_rules(ROOT / "rules.yaml"), rescue_folder="INBOX")
    return Daemon(settings_for(imap, Path(db.path).parent), db, pipe, lambda: Mailbox(imap),
                  deliver=None, timing=Timing(poll_seconds=0.5))


@needs_model
def test_moving_a_message_to_a_training_folder_changes_the_next_similar_verdict(  # type: ignore[no-untyped-def]
    dovecot, db: Database
) -> None:
    imap = dovecot.imap_settings()
    daemon = shipped_daemon(imap, db)
    dovecot.append("INBOX", delayed("£812.40", "12 November", 1))
    daemon.run_once()
    with Mailbox(imap) as box:
        delimiter = box.delimiter()
        names = {f.name for f in box.folders()}
    assert {f"Triage{delimiter}Critical", f"Triage{delimiter}Not important",
            f"Triage{delimiter}Type{delimiter}claim"} <= names
    first = db.conn.execute("SELECT type, severity FROM messages").fetchone()
    wanted = "account_health" if first["type"] != "account_health" else "payment"
    training = f"Triage{delimiter}Type{delimiter}{wanted}"

    with dovecot.client() as client:  # the seller's mail client
        client.select_folder("INBOX")
        client.move(client.search(["ALL"]), training)
    daemon.run_once()
    assert dovecot.uids(training) == []
    assert len(dovecot.uids("INBOX")) == 1  # back where the seller keeps it
    [correction] = corrections.listing(db, imap.account)
    assert (correction.type, correction.source) == (wanted, f"folder:{training}")
    assert (correction.model_type, correction.model_severity) == (first["type"],
                                                                  first["severity"])
    row = db.conn.execute("SELECT type, decided_by FROM messages").fetchone()
    assert (row["type"], row["decided_by"]) == (wanted, f"correction:{correction.id}")

    similar = delayed("€1.204,90", "3 December", 2)
    assert daemon.pipeline.decide([parse(similar)])[0].type != wanted  # what it would have been
    dovecot.append("INBOX", similar)
    daemon.run_once()
    rows = db.conn.execute("SELECT type, decided_by FROM messages ORDER BY id").fetchall()
    assert len(rows) == 2
    assert (rows[1]["type"], rows[1]["decided_by"]) == (wanted, f"correction:{correction.id}")


@needs_model
def test_phishing_moved_to_a_training_folder_goes_back_to_junk_uncorrected(  # type: ignore[no-untyped-def]
    dovecot, db: Database
) -> None:
    imap = dovecot.imap_settings()
    daemon = shipped_daemon(imap, db)
    dovecot.append("Junk", notice(
        '"Amazon Payments" <payments-messages@amazon-payouts-review.com>',
        "Your funds transfer has been delayed: verify your bank account",
        "Your transfer is on hold. Verify your bank account within 24 hours: "
        "http://amazon-payouts-review.com/verify", auth=None))
    daemon.run_once()
    assert db.conn.execute("SELECT suspicious FROM messages").fetchone()[0] == 1
    with Mailbox(imap) as box:
        delimiter = box.delimiter()
    training = f"Triage{delimiter}Critical"
    with dovecot.client() as client:
        client.select_folder("Junk")
        client.move(client.search(["ALL"]), training)
    daemon.run_once()
    assert dovecot.uids(training) == [] and dovecot.uids("INBOX") == []
    assert len(dovecot.uids("Junk")) == 1
    assert corrections.listing(db, imap.account) == []


def test_a_training_folder_names_what_the_mail_is() -> None:
    by_name = {t.folder: t for t in trainfolders.targets(".")}
    assert by_name["Triage.Critical"].corrected("policy", "high") == ("policy", "critical")
    assert by_name["Triage.Not important"].corrected("order", "high") == ("order", "low")
    # The taxonomy still holds: a payment is never critical.
    assert by_name["Triage.Critical"].corrected("payment", "low") == ("payment", "high")
    assert by_name["Triage.Type.claim"].corrected("other", "low") == ("claim", "normal")


# -- retraining ------------------------------------------------------------------------------


def test_train_folds_an_accounts_corrections_into_the_model(tmp_path: Path) -> None:
    from test_model import write_tiny_corpus

    from triage import cli

    quiz = notice("<quiz@example.org>", "Weekly trivia quiz: zorblax edition",
                  "Answer the zorblax trivia quiz and win a zorblax mug.", auth=None)
    db = Database(tmp_path / "state" / "triage.db")
    record(db, quiz, ("other", "low"), ("marketing", "low"), account="shop")
    db.close()
    root = write_tiny_corpus(tmp_path / "corpus")
    out = tmp_path / "model"
    argv = ["train", "--corpus", str(root), "--out", str(out), "--folds", "2", "--render",
            "--corrections", str(tmp_path / "state" / "triage.db")]
    assert cli.main([*argv, "--account", "another-shop"]) == 2  # it has none
    assert cli.main([*argv, "--account", "shop", "--correction-weight", "0"]) == 2
    assert cli.main([*argv[:-2], "--correction-weight", "3"]) == 2  # weighs nothing
    assert cli.main([*argv, "--account", "shop"]) == 0
    [said] = Classifier.load(out).predict([parse(quiz)])
    assert said.type == "marketing"
