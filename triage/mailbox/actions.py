"""Changing the mailbox: flags set and cleared, mail moved (MOVE, else COPY and an
expunge of just those UIDs), spam rescued. Every action may be repeated harmlessly."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from imapclient import IMAPClient

from triage.mailbox.connection import uid_set
from triage.mailbox.folders import Folders

log = logging.getLogger(__name__)

NOT_JUNK = "$NotJunk"
JUNK = "$Junk"
DELETED = "\\Deleted"


def _seq(uids: Iterable[int]) -> str:
    """An IMAP sequence set: ``[1, 2, 3, 7]`` -> ``"1:3,7"``."""
    ranges: list[list[int]] = []
    for uid in uid_set(uids):
        if ranges and uid == ranges[-1][1] + 1:
            ranges[-1][1] = uid
        else:
            ranges.append([uid, uid])
    return ",".join(f"{a}:{b}" if a != b else str(a) for a, b in ranges)



class Actions(Folders):
    """What triage does to mail: flag, move, rescue."""

    def add_flags(self, folder: str, uids: Iterable[int], flags: Iterable[str]) -> None:
        self._store(folder, uids, flags, add=True)

    def remove_flags(self, folder: str, uids: Iterable[int], flags: Iterable[str]) -> None:
        self._store(folder, uids, flags, add=False)

    def _store(self, folder: str, uids: Iterable[int], flags: Iterable[str], add: bool) -> None:
        client = self._open_folder(folder)
        wanted = uid_set(uids)
        allowed = [f for f in flags if self._may_store(f)]
        if not wanted or not allowed:
            return
        with self._wrap(f"cannot change flags in {folder!r}"):
            if add:
                client.add_flags(wanted, allowed, silent=True)
            else:
                client.remove_flags(wanted, allowed, silent=True)

    def _may_store(self, flag: str) -> bool:
        """Whether the selected folder keeps ``flag`` (its PERMANENTFLAGS)."""
        if self._permanent_flags is None:
            return True
        permanent = {f.lower() for f in self._permanent_flags}
        if flag.lower() in permanent or (not flag.startswith("\\") and "\\*" in permanent):
            return True
        log.debug("%s does not keep the flag %s; not setting it", self._selected, flag)
        return False

    def move(self, folder: str, uids: Iterable[int], dest: str) -> None:
        """Move messages; UIDs already gone are skipped, so a retry is harmless.

        MOVE when the server has it; else COPY, flag ``\\Deleted`` and expunge just
        those UIDs (UIDPLUS); else a plain EXPUNGE, but only when no other message
        in the folder is flagged ``\\Deleted`` (it would be erased with ours).
        """
        wanted = uid_set(uids)
        # Moving within a folder would give the messages new UIDs: never idempotent.
        if not wanted or dest == folder:
            return
        client = self._open_folder(folder)
        with self._wrap(f"cannot move messages from {folder!r} to {dest!r}"):
            present = uid_set(client.search(["UID", _seq(wanted)]))
            if not present:
                log.debug("nothing left to move from %s: %s", folder, wanted)
                return
            if self._has("MOVE"):
                client.move(present, dest)
            else:
                self._copy_and_expunge(client, folder, present, dest)
        log.info("moved %d message(s) from %s to %s", len(present), folder, dest)

    def _copy_and_expunge(
        self, client: IMAPClient, folder: str, present: list[int], dest: str
    ) -> None:
        # Messages already flagged \Deleted were copied by an interrupted earlier
        # attempt (or deleted by the seller): copying them again would duplicate them.
        to_copy = uid_set(client.search(["UID", _seq(present), "NOT", "DELETED"]))
        if to_copy:
            client.copy(to_copy, dest)
            client.add_flags(to_copy, [DELETED], silent=True)
        if self._has("UIDPLUS"):
            client.uid_expunge(present)
            return
        others = set(client.search(["DELETED"])) - set(present)
        if others:
            log.warning(
                "%s: left %d moved message(s) flagged \\Deleted; expunging would also erase "
                "%d other deleted message(s) and the server lacks UIDPLUS",
                folder,
                len(present),
                len(others),
            )
            return
        client.expunge()

    def rescue(self, folder: str, uids: Iterable[int], dest: str) -> None:
        """Mark messages as not junk and move them (to the inbox, usually)."""
        wanted = uid_set(uids)
        self.add_flags(folder, wanted, [NOT_JUNK])
        self.remove_flags(folder, wanted, [JUNK])
        self.move(folder, wanted, dest)

