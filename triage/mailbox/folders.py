"""Folders and their roles: which folder is the inbox, the junk, the sent mail.

A role comes from the seller's settings first, then the server's SPECIAL-USE marks
(``\\Junk``, ``\\Sent``), then the names such folders usually go by. Here too: listing,
creating (the training folders), a folder's status, and selecting one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from imapclient import IMAPClient

from triage.errors import ConfigError
from triage.mailbox.connection import Connection, as_text
from triage.settings import ImapSettings

ROLES = ("inbox", "junk", "sent", "extra", "other")

# Names a junk or sent folder goes by when the server does not mark it with
# SPECIAL-USE; compared without case and without an "INBOX." / "INBOX/" prefix.
JUNK_NAMES = (
    "junk",
    "spam",
    "[gmail]/spam",
    "[google mail]/spam",
    "junk e-mail",
    "junk email",
    "junk mail",
    "bulk mail",
    "bulk",
    "spamverdacht",
    "courrier indésirable",
)
SENT_NAMES = (
    "sent",
    "sent items",
    "sent mail",
    "sent messages",
    "[gmail]/sent mail",
    "[google mail]/sent mail",
    "gesendet",
    "gesendete elemente",
    "envoyés",
)


@dataclass(frozen=True)
class Folder:
    """A mailbox folder and the role triage gives it."""

    name: str
    role: str
    flags: tuple[str, ...] = ()


@dataclass(frozen=True)
class FolderStatus:
    uidvalidity: int
    uidnext: int
    messages: int



def _plain_name(name: str, delimiter: str) -> str:
    """``INBOX.Junk`` -> ``junk``: the name as a seller would say it."""
    lowered = name.lower()
    for prefix in ("inbox" + delimiter, "inbox.", "inbox/"):
        if delimiter and lowered.startswith(prefix):
            return lowered[len(prefix) :]
    return lowered


def _by_special_use(folders: Sequence[Folder], flag: str) -> str | None:
    wanted = flag.lower()
    for folder in folders:
        if wanted in (f.lower() for f in folder.flags):
            return folder.name
    return None


def _by_name(
    folders: Sequence[Folder], delimiters: dict[str, str], names: Sequence[str]
) -> str | None:
    plain = {
        folder.name: _plain_name(folder.name, delimiters.get(folder.name, "")) for folder in folders
    }
    for wanted in names:
        for folder in folders:
            if plain[folder.name] == wanted:
                return folder.name
    return None


def _require_present(names: Iterable[str], present: set[str], variable: str) -> None:
    missing = [name for name in names if name not in present]
    if missing:
        raise ConfigError(
            f"{variable}: the server has no folder named {', '.join(map(repr, missing))}"
        )


def assign_roles(
    listing: Iterable[tuple[Sequence[bytes | str], bytes | str | None, str]],
    settings: ImapSettings,
) -> list[Folder]:
    """Folders from a LIST response (``(flags, delimiter, name)``), each with its role.

    INBOX is ``inbox``. Junk is the configured ``junk_folder``, else the folder
    marked ``\\Junk`` (SPECIAL-USE), else the first folder with a usual junk name;
    sent likewise with ``\\Sent``. Configured ``folders`` are ``extra``; the rest
    ``other``. A configured folder the server does not have is a ConfigError.
    """
    folders: list[Folder] = []
    delimiters: dict[str, str] = {}
    for flags, delimiter, name in listing:
        folders.append(Folder(name=name, role="other", flags=tuple(as_text(f) for f in flags)))
        delimiters[name] = as_text(delimiter) if delimiter else ""
    selectable = [f for f in folders if "\\noselect" not in (x.lower() for x in f.flags)]
    names = {f.name for f in selectable}
    if settings.junk_folder:
        _require_present([settings.junk_folder], names, "TRIAGE_IMAP_JUNK_FOLDER")
    _require_present(settings.folders, names, "TRIAGE_IMAP_FOLDERS")

    roles: dict[str, str] = {}
    for folder in selectable:
        if folder.name.upper() == "INBOX":
            roles[folder.name] = "inbox"
    candidates = [f for f in selectable if f.name not in roles]
    junk = settings.junk_folder or _by_special_use(candidates, "\\Junk")
    junk = junk or _by_name(candidates, delimiters, JUNK_NAMES)
    if junk:
        roles[junk] = "junk"
    candidates = [f for f in candidates if f.name not in roles]
    sent = _by_special_use(candidates, "\\Sent") or _by_name(candidates, delimiters, SENT_NAMES)
    if sent:
        roles[sent] = "sent"
    for name in settings.folders:
        roles.setdefault(name, "extra")
    return [Folder(f.name, roles.get(f.name, "other"), f.flags) for f in folders]



class Folders(Connection):
    """The folders of the mailbox: listed with their roles, created, opened."""

    def folders(self) -> list[Folder]:
        """Every folder with its role (see :func:`assign_roles`)."""
        client = self._live()
        with self._wrap("cannot list folders"):
            listing = client.list_folders()
        return assign_roles(listing, self.settings)

    def watched(self) -> list[Folder]:
        """The folders triage reads: inbox, junk, sent, then the configured extras."""
        folders = self.folders()
        order = {role: rank for rank, role in enumerate(ROLES)}
        chosen = [f for f in folders if f.role in ("inbox", "junk", "sent", "extra")]
        return sorted(chosen, key=lambda f: order[f.role])

    def delimiter(self) -> str:
        """The server's hierarchy delimiter (``/`` for a server without hierarchy)."""
        client = self._live()
        with self._wrap("cannot list folders"):
            listing = client.list_folders("", "INBOX")
        for _, delimiter, _ in listing:
            if delimiter:
                return as_text(delimiter)
        return "/"

    def ensure_folders(self, names: Sequence[str]) -> list[str]:
        """Create and subscribe the folders the server lacks (parents first); the created."""
        client = self._live()
        created = []
        with self._wrap("cannot create folders"):
            present = {as_text(name) for _, _, name in client.list_folders()}
            for name in names:
                if name not in present:
                    client.create_folder(name)
                    client.subscribe_folder(name)  # mail clients show subscribed folders
                    created.append(name)
        return created

    def status(self, folder: str) -> FolderStatus:
        """UIDVALIDITY, UIDNEXT and count without selecting the folder."""
        client = self._live()
        with self._wrap(f"cannot read the status of {folder!r}"):
            found = client.folder_status(folder, ["UIDVALIDITY", "UIDNEXT", "MESSAGES"])
        return FolderStatus(
            uidvalidity=int(found[b"UIDVALIDITY"]),
            uidnext=int(found[b"UIDNEXT"]),
            messages=int(found[b"MESSAGES"]),
        )

    def select(self, folder: str) -> FolderStatus:
        client = self._live()
        with self._wrap(f"cannot open {folder!r}"):
            response = client.select_folder(folder)
        self._selected = folder
        permanent = response.get(b"PERMANENTFLAGS")
        # Without PERMANENTFLAGS every flag is kept (RFC 3501, 7.1).
        self._permanent_flags = None if permanent is None else tuple(as_text(f) for f in permanent)
        uidnext = response.get(b"UIDNEXT")
        if uidnext is None:  # optional before IMAP4rev2; STATUS always has it
            uidnext = self.status(folder).uidnext
        return FolderStatus(
            uidvalidity=int(response[b"UIDVALIDITY"]),
            uidnext=int(uidnext),
            messages=int(response[b"EXISTS"]),
        )

    def _open_folder(self, folder: str) -> IMAPClient:
        if self._selected != folder:
            self.select(folder)
        return self._live()

