"""``triage classify PATH...``: the classifier, trust check and rules at work on files.

PATH is an .eml file, a folder of them (searched recursively) or an mbox file. An
unreadable message is reported with its ``error`` and does not change the exit code;
a path that does not exist is bad usage and does.
"""

from __future__ import annotations

import argparse
import json
import mailbox
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from triage import message as message_mod
from triage import progress
from triage.errors import TriageError
from triage.message import Message
from triage.progress import Progress
from triage.verdict import Verdict

if TYPE_CHECKING:
    from triage.corrections import Recall
    from triage.pipeline import Pipeline

BATCH = 512
MAIL_SUFFIXES = {".eml", ".msg", ".mbox"}
# A header field name and colon, or an mbox separator, opens a file that holds mail.
MAIL_START = re.compile(rb"^(From |[\x21-\x39\x3b-\x7e]+:)")


@dataclass(frozen=True)
class Source:
    """One message to classify and where it came from (``file`` or ``file#N`` for mbox)."""

    name: str
    raw: bytes


def is_mbox(path: Path) -> bool:
    """An mbox starts with a ``From `` separator line; an .eml starts with headers."""
    with path.open("rb") as handle:
        return handle.read(5) == b"From "


def looks_like_mail(path: Path) -> bool:
    """Files in a folder without a mail suffix (Maildir, exports) count when they open
    like mail; a LICENSE or README beside them does not."""
    try:
        with path.open("rb") as handle:
            return MAIL_START.match(handle.read(200)) is not None
    except OSError:
        return False


def read_mbox(path: Path) -> Iterator[Source]:
    box = mailbox.mbox(path, create=False)
    try:
        for number, key in enumerate(box.iterkeys(), start=1):
            yield Source(f"{path}#{number}", box.get_bytes(key))
    finally:
        box.close()


def read_path(path: Path) -> Iterator[Source]:
    """Every message under ``path``; raises :class:`TriageError` for a path that is not there."""
    if path.is_dir():
        for child in sorted(p for p in path.rglob("*") if p.is_file()):
            if child.suffix.lower() in MAIL_SUFFIXES or looks_like_mail(child):
                yield from read_file(child)
    elif path.is_file():
        yield from read_file(path)
    else:
        raise TriageError(f"{path}: no such file or folder")


def read_file(path: Path) -> Iterator[Source]:
    try:
        if is_mbox(path):
            yield from read_mbox(path)
        else:
            yield Source(str(path), path.read_bytes())
    except OSError as exc:
        # An unreadable file is a per-message problem, reported like a malformed mail.
        yield Source(str(path), b"")
        print(f"triage: {path}: {exc.strerror}", file=sys.stderr)


def batches(sources: Iterable[Source], size: int = BATCH) -> Iterator[list[Source]]:
    batch: list[Source] = []
    for source in sources:
        batch.append(source)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def build_pipeline(rules_path: str | None, account: str | None = None) -> Pipeline:
    """The rules and the model of the settings' mailbox (or ``account``): its current
    learned model when it has one, else the shipped model."""
    from triage import corrections, learning, pipeline, rules, settings

    config = settings.from_env()
    loaded = rules.load_rules(Path(rules_path) if rules_path else config.rules_path)
    classifier = learning.classifier_for(learning.where_for(config),
                                         corrections.account_for(config, account))
    return pipeline.Pipeline(classifier, loaded, config.trusted_authserv_ids)


def seller_corrections() -> Recall | None:
    """The corrections of the current settings' mailbox (``triage correct``), if any."""
    from triage import corrections, settings

    config = settings.from_env()
    return corrections.recall_for(config, corrections.account_for(config))


Result = tuple[Source, Message, Verdict]


def classify(
    sources: Iterable[Source], rules_path: str | None, shown: Progress | None = None
) -> Iterator[Result]:
    pipe = build_pipeline(rules_path)
    recall = seller_corrections()
    for batch in batches(sources):
        parsed = [message_mod.parse(s.raw) for s in batch]
        verdicts = pipe.decide(parsed, folder="", role="file", corrections=recall)
        yield from zip(batch, parsed, verdicts, strict=True)
        if shown is not None:
            shown.advance(len(batch))


def json_line(source: Source, verdict: Verdict) -> str:
    return json.dumps({"source": source.name, **verdict.to_json()}, ensure_ascii=False)


def table_row(source: Source, msg: Message, verdict: Verdict) -> str:
    flag = "SUSPICIOUS" if verdict.suspicious else ("amazon" if verdict.amazon else "")
    what = verdict.error or msg.subject.replace("\n", " ")[:60]
    if verdict.possibly_critical and not verdict.error:
        what = f"possibly critical: {what}"  # as alerts and the digest say it
    return (
        f"{verdict.severity:<8} {verdict.type:<15} {verdict.confidence:4.2f} {flag:<10} "
        f"{verdict.order_id or '-':<19} {what}  [{source.name}]"
    )


HEADER = f"{'SEVERITY':<8} {'TYPE':<15} {'CONF':4} {'TRUST':<10} {'ORDER':<19} SUBJECT  [SOURCE]"


def write(results: Iterable[Result], as_json: bool, out: TextIO) -> int:
    count = 0
    if not as_json:
        print(HEADER, file=out)
    for source, msg, verdict in results:
        print(json_line(source, verdict) if as_json else table_row(source, msg, verdict), file=out)
        count += 1
    return count


def run(args: argparse.Namespace) -> int:
    paths: Sequence[Path] = [Path(p) for p in args.paths]
    for path in paths:
        if not path.exists():
            raise TriageError(f"{path}: no such file or folder")
    sources = (source for path in paths for source in read_path(path))
    if sys.stdout.isatty():
        # The verdicts scrolling by are the progress; a bar would only tear them.
        write(classify(sources, args.rules), args.json, sys.stdout)
        return 0
    with progress.track("classify") as shown:
        write(classify(sources, args.rules, shown), args.json, sys.stdout)
    return 0
