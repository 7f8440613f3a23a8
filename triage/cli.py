"""The ``triage`` command line: one subcommand per job, each a thin shell over a module."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from triage.errors import TriageError
from triage.logs import mask

log = logging.getLogger("triage")

Handler = Callable[[argparse.Namespace], int]


def _classify(args: argparse.Namespace) -> int:
    from triage import classify_cmd

    return classify_cmd.run(args)


def _train(args: argparse.Namespace) -> int:
    from triage import train

    return train.train_command(args)


def _check_rules(args: argparse.Namespace) -> int:
    from triage import rules

    return rules.check_command(args)


def _folders(args: argparse.Namespace) -> int:
    from triage import mailbox

    return mailbox.folders_command(args)


def _run(args: argparse.Namespace) -> int:
    from triage import daemon

    return daemon.run_command(args)


def _digest(args: argparse.Namespace) -> int:
    from triage import digest

    return digest.digest_command(args)


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="triage", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("classify", help="classify .eml files, folders of them, or mbox files")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--rules", help="rules file (default: rules.yaml)")
    p.add_argument("--json", action="store_true", help="one JSON object per message per line")
    p.set_defaults(handler=_classify)

    p = sub.add_parser("train", help="train the classifier from the labelled corpus")
    p.add_argument("--corpus", help="corpus folder (default: models/corpus)")
    p.add_argument("--out", help="where to write the model (default: models/)")
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds")
    p.add_argument("--render", action="store_true", help="render the corpus families first")
    p.set_defaults(handler=_train)

    p = sub.add_parser("check-rules", help="validate a rules file")
    p.add_argument("file", nargs="?", help="rules file (default: rules.yaml)")
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
    p.set_defaults(handler=_digest)

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
    return parser


def _setup_logging(verbose: bool) -> None:
    from triage import logs, settings

    ops = settings.ops_from_env()
    level = "DEBUG" if verbose else ops.log_level
    logs.setup_logging(level, json=ops.log_json, secrets=settings.secrets_from_env())


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    try:
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
