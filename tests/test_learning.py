"""The account's learned model: refitted with the seller's corrections, used while current.

Most tests refit on a tiny corpus (seconds); one runs the command line end to end on the
shipped corpus, as a seller would (about a minute).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from receivers import HttpReceiver
from test_corrections import NEWSLETTER, ROOT, delayed, needs_model, notice, record
from test_daemon import settings_for
from test_model import write_tiny_corpus

from triage import corrections, health, learning
from triage.daemon import Daemon, Timing, account_pipeline, operator_note
from triage.decoder import Decoder
from triage.errors import ConfigError
from triage.learning import AccountDecoder, AccountModel, Learner, Where
from triage.mailbox import Mailbox
from triage.message import parse
from triage.model import Classifier
from triage.pipeline import Pipeline
from triage.rules import load_rules
from triage.settings import NotifySettings, Settings, default_model_dir, from_env
from triage.state import Database

QUIZ = notice("<quiz@example.org>", "Weekly trivia quiz: zorblax edition",
              "Answer the zorblax trivia quiz and win a zorblax mug.", auth=None)
LISTING = notice('"Amazon Seller Central" <seller-notification@amazon.com>',
                 "Your listing for the garden hose has been updated",
                 "Hello,\n\nThe changes you made to your listing are now live on the product "
                 "page. No action is needed.\n")
LUNCH = notice("<friend@example.org>", "Lunch on Friday?", "Fancy lunch with me on Friday?",
               auth=None)


def where(tmp_path: Path, corpus: Path | None = None, shipped: Path | None = None) -> Where:
    return Where(tmp_path / "triage.db", tmp_path, shipped or default_model_dir(),
                 corpus or write_tiny_corpus(tmp_path / "corpus"))


def models_in(state: Path) -> list[str]:
    """What the state folder holds of learned models (whole or half-written), locks aside."""
    models = state / "models"
    if not models.exists():
        return []
    return sorted(p.name for p in models.iterdir() if p.suffix != ".lock")


def decided_by(classifier: Classifier, raw: bytes) -> tuple[str, str]:
    verdict = Pipeline(classifier).decide([parse(raw)], folder="", role="file")[0]
    return verdict.type, verdict.decided_by


def wait_for(done: object, learner: Learner, seconds: float = 90.0) -> None:
    """Poll as the daemon's supervisor does until ``done()`` or the time is up."""
    deadline = time.monotonic() + seconds
    while not done() and time.monotonic() < deadline:  # type: ignore[operator]
        learner.poll()
        time.sleep(0.1)


@needs_model
def test_a_learned_model_decides_while_current_and_never_once_stale(tmp_path: Path) -> None:
    place = where(tmp_path)
    db = Database(place.database_path)
    first = record(db, QUIZ, ("other", "low"), ("marketing", "low"), account="shop")
    done = learning.learn(place.database_path, tmp_path, "shop", place.shipped_dir,
                          place.corpus_dir)
    assert (done.corrections, done.path) == (1, learning.model_dir(tmp_path, "shop"))
    assert learning.status(db, tmp_path, "shop", place.shipped_dir).current
    learned = learning.classifier_for(place, "shop")
    # The refit learned the corrected mail; the verdict names the learned model.
    assert decided_by(learned, QUIZ) == ("marketing", "learned model")
    other = learning.classifier_for(place, "another-shop")
    assert decided_by(other, QUIZ)[1] == "model"

    corrections.undo(db, first)
    stale = learning.status(db, tmp_path, "shop", place.shipped_dir)
    assert (stale.state, stale.why) == ("stale", "your corrections changed since")
    shipped = learning.classifier_for(place, "shop")
    assert decided_by(shipped, QUIZ)[1] == "model"

    record(db, QUIZ, ("other", "low"), ("marketing", "low"), account="shop")
    (tmp_path / "models" / f".{done.path.name}.half").mkdir()  # a refit stopped half way
    again = learning.learn(place.database_path, tmp_path, "shop", place.shipped_dir,
                           place.corpus_dir)
    assert again.path is not None and again.path.is_symlink()
    assert models_in(tmp_path) == sorted(
        [again.path.name, again.path.resolve().name])  # the old model and leftovers gone
    assert decided_by(learning.classifier_for(place, "shop"), QUIZ)[1] == "learned model"
    # Another shipped model (an upgrade of triage): the learned one is stale.
    upgraded = tmp_path / "upgraded"
    shutil.copytree(place.shipped_dir, upgraded)
    spec = json.loads((upgraded / "triage-model.json").read_text())
    spec["trained_at"] = "2027-01-01T00:00:00+00:00"
    (upgraded / "triage-model.json").write_text(json.dumps(spec))
    moved = learning.status(db, tmp_path, "shop", upgraded)
    assert (moved.state, moved.why) == ("stale", "the shipped model changed since")
    assert decided_by(learning.classifier_for(replace(place, shipped_dir=upgraded), "shop"),
                      QUIZ)[1] == "model"
    db.close()


@needs_model
def test_the_daemon_refits_after_a_folder_move_and_the_next_mail_is_decided_by_it(  # type: ignore[no-untyped-def]
    dovecot, tmp_path: Path
) -> None:
    imap = dovecot.imap_settings()
    place = where(tmp_path)
    db = Database(place.database_path)
    shipped = Classifier.load()
    own = AccountModel(shipped)
    pipe = account_pipeline(Pipeline(shipped, load_rules(ROOT / "rules.yaml"),
                                     rescue_folder="INBOX"), own)
    daemon = Daemon(settings_for(imap, tmp_path), db, pipe, lambda: Mailbox(imap), deliver=None,
                    timing=Timing(poll_seconds=0.5), decoder=AccountDecoder(Decoder(shipped), own))
    learner = Learner(imap.account, own, place, after_seconds=0.5)
    learner.start()
    dovecot.append("INBOX", delayed("£812.40", "12 November", 1))
    dovecot.append("INBOX", LISTING)
    daemon.run_once()
    assert {r[0] for r in db.conn.execute("SELECT decided_by FROM messages")} == {"model"}
    said = db.conn.execute("SELECT type FROM messages WHERE subject LIKE '%delayed%'").fetchone()
    assert said["type"] != "account_health"  # what the shipped model makes of it
    learner.poll()
    assert not learner.busy  # nothing to learn yet

    with Mailbox(imap) as box:
        training = f"Triage{box.delimiter()}Type{box.delimiter()}account_health"
    with dovecot.client() as client:  # the seller moves the payment notice
        client.select_folder("INBOX")
        client.move(client.search(["SUBJECT", "delayed"]), training)
    daemon.run_once()
    [correction] = corrections.listing(db, imap.account)
    started = time.monotonic()
    wait_for(lambda: own.learned is not None, learner)
    assert own.learned is not None, "the refit did not finish"
    refit_seconds = time.monotonic() - started
    assert refit_seconds >= 0.5  # not before the wait after the last correction
    assert learner.last is not None and learner.last["corrections"] == 1
    assert learner.last["peak_rss_mb"] > 0 and learner.last["cpu_seconds"] > 0

    dovecot.append("INBOX", delayed("€1.204,90", "3 December", 2))
    dovecot.append("INBOX", LISTING.replace(b"garden hose", b"kettle"))
    daemon.run_once()
    rows = db.conn.execute("SELECT subject, type, decided_by FROM messages ORDER BY id"
                           ).fetchall()
    similar, listing = rows[-2], rows[-1]
    # The learned model reads the next similar mail as the seller corrected it, and says so.
    assert (similar["type"], similar["decided_by"]) == ("account_health", "learned model")
    assert "kettle" in listing["subject"] and listing["decided_by"] == "learned model"

    corrections.undo(db, correction.id)  # an undo: the stale model stops deciding at once
    learner.poll()
    assert own.learned is None
    learner.stop()
    db.close()


@needs_model
def test_twenty_corrections_in_a_row_make_one_refit(tmp_path: Path) -> None:
    place = where(tmp_path)
    db = Database(place.database_path)
    now = [1000.0]
    own = AccountModel(Classifier.load())
    learner = Learner("shop", own, place, after_seconds=60, clock=lambda: now[0])
    learner.start()
    for n in range(20):  # one every 10 s, as a seller going through the inbox
        raw = notice("<quiz@example.org>", f"Weekly trivia quiz {n}: zorblax edition",
                     f"Answer the zorblax trivia quiz number {n} and win a mug.", auth=None)
        record(db, raw, ("other", "low"), ("marketing", "low"), account="shop")
        learner.poll()
        now[0] += 10
    assert learner.refits == 0
    now[0] += 60
    learner.poll()
    assert learner.refits == 1
    wait_for(lambda: own.learned is not None, learner, 60)
    assert learner.refits == 1 and learner.last is not None
    assert learner.last["corrections"] == 20
    learner.stop()
    db.close()


@needs_model
def test_two_accounts_refit_one_after_the_other_not_at_once(tmp_path: Path) -> None:
    place = where(tmp_path)
    db = Database(place.database_path)
    learners = {name: Learner(name, AccountModel(Classifier.load()), place, after_seconds=0.1)
                for name in ("shop", "outlet")}
    try:
        for name, learner in learners.items():
            record(db, QUIZ, ("other", "low"), ("marketing", "low"), account=name)
            learner.start()  # corrections and no learned model: due at once
        time.sleep(0.2)
        first, second = learners["shop"], learners["outlet"]
        first.poll()
        second.poll()
        assert first.busy and not second.busy and second.refits == 0  # one child, ~300 MB
        wait_for(lambda: first.model.learned is not None, first, 60)
        wait_for(lambda: second.model.learned is not None, second, 60)
        assert first.refits == 1 and second.refits == 1
        assert decided_by(second.model, QUIZ)[1] == learning.LEARNED_BY  # type: ignore[arg-type]
    finally:
        for learner in learners.values():
            learner.stop()
        db.close()


@needs_model
def test_a_failing_refit_keeps_the_model_deciding_and_is_told_once(
    tmp_path: Path, http: HttpReceiver
) -> None:
    empty = tmp_path / "no-corpus"
    (empty / "families").mkdir(parents=True)
    place = where(tmp_path, corpus=empty)
    settings = Settings(None, NotifySettings(urls=(http.url("phone"),)), tmp_path,
                        tmp_path / "rules.yaml")
    heartbeat = health.configure(tmp_path, max_age=60)
    heartbeat.beat("shop")
    db = Database(place.database_path)
    shipped = Classifier.load()
    own = AccountModel(shipped)
    learner = Learner("shop", own, place, after_seconds=0.2, tell=operator_note(settings),
                      problem=lambda reason: health.set_problem("learning shop", reason))
    try:
        learner.start()
        record(db, NEWSLETTER, ("account_health", "high"), ("marketing", "low"), account="shop")
        wait_for(lambda: bool(http.posts), learner, 60)
        assert len(http.posts) == 1
        assert "could not learn from your corrections for shop" in http.messages[0]
        assert "holds no family to train on" in http.messages[0]
        assert not heartbeat.check().ok
        # A second correction, a second failure: logged, not told again.
        record(db, QUIZ, ("other", "low"), ("marketing", "low"), account="shop")
        wait_for(lambda: learner.refits == 2 and not learner.busy, learner, 60)
        learner.poll()
        assert learner.refits == 2
        time.sleep(0.5)
        assert len(http.posts) == 1
        # The model that decided keeps deciding, the corrections on top of it.
        assert own.learned is None
        verdict = Pipeline(own).decide([parse(QUIZ)], folder="", role="file",
                                       corrections=corrections.Recall.load(db, "shop"))[0]
        assert verdict.decided_by.startswith("correction:")
        assert models_in(tmp_path) == []
    finally:
        learner.stop()
        db.close()
        health.configure(None, max_age=60)


@needs_model
def test_stopping_the_daemon_stops_a_refit_and_leaves_no_half_model(tmp_path: Path) -> None:
    place = where(tmp_path, corpus=ROOT / "models" / "corpus")  # the shipped: long enough
    db = Database(place.database_path)
    record(db, QUIZ, ("other", "low"), ("marketing", "low"), account="shop")
    learner = Learner("shop", AccountModel(Classifier.load()), place, after_seconds=0.1)
    learner.start()  # corrections and no learned model: refitted at once
    learner.poll()
    assert learner.busy
    child = learner._child
    time.sleep(2)
    learner.stop()
    assert not child.is_alive()
    assert models_in(tmp_path) == []
    db.close()


def test_the_wait_before_a_refit_is_a_setting(tmp_path: Path) -> None:
    env = {"TRIAGE_STATE_DIR": str(tmp_path)}
    assert from_env(env).learn_after_seconds == 120
    assert from_env({**env, "TRIAGE_LEARN_AFTER_SECONDS": "0"}).learn_after_seconds == 0
    with pytest.raises(ConfigError, match="TRIAGE_LEARN_AFTER_SECONDS must be 0 or more"):
        from_env({**env, "TRIAGE_LEARN_AFTER_SECONDS": "-5"})


def run_triage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "triage.cli", *args], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=180, check=False)


def wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.1)
    return condition()


@needs_model
def test_learn_classify_run_and_undo_on_the_shipped_corpus(  # type: ignore[no-untyped-def]
    dovecot, tmp_path: Path
) -> None:
    """As a seller would: correct, learn, classify, run the daemon, undo while it runs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIAGE_")}
    env.update(dovecot.env())
    env.update({"TRIAGE_STATE_DIR": str(tmp_path), "TRIAGE_LEARN_AFTER_SECONDS": "1"})
    account = dovecot.imap_settings().account
    (tmp_path / "news.eml").write_bytes(NEWSLETTER)
    (tmp_path / "lunch.eml").write_bytes(LUNCH)
    assert run_triage("correct", str(tmp_path / "news.eml"), "--type", "marketing",
                      env=env).returncode == 0
    assert "learned model: none (none made yet)" in run_triage("corrections", env=env).stdout
    done = run_triage("learn", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"learned from 1 corrections of {account} and ")
    assert str(tmp_path / "models") in done.stdout
    print(done.stdout)  # the refit's seconds, CPU and peak memory, for the record
    assert "learned model: current (1 corrections" in run_triage("corrections", env=env).stdout
    verdict = json.loads(run_triage("classify", "--json", str(tmp_path / "lunch.eml"),
                                    env=env).stdout)
    assert verdict["decided_by"] == "learned model"
    assert verdict["reasons"][0].startswith("learned model: ")

    def decided(subject: str) -> str | None:
        conn = sqlite3.connect(tmp_path / "triage.db")
        try:
            row = conn.execute("SELECT decided_by FROM messages WHERE subject LIKE ?",
                               (f"%{subject}%",)).fetchone()
        finally:
            conn.close()
        return None if row is None else str(row[0])

    with (tmp_path / "daemon.log").open("wb") as log:
        daemon = subprocess.Popen([sys.executable, "-m", "triage.cli", "run"], env=env,
                                  stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        time.sleep(1.0)
        dovecot.append("INBOX", LISTING)
        assert wait_until(lambda: decided("garden hose") is not None), (
            (tmp_path / "daemon.log").read_text())
        assert decided("garden hose") == "learned model"
        # An undo while it runs: the learned model stops deciding at once.
        assert run_triage("corrections", "--undo", "1", env=env).returncode == 0
        assert wait_until(lambda: "is stale" in (tmp_path / "daemon.log").read_text())
        dovecot.append("INBOX", LISTING.replace(b"garden hose", b"kettle"))
        assert wait_until(lambda: decided("kettle") is not None)
        assert decided("kettle") == "model"
        # With no correction left, the refit removes the learned model.
        assert wait_until(lambda: models_in(tmp_path) == [])
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=15)
    assert daemon.returncode == 0, (tmp_path / "daemon.log").read_text()
    listed = run_triage("corrections", env=env).stdout
    assert "learned model: none (no corrections to learn from)" in listed


def test_the_daemon_watches_before_any_model_is_imported() -> None:
    # scikit-learn only refits; numpy, scipy and the model are loaded beside the watchers.
    code = ("import sys, triage.daemon, triage.learning; "
            "print(sorted(m for m in ('sklearn', 'numpy', 'scipy', 'triage.model') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


@needs_model
def test_sigterm_during_a_refit_stops_it_and_leaves_no_half_model(  # type: ignore[no-untyped-def]
    dovecot, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIAGE_")}
    env.update(dovecot.env())
    env["TRIAGE_STATE_DIR"] = str(tmp_path)
    db = Database(tmp_path / "triage.db")
    record(db, NEWSLETTER, ("account_health", "high"), ("marketing", "low"),
           account=dovecot.imap_settings().account)
    db.close()
    log_path = tmp_path / "daemon.log"
    with log_path.open("wb") as log:
        daemon = subprocess.Popen([sys.executable, "-m", "triage.cli", "run"], env=env,
                                  stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        # A correction and no learned model: the refit starts with the daemon.
        assert wait_until(lambda: "refitting the learned model" in log_path.read_text()), (
            log_path.read_text())
        child = int(log_path.read_text().split("(pid ")[1].split(")")[0])
        time.sleep(1.0)  # well into reading the corpus
        assert Path(f"/proc/{child}").exists()
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=10)
    assert daemon.returncode == 0, log_path.read_text()
    assert wait_until(lambda: not Path(f"/proc/{child}").exists(), 2)
    assert models_in(tmp_path) == []
    assert "refit stopped" in log_path.read_text()
