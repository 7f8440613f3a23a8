"""Reading the mailbox: new UIDs, the messages (size-capped, never marked read), their
flags, and waiting for news (IDLE, or a NOOP poll where the server lacks it)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any

from imapclient import IMAPClient

from triage.errors import MailboxError
from triage.mailbox.connection import as_text, uid_set
from triage.mailbox.folders import Folders

# How often a server without IDLE is asked for news.
POLL_SECONDS = 30.0
# Upper bound of message bytes asked for by one FETCH batch (imaplib holds about
# three times as much while it parses the answer).
MAX_BATCH_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class Fetched:
    """One fetched message: at most ``max_fetch_bytes`` of it, ``truncated`` if cut."""

    uid: int
    raw: bytes
    size: int
    internaldate: datetime | None
    truncated: bool



def _batches(items: Sequence[int], size: int) -> Iterator[Sequence[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class Fetching(Folders):
    """What the mailbox holds and when it changes; nothing here changes it."""

    def uids_after(self, folder: str, last_uid: int, since: date | None = None) -> list[int]:
        """UIDs above ``last_uid`` (received on or after ``since``, if given), ascending."""
        client = self._open_folder(folder)
        criteria: list[Any] = ["UID", f"{last_uid + 1}:*"]
        if since is not None:
            criteria += ["SINCE", since]
        with self._wrap(f"cannot search {folder!r}"):
            found = client.search(criteria)
        # "N:*" always matches the highest UID, even one at or below N.
        return sorted(uid for uid in found if uid > last_uid)

    def fetch(self, folder: str, uids: Sequence[int]) -> Iterator[Fetched]:
        """The messages, in UID order, without marking them read; UIDs gone are skipped.

        Only the first ``max_fetch_bytes`` of each are downloaded, and batches are
        sized so one holds at most ``MAX_BATCH_BYTES``.
        """
        cap = self.settings.max_fetch_bytes
        size = max(1, min(self.settings.fetch_batch, MAX_BATCH_BYTES // max(cap, 1)))
        return self._fetch_first(folder, uids, cap, size)

    def fetch_openings(self, folder: str, uids: Sequence[int], opening: int) -> Iterator[Fetched]:
        """The first ``opening`` bytes of each message, with its size: what the screen
        reads first. ``truncated`` says the message goes on; :meth:`fetch_rest` reads on.

        Batches are sized by the opening, which bounds them, not by the size cap.
        """
        opening = max(1, min(opening, self.settings.max_fetch_bytes))
        return self._fetch_first(folder, uids, opening, max(1, MAX_BATCH_BYTES // opening))

    def _fetch_first(self, folder: str, uids: Sequence[int], length: int,
                     batch_size: int) -> Iterator[Fetched]:
        """The first ``length`` bytes of each message with its size and date.

        Not its flags: sync reads those apart (:meth:`flags`), for the few rows it watches.
        """
        items = [f"BODY.PEEK[]<0.{length}>", "RFC822.SIZE", "INTERNALDATE"]
        for batch in _batches(uid_set(uids), batch_size):
            client = self._open_folder(folder)
            with self._wrap(f"cannot fetch from {folder!r}"):
                response = client.fetch(batch, items)
            for uid in batch:
                if uid in response:
                    yield _fetched(uid, response[uid], length)

    def fetch_rest(self, folder: str, openings: Sequence[Fetched]) -> Iterator[Fetched]:
        """Each opening made whole: its bytes followed by the rest, up to ``max_fetch_bytes``.

        Only what the openings lacked is downloaded; batches hold at most
        ``MAX_BATCH_BYTES`` by the sizes the openings told. Openings of one length are
        read on together (a FETCH names one offset); a UID gone since is skipped.
        """
        cap = self.settings.max_fetch_bytes
        by_length: dict[int, list[Fetched]] = {}
        for found in openings:
            if found.truncated and len(found.raw) < cap:
                by_length.setdefault(len(found.raw), []).append(found)
            else:
                yield found
        for start, group in by_length.items():
            item = f"BODY.PEEK[]<{start}.{cap - start}>"
            for batch in _byte_batches(group, cap - start, self.settings.fetch_batch):
                client = self._open_folder(folder)
                with self._wrap(f"cannot fetch from {folder!r}"):
                    response = client.fetch([f.uid for f in batch], [item])
                for found in batch:
                    rest = _body_of(response.get(found.uid, {}))
                    if rest is not None:
                        raw = found.raw + rest
                        yield replace(found, raw=raw, truncated=found.size > len(raw))

    def flags(self, folder: str, uids: Iterable[int]) -> dict[int, tuple[str, ...]]:
        client = self._open_folder(folder)
        wanted = uid_set(uids)
        if not wanted:
            return {}
        with self._wrap(f"cannot read flags in {folder!r}"):
            found = client.get_flags(wanted)
        return {uid: tuple(as_text(f) for f in flags) for uid, flags in found.items()}

    # -- waiting ---------------------------------------------------------------------

    def idle(self, folder: str, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the folder to change.

        True when the server announced new or expunged mail. Without IDLE the
        folder is polled every ``POLL_SECONDS``. MailboxError when the server says BYE or
        the connection dies.
        """
        client = self._open_folder(folder)
        if not self._has("IDLE"):
            return self._poll(client, folder, timeout)
        deadline = time.monotonic() + timeout
        with self._wrap(f"lost the connection while waiting on {folder!r}"):
            # Mail that came since the last command is not announced when IDLE
            # starts (Dovecot tells only at its next check, up to 30 s later).
            _, responses = client.noop()
            if _announces_mail(responses):
                return True
            while True:
                client.idle()
                try:
                    seen = _idle_until(client, deadline)
                except BaseException:
                    # Cut short (a signal): the session is still in IDLE and would not
                    # answer a LOGOUT, so close() must not wait for one.
                    self._lost()
                    raise
                if any(_says_bye(r) for r in seen):
                    self._lost()
                    raise MailboxError(f"{self.settings.host} closed the connection")
                # DONE also tells a quiet timeout from a peer that hung up (it raises).
                _, more = client.idle_done()
                if _announces_mail([*seen, *more]):
                    return True
                if time.monotonic() >= deadline:
                    return False

    def _poll(self, client: IMAPClient, folder: str, timeout: float) -> bool:
        """The IDLE stand-in: a NOOP every ``POLL_SECONDS`` until mail shows or time is up."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, POLL_SECONDS))
            with self._wrap(f"cannot poll {folder!r}"):
                _, responses = client.noop()
            if _announces_mail(responses):
                return True
        return False


def _idle_until(client: IMAPClient, deadline: float) -> list[Any]:
    """IDLE responses until mail is announced, the deadline, or an empty wake-up."""
    seen: list[Any] = []
    while (left := deadline - time.monotonic()) > 0:
        responses = client.idle_check(timeout=left)
        if not responses:
            break  # the timeout, or end of stream: idle_done() tells which
        seen += responses
        if _announces_mail(responses) or any(_says_bye(r) for r in responses):
            break
    return seen


def _byte_batches(items: Sequence[Fetched], most: int, count: int) -> Iterator[Sequence[Fetched]]:
    """Runs of ``items`` of at most ``count`` whose remaining bytes fit ``MAX_BATCH_BYTES``."""
    batch: list[Fetched] = []
    held = 0
    for item in items:
        left = min(max(item.size - len(item.raw), 0), most)
        if batch and (held + left > MAX_BATCH_BYTES or len(batch) >= count):
            yield batch
            batch, held = [], 0
        batch.append(item)
        held += left
    if batch:
        yield batch


def _body_of(data: dict[bytes, Any]) -> bytes | None:
    for key, value in data.items():
        if key.startswith(b"BODY[") and value is not None:
            return bytes(value)
    return None


def _fetched(uid: int, data: dict[bytes, Any], cap: int) -> Fetched:
    raw = _body_of(data) or b""
    size = int(data.get(b"RFC822.SIZE", len(raw)))
    internaldate = data.get(b"INTERNALDATE")
    return Fetched(
        uid=uid,
        raw=raw,
        size=size,
        internaldate=internaldate if isinstance(internaldate, datetime) else None,
        truncated=size > cap,
    )


def _announces_mail(responses: Iterable[Any]) -> bool:
    for response in responses:
        if (
            isinstance(response, tuple)
            and len(response) >= 2
            and response[1] in (b"EXISTS", b"EXPUNGE")
        ):
            return True
    return False


def _says_bye(response: Any) -> bool:
    return isinstance(response, tuple) and bool(response) and response[0] == b"BYE"


