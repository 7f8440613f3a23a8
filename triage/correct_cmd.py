"""``triage correct PATH.eml --type TYPE`` and ``triage corrections [--undo ID]``.

A correction is filed under the mailbox account of the current settings (the
environment's mailbox, or ``--account NAME`` from the settings file), in the state
database of ``TRIAGE_STATE_DIR``; with no mailbox configured, under one local account.
``triage classify`` and the daemon then decide similar mail by it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from triage import corrections, learning
from triage.corrections import Correction, CorrectionError, account_for
from triage.errors import ConfigError, TriageError
from triage.learning import training_samples
from triage.message import parse
from triage.rules import clamp_severity
from triage.settings import default_model_dir, from_env
from triage.state import Database
from triage.sync import fingerprint

if TYPE_CHECKING:
    from triage.pipeline import Pipeline


def record_file(
    db: Database,
    pipeline: Pipeline,
    account: str,
    path: Path,
    type_: str,
    severity: str | None,
) -> Correction:
    """Record that the mail in ``path`` is ``type_`` (and ``severity``) for ``account``.

    Without a severity, the model's is kept when the type allows it, else the nearest
    one that does. What the model said is decided afresh, without earlier corrections.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise TriageError(f"{path}: {exc.strerror}") from exc
    message = parse(raw)
    if message.error:
        raise TriageError(f"{path}: not a readable mail ({message.error})")
    said = pipeline.decide([message], folder="", role="file")[0]
    wanted = severity or clamp_severity(type_, said.severity)
    with db.transaction() as conn:
        number = corrections.record(conn, account, fingerprint(message, raw), message,
                                    (said.type, said.severity), (type_, wanted), "cli")
    return corrections.get(db, number)


def correct_command(args: argparse.Namespace) -> int:
    from triage.classify_cmd import build_pipeline

    settings = from_env()
    account = account_for(settings, args.account)
    # Checked before the model loads, so a typo is told at once.
    corrections.validate(args.type, args.severity)
    pipeline = build_pipeline(args.rules, account)
    db = Database(settings.database_path)
    try:
        done = record_file(db, pipeline, account, Path(args.path), args.type, args.severity)
    finally:
        db.close()
    print(f"correction {done.id} for {account}: {done.model_type}/{done.model_severity} "
          f"-> {done.type}/{done.severity}: {done.subject[:70]}")
    return 0


def corrections_command(args: argparse.Namespace) -> int:
    settings = from_env()
    account = account_for(settings, args.account)
    db = Database(settings.database_path)
    try:
        if args.undo is not None:
            undone = corrections.undo(db, args.undo, account)
            print(f"correction {undone.id} undone: {undone.subject[:70]}")
            return 0
        rows = corrections.listing(db, account)
        learned = learning.status(db, settings.state_dir, account, default_model_dir())
    finally:
        db.close()
    if args.json:
        for c in rows:
            print(json.dumps(_json(c), ensure_ascii=False))
        return 0
    print(f"{'ID':>4}  {'WHEN':<10}  {'WAS':<24} {'NOW':<24} {'HOW':<22} SUBJECT")
    for c in rows:
        now = f"{c.type}/{c.severity}" + (" (undone)" if c.undone else "")
        print(f"{c.id:>4}  {c.created_at.date().isoformat():<10}  "
              f"{c.model_type + '/' + c.model_severity:<24} {now:<24} {c.source:<22} "
              f"{c.subject[:60]}")
    if not rows:
        print(f"no corrections for {account}", file=sys.stderr)
    else:
        print(learned.describe())
    return 0


def _json(c: Correction) -> dict[str, object]:
    return {
        "id": c.id, "account": c.account, "when": c.created_at.isoformat(),
        "how": c.source, "sender": c.sender, "subject": c.subject,
        "model": {"type": c.model_type, "severity": c.model_severity},
        "corrected": {"type": c.type, "severity": c.severity}, "undone": c.undone,
    }


def train_command(args: argparse.Namespace) -> int:
    """``triage train --corrections STATE.db [--account NAME]``: the corpus plus corrections.

    Each corrected mail joins the final fit as a family of its own, counted as
    ``--correction-weight`` corpus mails (default :data:`triage.train.CORRECTION_WEIGHT`);
    the corrections stay in the state database and keep applying.
    """
    from triage import model, train
    from triage.corpus import default_corpus_dir, render_corpus

    path = Path(args.corrections)
    if not path.is_file():
        raise ConfigError(f"{path}: no such state database")
    db = Database(path)
    try:
        found = [c for c in corrections.listing(db, args.account) if not c.undone]
    finally:
        db.close()
    if not found:
        raise CorrectionError(f"{path}: no active corrections"
                              + (f" for {args.account}" if args.account else ""))
    samples = training_samples(found)
    corpus_dir = Path(args.corpus) if args.corpus else default_corpus_dir()
    out_dir = Path(args.out) if args.out else default_model_dir()
    if args.render:
        print(f"rendered {len(render_corpus(corpus_dir))} mails")
    weight = args.correction_weight
    if weight is None:
        weight = train.CORRECTION_WEIGHT
    if not weight > 0:
        raise ConfigError(f"--correction-weight must be more than 0, not {weight:g}")
    report = train.train(corpus_dir, out_dir, folds=args.folds, extra_samples=samples,
                         extra_weight=weight)
    print(train.format_report(report))
    print(f"with {len(samples)} corrections, each counted {weight:g} times; "
          f"model written to {out_dir / model.MODEL_FILE}")
    return 0
