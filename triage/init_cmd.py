"""``triage init [DIR]``: a seller's own folder of settings, ready to fill in.

It writes ``rules.yaml`` (the shipped policy, commented) and ``triage.env`` (the
settings for the chosen mail provider), never replacing a file that is already
there, and then says what to do next. ``triage.env`` is a plain ``KEY=value`` file
that a shell (``set -a; . ./triage.env; set +a``), systemd (``EnvironmentFile=``)
and Docker Compose (``env_file:``) all read.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from triage import providers, resources

ENV_FILE = "triage.env"
RULES_FILE = "rules.yaml"
PASSWORD_FILE = "imap-password"


def env_text(provider: providers.Provider, folder: Path, user: str) -> str:
    """The settings file for ``provider``, every line commented."""
    lines = [
        f"# triage settings for {provider.label}, written by `triage init`.",
        "# Load them with:  set -a; . ./triage.env; set +a   (or systemd EnvironmentFile=,",
        "# or Docker Compose env_file:). Every setting is described in the README.",
        "#",
        *(f"# {line}" for line in _wrap(provider.notes)),
        "",
        "# Your mail provider: its server, port, security and login method.",
        f"TRIAGE_IMAP_PROVIDER={provider.name}",
    ]
    if not provider.host:
        lines += ["TRIAGE_IMAP_HOST=imap.example.com", "TRIAGE_IMAP_PORT=993",
                  "TRIAGE_IMAP_SECURITY=tls"]
    lines += ["# Your full e-mail address.", f"TRIAGE_IMAP_USER={user or 'you@example.com'}"]
    if provider.auth == "oauth2":
        lines += [
            "# OAuth2: run `triage login --provider "
            f"{provider.login or 'microsoft'} --client-id YOUR-APP-ID` once;",
            "# it saves the authorisation in the state folder below.",
            "TRIAGE_IMAP_AUTH=oauth2",
            "TRIAGE_OAUTH_CLIENT_ID=",
        ]
    else:
        lines += [
            "# The (app) password, in a file readable by you only:",
            f"#   printf '%s' 'THE-APP-PASSWORD' > {folder / PASSWORD_FILE}; "
            f"chmod 600 {folder / PASSWORD_FILE}",
            f"TRIAGE_IMAP_PASSWORD_FILE={folder / PASSWORD_FILE}",
        ]
    if provider.junk_folder:
        lines += ["# The spam folder is found by itself; set its name only if `triage doctor`",
                  "# finds none.",
                  f"# TRIAGE_IMAP_JUNK_FOLDER={provider.junk_folder}"]
    lines += [
        "",
        "# Your rules: edit them, then check with `triage check-rules`.",
        f"TRIAGE_RULES={folder / RULES_FILE}",
        "# Where triage keeps its state (its database and OAuth2 tokens).",
        f"TRIAGE_STATE_DIR={folder / 'state'}",
        "# Where alerts and digests go: Apprise URLs, separated by spaces, e.g.",
        "# ntfy://ntfy.sh/your-topic  tgram://BOT_TOKEN/CHAT_ID  mailto://user:pass@gmail.com",
        "TRIAGE_NOTIFY_URLS=",
        "# Your time zone, for quiet hours and digests.",
        "TRIAGE_TIMEZONE=UTC",
        "",
    ]
    return "\n".join(lines)


def _wrap(text: str, width: int = 86) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return [*lines, line] if line else lines


def write_new(path: Path, text: str | None, source: Path | None = None) -> bool:
    """Create ``path``; False, touching nothing, when it already exists."""
    if path.exists():
        return False
    if source is not None:
        shutil.copyfile(source, path)
    else:
        with path.open("x", encoding="utf-8") as out:
            out.write(text or "")
    return True


def init_command(args: argparse.Namespace) -> int:
    provider = providers.preset(args.provider)
    folder = Path(args.dir).expanduser().resolve()
    folder.mkdir(parents=True, exist_ok=True)
    results = [
        (folder / RULES_FILE,
         write_new(folder / RULES_FILE, None, resources.default_rules_path())),
        (folder / ENV_FILE,
         write_new(folder / ENV_FILE, env_text(provider, folder, args.user or ""))),
    ]
    for path, written in results:
        print(f"{'wrote' if written else 'kept '}  {path}"
              + ("" if written else "  (already there: not changed)"))
    print()
    print(next_steps(provider, folder))
    return 0


def next_steps(provider: providers.Provider, folder: Path) -> str:
    env = folder / ENV_FILE
    steps = [f"Next steps for {provider.label}:",
             f"  1. Fill in {env} (your address, where alerts go).",
             f"  2. Load the settings:  set -a; . {env}; set +a"]
    if provider.auth == "oauth2":
        steps.append(f"  3. Sign in once:  triage login --provider {provider.login or 'microsoft'}"
                     " --client-id YOUR-APP-ID")
    else:
        steps.append(f"  3. Put your app password in {folder / PASSWORD_FILE} (chmod 600).")
    steps += [
        "  4. Check everything:   triage doctor",
        "  5. Start watching:     triage run",
    ]
    return "\n".join(steps)
