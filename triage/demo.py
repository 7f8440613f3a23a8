"""The embedded default: the whole pipeline on a bundled sample mailbox, no server needed.

``triage demo`` syncs the sample INBOX, junk and Sent folders through the real sync
engine, model and rules, rescues genuine Amazon mail from junk, leaves the phishing
where it is, opens the reply clocks, and prints the prioritized digest. Its state lives
in a temporary folder, so the demo never touches a real mailbox's state.
"""

from __future__ import annotations

import argparse
import email.utils
import json
import re
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from triage import settings, sync
from triage.document import render
from triage.mailbox import Fetched, Folder, FolderStatus

SAMPLE_DIR = Path(__file__).with_name("sample_mailbox")
ROLES = {"INBOX": "inbox", "Junk": "junk", "Sent": "sent"}
DATE_HEADER = re.compile(rb"^Date: .*$", re.M)


@dataclass
class _Stored:
    uid: int
    raw: bytes
    internaldate: datetime
    flags: set[str] = field(default_factory=set)


class SampleMailbox:
    """An in-memory mailbox with the same interface the sync engine uses on IMAP.

    Mail is dated relative to ``now`` so reply clocks and digests look live.
    """

    def __init__(self, now: datetime, sample_dir: Path = SAMPLE_DIR) -> None:
        self.folders: dict[str, list[_Stored]] = {name: [] for name in ROLES}
        self.next_uid = 1
        for item in json.loads((sample_dir / "manifest.json").read_text()):
            when = now - timedelta(hours=item["hours_ago"])
            raw = (sample_dir / item["folder"] / item["file"]).read_bytes()
            stamp = email.utils.format_datetime(when).encode()
            raw = DATE_HEADER.sub(b"Date: " + stamp, raw, count=1)
            self._store(item["folder"], raw, when, set(item["flags"]))

    def _store(self, folder: str, raw: bytes, when: datetime, flags: set[str]) -> None:
        self.folders[folder].append(_Stored(self.next_uid, raw, when, flags))
        self.next_uid += 1

    def _find(self, folder: str, uids: Sequence[int]) -> list[_Stored]:
        wanted = set(uids)
        return [m for m in self.folders[folder] if m.uid in wanted]

    def watched(self) -> list[Folder]:
        return [Folder(name, role) for name, role in ROLES.items()]

    def status(self, folder: str) -> FolderStatus:
        count = len(self.folders[folder])
        return FolderStatus(uidvalidity=1, uidnext=self.next_uid, messages=count)

    def uids_after(self, folder: str, last_uid: int, since: date | None = None) -> list[int]:
        return [m.uid for m in self.folders[folder] if m.uid > last_uid]

    def fetch(self, folder: str, uids: Sequence[int]) -> Iterator[Fetched]:
        for m in self._find(folder, uids):
            yield Fetched(m.uid, m.raw, len(m.raw), m.internaldate, False)

    def flags(self, folder: str, uids: Sequence[int]) -> dict[int, tuple[str, ...]]:
        return {m.uid: tuple(m.flags) for m in self._find(folder, uids)}

    def add_flags(self, folder: str, uids: Sequence[int], flags: Sequence[str]) -> None:
        for m in self._find(folder, uids):
            m.flags.update(flags)

    def remove_flags(self, folder: str, uids: Sequence[int], flags: Sequence[str]) -> None:
        for m in self._find(folder, uids):
            m.flags.difference_update(flags)

    def move(self, folder: str, uids: Sequence[int], dest: str) -> None:
        for m in self._find(folder, uids):
            self.folders[folder].remove(m)
            self._store(dest, m.raw, m.internaldate, m.flags)

    def rescue(self, folder: str, uids: Sequence[int], dest: str) -> None:
        self.add_flags(folder, uids, ["$NotJunk"])
        self.remove_flags(folder, uids, ["$Junk"])
        self.move(folder, uids, dest)


def run_demo(out: Callable[[str], None] = print, now: datetime | None = None) -> int:
    """Run the pipeline on the sample mailbox and print what a seller would get."""
    from triage import digest, model, notifypolicy, pipeline, rules
    from triage.state import Database

    now = now or datetime.now(UTC)
    config = settings.from_env()
    box = SampleMailbox(now)
    imap = settings.ImapSettings(host="sample-mailbox", user="demo", password="", security="none")
    pipe = pipeline.Pipeline(
        model.Classifier.load(settings.default_model_dir()),
        rules.load_rules(config.rules_path),
        config.trusted_authserv_ids,
        rescue_folder="INBOX",
    )
    with tempfile.TemporaryDirectory(prefix="triage-demo-") as tmp:
        db = Database(Path(tmp) / "demo.db")
        try:
            syncer = sync.Syncer(db, box, pipe, imap, clock=lambda: now, out=out)
            reports = syncer.sync_all(box.watched())
            out(_summary(reports, box))
            report = digest.build_digest(db.conn, title="Amazon mail digest (demo)", since=None,
                                         until=now)
            zone = notifypolicy.timezone(config)
            out(render(digest.to_document(report, zone), "text"))
        finally:
            db.close()
    return 0


def _summary(reports: Sequence[sync.SyncReport], box: SampleMailbox) -> str:
    lines = ["triage demo: the whole pipeline on the bundled sample mailbox (no server).", ""]
    lines += [f"  {r.describe()}" for r in reports]
    lines.append(
        f"  after the run: INBOX {len(box.folders['INBOX'])} messages, "
        f"Junk {len(box.folders['Junk'])} (phishing stays there)"
    )
    lines.append("")
    return "\n".join(lines)


def demo_command(args: argparse.Namespace) -> int:
    return run_demo()
