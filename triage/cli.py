"""The ``triage`` command line: one subcommand per job, each a thin shell over a module."""
# The --help text is the seller's (DESCRIPTION, EPILOG), not this docstring.

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from triage.errors import ConfigError, TriageError
from triage.logs import mask

log = logging.getLogger("triage")

Handler = Callable[[argparse.Namespace], int]


def _classify(args: argparse.Namespace) -> int:
    from triage import classify_cmd

    return classify_cmd.run(args)


def _train(args: argparse.Namespace) -> int:
    from triage import train

    if args.corrections:
        from triage import correct_cmd

        return correct_cmd.train_command(args)
    if args.correction_weight is not None:
        raise ConfigError("--correction-weight weighs the corrections of --corrections STATE.db")
    return train.train_command(args)


def _correct(args: argparse.Namespace) -> int:
    from triage import correct_cmd

    return correct_cmd.correct_command(args)


def _corrections(args: argparse.Namespace) -> int:
    from triage import correct_cmd

    return correct_cmd.corrections_command(args)


def _learn(args: argparse.Namespace) -> int:
    from triage import corrections, learning, settings

    config = settings.from_env()
    account = corrections.account_for(config, args.account)
    return learning.learn_command(account, learning.where_for(config))


def _check_rules(args: argparse.Namespace) -> int:
    from triage import rules, settings

    # The file the daemon would use (TRIAGE_RULES, ./rules.yaml, the shipped policy).
    args.file = args.file or str(settings.rules_path_from_env())
    return rules.check_command(args)


def _init(args: argparse.Namespace) -> int:
    from triage import init_cmd

    return init_cmd.init_command(args)


def _login(args: argparse.Namespace) -> int:
    from triage import login

    return login.login_command(args)


def _doctor(args: argparse.Namespace) -> int:
    from triage import doctor

    return doctor.doctor_command(args)


def _folders(args: argparse.Namespace) -> int:
    from triage import mailbox

    return mailbox.folders_command(args)


def _run(args: argparse.Namespace) -> int:
    from triage import daemon

    return daemon.run_command(args)


def _digest(args: argparse.Namespace) -> int:
    from triage import notify

    return notify.digest_command(args)


def _reply_clock(args: argparse.Namespace) -> int:
    from triage import replyclock

    return replyclock.no_response_command(args)


def _notify(args: argparse.Namespace) -> int:
    from triage import notify

    return notify.notify_command(args)


def _status(args: argparse.Namespace) -> int:
    from triage import status

    return status.status_command(args)


def _health(args: argparse.Namespace) -> int:
    from triage import health

    return health.health_command(args)


def _demo(args: argparse.Namespace) -> int:
    from triage import demo

    return demo.demo_command(args)


DESCRIPTION = """\
triage watches your Amazon seller mailbox (spam folder included), tells you at once
about the mail that decides your business (A-to-z claims, account health, buyer
messages waiting for an answer), rescues genuine Amazon mail from spam, and sends
the rest as a digest."""

EPILOG = """\
first steps:
  triage demo                      see it work on a sample mailbox (no server needed)
  triage init ~/triage --provider gmail
                                   write your settings and rules, then follow its steps
  triage doctor                    check the settings, login, folders, notifications
  triage run                       watch the mailbox

Run `triage COMMAND --help` for a command's options. Settings are environment
variables (TRIAGE_...), listed in the README."""


def build_parser() -> argparse.ArgumentParser:
    from triage import __version__, providers

    parser = argparse.ArgumentParser(
        prog="triage", description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"triage {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("classify", help="classify .eml files, folders of them, or mbox files")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--rules", help="rules file (default: rules.yaml)")
    p.add_argument("--json", action="store_true", help="one JSON object per message per line")
    p.set_defaults(handler=_classify)

    p = sub.add_parser("train", help="train the classifier from the labelled corpus")
    p.add_argument("--corpus", help="corpus folder (default: the corpus shipped with triage)")
    p.add_argument("--out", help="where to write the model (then set TRIAGE_MODEL_DIR to it)")
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds")
    p.add_argument("--render", action="store_true", help="render the corpus families first")
    p.add_argument("--corrections", metavar="STATE.db",
                   help="also learn the corrections kept in this state database")
    p.add_argument("--account", help="only this account's corrections (default: all)")
    p.add_argument("--correction-weight", type=float, metavar="N",
                   help="with --corrections: how many corpus mails each corrected mail "
                   "counts as (default: 2)")
    p.set_defaults(handler=_train)

    p = sub.add_parser("correct", help="tell triage what a mail really is; similar mail follows")
    p.add_argument("path", metavar="PATH.eml")
    p.add_argument("--type", required=True, help="the mail's type (see the taxonomy)")
    p.add_argument("--severity", help="critical, high, normal or low (default: kept if allowed)")
    p.add_argument("--account", help="the mailbox to file it under (default: the first)")
    p.add_argument("--rules", help="rules file (default: rules.yaml)")
    p.set_defaults(handler=_correct)

    p = sub.add_parser("corrections", help="list your corrections, or undo one")
    p.add_argument("--undo", type=int, metavar="ID", help="undo the correction with this id")
    p.add_argument("--account", help="the mailbox (default: the first)")
    p.add_argument("--json", action="store_true", help="one JSON object per correction per line")
    p.set_defaults(handler=_corrections)

    p = sub.add_parser("learn", help="refit your learned model with your corrections now "
                       "(the daemon does it by itself)")
    p.add_argument("--account", help="the mailbox (default: the first)")
    p.set_defaults(handler=_learn)

    p = sub.add_parser("check-rules", help="validate a rules file")
    p.add_argument("file", nargs="?",
                   help="rules file (default: TRIAGE_RULES, else ./rules.yaml, else the shipped)")
    p.set_defaults(handler=_check_rules)

    p = sub.add_parser("folders", help="list the mailbox's folders and the role each got")
    p.set_defaults(handler=_folders)

    p = sub.add_parser("run", help="watch the mailbox (the daemon)")
    p.add_argument("--once", action="store_true", help="sync every watched folder once, then exit")
    p.add_argument("--dry-run", action="store_true", help="print actions, change nothing")
    p.set_defaults(handler=_run)

    p = sub.add_parser("digest", help="send or preview the pending digest")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--now", action="store_true", help="send the pending digest now")
    group.add_argument("--preview", action="store_true", help="print the digest, send nothing")
    p.add_argument("--html", metavar="FILE", help="with --preview: also write the HTML mail")
    p.set_defaults(handler=_digest)

    p = sub.add_parser("reply-clock", help="a buyer message's 24-hour clock")
    p.add_argument("action", choices=["no-response"], help="stop it: no response needed")
    p.add_argument("which", metavar="ORDER|CLOCK", help="an order ID or a clock number")
    p.set_defaults(handler=_reply_clock)

    p = sub.add_parser("notify", help="notification targets")
    p.add_argument("--test", action="store_true", required=True, help="send a test message")
    p.set_defaults(handler=_notify)

    p = sub.add_parser("status", help="last sync per folder, open reply clocks, the outbox")
    p.add_argument("--json", action="store_true", help="one JSON object instead of text")
    p.set_defaults(handler=_status)

    p = sub.add_parser("health", help="exit 0 when the daemon is alive (container health check)")
    p.set_defaults(handler=_health)

    p = sub.add_parser("demo", help="run the whole pipeline on the bundled sample mailbox")
    p.set_defaults(handler=_demo)

    p = sub.add_parser("init", help="write your settings file and rules for your mail provider")
    p.add_argument("dir", nargs="?", default=".", help="folder to write them in (default: here)")
    p.add_argument("--provider", choices=list(providers.presets()), default="other",
                   help="your mail provider (default: other)")
    p.add_argument("--user", help="your e-mail address")
    p.set_defaults(handler=_init)

    p = sub.add_parser("login", help="sign in to Microsoft or Google once (OAuth2 device code)")
    p.add_argument("--provider", choices=["microsoft", "google"], required=True)
    p.add_argument("--client-id", help="your app registration's client id "
                   "(default: TRIAGE_OAUTH_CLIENT_ID)")
    p.add_argument("--tenant", default="common",
                   help="Microsoft tenant: common, consumers, organizations or your tenant id")
    p.add_argument("--scope", help="scopes to ask for (default: IMAP access, offline)")
    p.add_argument("--device-url", help="device authorisation endpoint (another provider)")
    p.add_argument("--token-url", help="token endpoint (another provider)")
    p.set_defaults(handler=_login)

    p = sub.add_parser("doctor", help="check that the setup works, with a fix for each problem")
    p.set_defaults(handler=_doctor)
    return parser


def _setup_logging(verbose: bool) -> None:
    from triage import logs, settings

    ops = settings.ops_from_env()
    level = "DEBUG" if verbose else ops.log_level
    logs.setup_logging(level, json=ops.log_json, secrets=settings.secrets_from_env())


def main(argv: Sequence[str] | None = None) -> int:
    try:
        # Inside the try: the parser reads the shipped provider presets, and a damaged
        # install must say so in one line, not a traceback.
        args = build_parser().parse_args(argv)
        handler: Handler = args.handler
        _setup_logging(args.verbose)
        return handler(args)
    except TriageError as exc:
        print(f"triage: {mask(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (``triage classify ... | head``): not an error of ours.
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
