"""The one exception root of triage and its few specific failures.

Errors from libraries are wrapped at the boundary (``raise ... from``) so callers
only ever need to catch :class:`TriageError`.
"""


class TriageError(Exception):
    """Root of every error triage raises on purpose."""


class ConfigError(TriageError):
    """Settings are missing or invalid; the message says which and why."""


class RulesError(TriageError):
    """A rules file is refused: YAML error, unknown key or bad value.

    The message always names the file and line, so a seller can fix it.
    """

    def __init__(self, path: str, line: int | None, reason: str) -> None:
        self.path = path
        self.line = line
        self.reason = reason
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {reason}")


class ModelError(TriageError):
    """The trained model is missing, unreadable or was trained on other names."""


class MailboxError(TriageError):
    """The IMAP server refused us or went away."""


class LoginError(MailboxError):
    """The IMAP server rejected the user name or password."""


class NotifyError(TriageError):
    """A notification target could not be reached or refused the message."""


class StateError(TriageError):
    """The state folder or its database cannot be opened (a path under a file, no rights)."""
