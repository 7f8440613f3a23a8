"""Logging for the daemon and the commands: text or JSON lines, secrets always masked.

:func:`setup_logging` installs one handler on the root logger. Its filter rewrites
every record before any formatter sees it: the exact secret values it was given
(or learned later through :func:`register_secret`) become ``****``, and so does
anything shaped like a credential in a URL, whatever logged it::

    imaps://seller:hunter2@imap.example.com  ->  imaps://seller:****@imap.example.com
    json://host/hook?token=abc123            ->  json://host/hook?token=****
    tgram://123456:AAbbCC/987                ->  tgram://****

Extra fields (``log.info("synced", extra={"account": "shop"})``) are masked too, and
become keys of the JSON object or ``key=value`` pairs after the text message.
"""

from __future__ import annotations

import json as json_module
import logging
import re
import sys
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, TextIO
from urllib.parse import quote

MASK = "****"

# Shorter values would blank out ordinary words of every log line; a secret this
# short is not worth protecting anyway.
MIN_SECRET_LENGTH = 4

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_ATTRIBUTES = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
) | {"message", "asctime", "taskName"}

# scheme://user:PASSWORD@host
_URL_PASSWORD = re.compile(r"(?P<keep>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/?#]*:)[^\s@/]+(?=@)")

# ?token=VALUE, &pass=VALUE, ... in any query string; and Apprise's header and payload
# parameters (?+X-Api-Key=VALUE, ?-field=VALUE, also URL-encoded as %2B / %2D), whose
# values are as often tokens as not.
_QUERY_SECRET = re.compile(
    r"(?P<keep>[?&](?:pass|password|passwd|pw|token|access_token|apikey|api_key|key|secret"
    r"|(?:\+|-|%2B|%2D)[^\s=&#]+)=)[^\s&#]+",
    re.IGNORECASE,
)

# Notifiers whose URL is nothing but tokens (Apprise schemas): keep only the scheme.
TOKEN_SCHEMES = (
    "tgram", "discord", "slack", "msteams", "pover", "pbul", "gotify", "gotifys",
    "ntfys", "matrixs", "pushed", "join", "ifttt", "signal", "signals", "twilio",
    "whatsapp", "zulip", "line", "lametric", "spush", "ryver", "rocket", "rockets",
)
_TOKEN_URL = re.compile(
    r"\b(?P<keep>(?:" + "|".join(TOKEN_SCHEMES) + r")://)[^\s\"'<>]+", re.IGNORECASE
)


class SecretMasker:
    """The secrets to hide and the one function that hides them."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._replacements: dict[str, str] = {}
        self._ordered: list[tuple[str, str]] = []
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str) -> None:
        """Hide ``secret`` from now on, also as it looks URL-encoded, quoted or escaped."""
        if not secret or len(secret) < MIN_SECRET_LENGTH:
            return
        replacement = _replacement_for(secret)
        with self._lock:
            for spelling in spellings(secret):
                self._replacements[spelling] = replacement
            # Longest first, so a URL that holds a password is replaced as a whole.
            self._ordered = sorted(self._replacements.items(), key=lambda p: -len(p[0]))

    def mask(self, text: str) -> str:
        for secret, replacement in self._ordered:
            if secret in text:
                text = text.replace(secret, replacement)
        return mask_credentials(text)


def spellings(secret: str) -> set[str]:
    """How a secret may appear in a log line: as is, in a URL, in an IMAP string or a repr."""
    return {
        secret,
        quote(secret, safe=""),
        quote(secret, safe="/:"),
        secret.replace("\\", "\\\\").replace('"', '\\"'),
        repr(secret)[1:-1],
    }


def _replacement_for(secret: str) -> str:
    """A whole notifier URL keeps its scheme, so a log still says which target failed."""
    scheme, sep, _ = secret.partition("://")
    if sep and re.fullmatch(r"[a-zA-Z][a-zA-Z0-9+.-]*", scheme):
        return f"{scheme}://{MASK}"
    return MASK


def mask_credentials(text: str) -> str:
    """Mask what looks like a credential in a URL, known secrets or not."""
    if "://" not in text and "=" not in text:
        return text
    text = _TOKEN_URL.sub(lambda m: m["keep"] + MASK, text)
    text = _URL_PASSWORD.sub(lambda m: m["keep"] + MASK, text)
    return _QUERY_SECRET.sub(lambda m: m["keep"] + MASK, text)


class SecretFilter(logging.Filter):
    """Rewrites a record in place so that no handler ever sees a secret."""

    def __init__(self, masker: SecretMasker) -> None:
        super().__init__()
        self.masker = masker

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.masker.mask(_message_of(record))
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.masker.mask(record.exc_text)
            # The formatter would render exc_info again, unmasked, if it were kept.
            record.exc_info = None
        if record.stack_info:
            record.stack_info = self.masker.mask(record.stack_info)
        for key, value in extra_fields(record).items():
            setattr(record, key, self._mask_value(value))
        return True

    def _mask_value(self, value: Any) -> Any:
        if value is None or isinstance(value, bool | int | float):
            return value
        return self.masker.mask(value if isinstance(value, str) else str(value))


def _message_of(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except (TypeError, ValueError):
        # A bad format string: keep every part, masked, rather than let logging
        # print the raw arguments to stderr in its error report.
        return f"{record.msg} (arguments: {record.args!r})"


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a caller passed with ``extra=``."""
    return {
        key: value
        for key, value in vars(record).items()
        if key not in _RECORD_ATTRIBUTES and not key.startswith("_")
    }


class TextFormatter(logging.Formatter):
    """The classic line, then ``key=value`` for every extra field."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = extra_fields(record)
        if not extras:
            return line
        head, newline, rest = line.partition("\n")
        pairs = " ".join(f"{key}={value}" for key, value in extras.items())
        return f"{head} {pairs}{newline}{rest}"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, then the extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in extra_fields(record).items():
            entry.setdefault(key, value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json_module.dumps(entry, ensure_ascii=False, default=str)


class _Installed(logging.StreamHandler[TextIO]):
    """Marks the handler :func:`setup_logging` owns, so a second call replaces it."""

    def __init__(self, stream: TextIO | None) -> None:
        super().__init__(stream if stream is not None else sys.stderr)
        self.follow_stderr = stream is None

    def emit(self, record: logging.LogRecord) -> None:
        # Whatever sys.stderr is now: a test harness or a redirect may have replaced it.
        if self.follow_stderr:
            self.stream = sys.stderr
        super().emit(record)


_masker = SecretMasker()


def register_secret(value: str) -> None:
    """Mask ``value`` in every later log line (a token learned after start-up)."""
    _masker.add(value)


def mask(text: str) -> str:
    """``text`` as the logs would show it: for messages printed outside logging."""
    return _masker.mask(text)


def setup_logging(
    level: str = "INFO",
    json: bool = False,
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
) -> logging.Handler:
    """Send every log record to ``stream`` (stderr), masked, as text or JSON lines.

    Calling it again replaces the handler it installed before; other handlers on
    the root logger are left alone. Returns the handler.
    """
    for secret in secrets:
        register_secret(secret)
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Installed)]:
        root.removeHandler(old)
        old.close()
    handler = _Installed(stream)
    handler.addFilter(SecretFilter(_masker))
    handler.setFormatter(JsonFormatter() if json else TextFormatter())
    root.addHandler(handler)
    root.setLevel(level.upper())
    return handler
