"""The seller's IMAP mailbox behind a small interface of our own.

The daemon speaks of folders and their roles, new UIDs, fetching, moving,
flagging and waiting for mail; :class:`Mailbox` turns that into IMAP through
imapclient, checks capabilities before the commands that need them (MOVE,
UIDPLUS, IDLE), and wraps every library, socket and TLS error into
:class:`MailboxError` (or :class:`LoginError`) with one clear line that never
contains the password.

Each concern has a room of its own (`fetch` and `actions` stand on `folders`, which
stands on `connection`):

- :mod:`~triage.mailbox.connection`: connect, TLS, log in (password or OAuth2), errors
- :mod:`~triage.mailbox.folders`: folders and their roles, creating, status, selecting
- :mod:`~triage.mailbox.fetch`: new UIDs, fetching, flags read, waiting (IDLE)
- :mod:`~triage.mailbox.actions`: flags set, moving, rescuing from spam
"""

from __future__ import annotations

import argparse

from triage.errors import ConfigError
from triage.mailbox.actions import DELETED, JUNK, NOT_JUNK, Actions
from triage.mailbox.connection import CONNECT_TIMEOUT, READ_TIMEOUT, ClientFactory
from triage.mailbox.fetch import MAX_BATCH_BYTES, POLL_SECONDS, Fetched, Fetching
from triage.mailbox.folders import JUNK_NAMES, ROLES, SENT_NAMES, Folder, FolderStatus, assign_roles
from triage.settings import from_env

__all__ = [
    "CONNECT_TIMEOUT",
    "DELETED",
    "JUNK",
    "JUNK_NAMES",
    "MAX_BATCH_BYTES",
    "NOT_JUNK",
    "POLL_SECONDS",
    "READ_TIMEOUT",
    "ROLES",
    "SENT_NAMES",
    "ClientFactory",
    "Fetched",
    "Folder",
    "FolderStatus",
    "Mailbox",
    "assign_roles",
    "folders_command",
]


class Mailbox(Actions, Fetching):
    """One IMAP connection to the seller's mailbox: its folders, its mail, what is done
    to it.

    ``client_factory`` builds the imapclient connection (``host`` and the keyword
    arguments ``port``, ``ssl``, ``ssl_context``, ``timeout``); tests may pass their own.
    """


# -- triage folders -----------------------------------------------------------------


def folders_command(args: argparse.Namespace) -> int:
    """``triage folders``: each folder of the configured mailbox and its role."""
    settings = from_env().imap
    if settings is None:
        raise ConfigError("TRIAGE_IMAP_HOST is not set: there is no mailbox to list")
    with Mailbox(settings) as mailbox:
        folders = mailbox.folders()
    order = {role: rank for rank, role in enumerate(ROLES)}
    rows = sorted(folders, key=lambda f: (order[f.role], f.name.lower()))
    width = max([len("FOLDER"), *(len(f.name) for f in rows)])
    print(f"{'ROLE':<6}  {'FOLDER':<{width}}  FLAGS")
    for folder in rows:
        print(f"{folder.role:<6}  {folder.name:<{width}}  {' '.join(folder.flags)}")
    return 0
