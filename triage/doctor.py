"""``triage doctor``: does this setup work? Each part checked, with a fix for each failure.

In order: the settings, the login, the folders and their roles (inbox, junk, sent),
each notification target (a short test message; URLs shown with their secrets
masked), the rules, the model. The exit status is 1 when anything failed, so a
script or a container's start can rely on it.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from triage import providers
from triage.errors import LoginError, TriageError
from triage.settings import ImapSettings, Settings, default_model_dir, from_env


@dataclass(frozen=True)
class Check:
    """One line of the report: what was checked, whether it holds, how to fix it."""

    name: str
    ok: bool
    detail: str
    fix: str = ""
    # A failure that is only a warning (the Sent folder): the setup still works.
    warning: bool = False

    def lines(self) -> list[str]:
        mark = "ok  " if self.ok else ("warn" if self.warning else "FAIL")
        out = [f"{mark}  {self.name}: {self.detail}"]
        if not self.ok and self.fix:
            out.append(f"      fix: {self.fix}")
        return out


def check_settings() -> tuple[Settings | None, Check]:
    try:
        settings = from_env()
    except TriageError as exc:
        return None, Check("settings", False, str(exc),
                           "correct that variable (see `triage init` and the README)")
    return settings, Check("settings", True, "read and valid")


def check_mailbox(imap: ImapSettings) -> Iterator[Check]:
    """Login, then the folders' roles; the same code path the daemon uses."""
    from triage.mailbox import Mailbox

    try:
        with Mailbox(imap) as mailbox:
            yield Check("login", True, imap.describe())
            folders = mailbox.folders()
    except LoginError as exc:
        yield Check("login", False, str(exc), _login_fix(imap))
        return
    except TriageError as exc:
        yield Check("login", False, str(exc), "check TRIAGE_IMAP_HOST, TRIAGE_IMAP_PORT and "
                    "TRIAGE_IMAP_SECURITY (your provider's IMAP settings)")
        return
    names = {f.role: f.name for f in reversed(folders)}
    all_names = ", ".join(f.name for f in folders)
    yield Check("inbox folder", "inbox" in names, names.get("inbox", "not found"),
                "the server shows no INBOX: is this the right account?")
    junk_hint = _preset_junk(imap)
    yield Check("junk folder", "junk" in names, names.get("junk", "not found"),
                f"set TRIAGE_IMAP_JUNK_FOLDER to your spam folder ({junk_hint}one of: "
                f"{all_names})")
    yield Check("sent folder", "sent" in names, names.get("sent", "not found"),
                f"reply clocks stop when you answer from this mailbox; folders: {all_names}",
                warning=True)


def _login_fix(imap: ImapSettings) -> str:
    if imap.auth == "oauth2":
        return ("sign in again: `triage login --provider microsoft|google`, or set a new "
                "TRIAGE_OAUTH_REFRESH_TOKEN")
    return ("check TRIAGE_IMAP_USER and the password; Gmail, Yahoo, iCloud, Fastmail and Zoho "
            "need an app password; Microsoft 365 / Outlook.com need TRIAGE_IMAP_AUTH=oauth2")


def _preset_junk(imap: ImapSettings) -> str:
    for preset in providers.presets().values():
        if preset.host == imap.host and preset.junk_folder:
            return f"usually {preset.junk_folder!r}; "
    return ""


def check_targets(settings: Settings) -> Iterator[Check]:
    from triage.targets import load_targets, send

    try:
        targets = load_targets(settings)
    except TriageError as exc:
        yield Check("notifications", False, str(exc), "correct the URL (see Apprise's URL list)")
        return
    if not targets:
        yield Check("notifications", False, "no target: alerts would reach nobody",
                    "set TRIAGE_NOTIFY_URLS to an Apprise URL (ntfy://, tgram://, mailto://...)")
        return
    for target in targets:
        try:
            send(target, "triage doctor", "triage can reach you here.", "text")
        except TriageError as exc:
            yield Check(f"notify {target.label}", False, f"not reached ({exc})",
                        "check the URL and that the service is up; `triage notify --test` "
                        "tries again")
        else:
            yield Check(f"notify {target.label}", True, "test message delivered")


def check_rules(settings: Settings) -> Check:
    from triage.rules import load_rules

    try:
        rules = load_rules(settings.rules_path)
    except TriageError as exc:
        return Check("rules", False, str(exc), "fix that line; `triage check-rules` re-checks")
    return Check("rules", True, f"{settings.rules_path} ({len(rules)} rules)")


def check_model() -> Check:
    from triage.model import Classifier

    try:
        Classifier.load()
    except TriageError as exc:
        return Check("model", False, str(exc),
                     "unset TRIAGE_MODEL_DIR to use the shipped model, or `triage train`")
    return Check("model", True, f"loaded from {default_model_dir()}")


def run_checks() -> Iterator[Check]:
    settings, read = check_settings()
    yield read
    if settings is None:
        return
    if not settings.accounts:
        yield Check("mailbox", False, "no mailbox configured",
                    "set TRIAGE_IMAP_HOST (or TRIAGE_IMAP_PROVIDER) and TRIAGE_IMAP_USER, "
                    "or run `triage init`")
    for account in settings.accounts:
        for check in check_mailbox(account):
            yield Check(f"{account.account}: {check.name}" if settings.more_accounts
                        else check.name, check.ok, check.detail, check.fix, check.warning)
    yield from check_targets(settings)
    yield check_rules(settings)
    yield check_model()


def doctor_command(args: argparse.Namespace, out: Callable[[str], None] = print) -> int:
    failed = 0
    for check in run_checks():
        for line in check.lines():
            out(line)
        failed += not check.ok and not check.warning
    out("")
    out("All checks passed." if not failed else f"{failed} check(s) failed; fix them above.")
    return 1 if failed else 0


