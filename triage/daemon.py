"""``triage run``: keep the mailbox in sync, push not cron.

One IMAP connection IDLEs on INBOX, so a buyer's message is decided within seconds.
When ``max_connections`` allows two, a second connection IDLEs on the junk folder,
so genuine Amazon mail is rescued as promptly. The other watched folders (Sent,
extras, and junk on a one-connection provider) get a cheap ``STATUS`` every
``poll_seconds`` between IDLE rounds; a folder whose UIDNEXT did not move is not
searched. Syncs never overlap: the watchers take turns on one lock.

A dropped connection (BYE, reset, timeout, server restart) is re-opened with
exponential backoff and jitter; after ``LOGIN_FAILURES_TO_REPORT`` refused logins in
a row the operator is told once. SIGTERM finishes the current batch, commits it and
exits at once, leaving an IDLE wait or a backoff sleep where it is.
"""

from __future__ import annotations

import argparse
import functools
import logging
import random
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import TYPE_CHECKING, Any, Protocol

from triage import health, metrics, trainfolders
from triage.decoder import Decoder, build_decoder
from triage.errors import ConfigError, LoginError, MailboxError, RulesError, TriageError
from triage.liverules import RulesWatcher
from triage.notifypolicy import NotifyPolicy
from triage.oauth import GrantRevoked
from triage.pipeline import LazyPredictor
from triage.settings import Settings, default_model_dir, from_env
from triage.state import Database
from triage.sync import FolderLike, MailboxLike, Notifier, PipelineLike, Syncer, SyncReport
from triage.trainfolders import Target

if TYPE_CHECKING:
    from triage.learning import Learner
    from triage.pipeline import Pipeline, Predictor
    from triage.rules import Rules

log = logging.getLogger(__name__)

LOGIN_FAILURES_TO_REPORT = 3
NO_MAILBOX = "no mailbox configured: set TRIAGE_IMAP_HOST or run `triage init`"
BACKOFF_FIRST_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 300.0
# SIGTERM must end the process within 10 s (container runtimes kill after that).
STOP_GRACE_SECONDS = 8


class DaemonMailbox(MailboxLike, Protocol):
    """What the daemon needs of :class:`triage.mailbox.Mailbox` beyond sync's part."""

    def connect(self) -> Any: ...
    def close(self) -> Any: ...
    def watched(self) -> Sequence[Any]: ...
    def idle(self, folder: str, timeout: float) -> bool: ...
    def delimiter(self) -> str: ...
    def ensure_folders(self, names: Sequence[str]) -> list[str]: ...


Deliver = Callable[[Database, Settings, datetime, NotifyPolicy], None]

# A critical alert no target has taken for this long makes the daemon unhealthy.
CRITICAL_WAIT_LIMIT = timedelta(minutes=10)


def deliver_due(db: Database, settings: Settings, now: datetime, policy: NotifyPolicy) -> None:
    """One delivery round with the policy held, then tell health whether a critical
    alert has waited too long for a target."""
    from triage import notify

    notify.deliver_due(db, settings, now, policy=policy)
    waited = notify.oldest_waiting_critical(db.conn, now)
    if waited is not None and waited > CRITICAL_WAIT_LIMIT:
        minutes = int(waited.total_seconds() // 60)
        health.set_problem("alerts", f"a critical alert has waited {minutes} min for a target")
    else:
        health.set_problem("alerts", None)


@dataclass
class Timing:
    """How often things happen; tests shorten them."""

    poll_seconds: float = 15.0
    backoff_first: float = BACKOFF_FIRST_SECONDS
    backoff_max: float = BACKOFF_MAX_SECONDS


class Daemon:
    """The sync loop of one account; :meth:`run_once` or :meth:`run_forever`."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        pipeline: PipelineLike,
        mailbox_factory: Callable[[], DaemonMailbox],
        *,
        notifier: Notifier | None = None,
        deliver: Deliver | None = deliver_due,
        dry_run: bool = False,
        out: Callable[[str], None] = print,
        timing: Timing | None = None,
        hook: Callable[[str], None] | None = None,
        decoder: Decoder | None = None,
        policy: Callable[[], NotifyPolicy] = NotifyPolicy,
    ) -> None:
        if settings.imap is None:
            raise ConfigError(NO_MAILBOX)
        self.settings = settings
        self.imap = settings.imap
        self.db = db
        self.pipeline = pipeline
        self.mailbox_factory = mailbox_factory
        self.notifier = notifier
        self.deliver = deliver
        self.dry_run = dry_run
        self.out = out
        self.timing = timing or Timing()
        self.hook = hook
        self.decoder = decoder
        # The notify section of the rules now running (swapped whole on a reload).
        self.policy = policy
        self._stopping = threading.Event()
        # Held while a batch is being synced and committed: stopping waits for it.
        self._busy = threading.Lock()
        self._failure: BaseException | None = None
        self._login_failures = 0

    # -- public -----------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to end after the current batch (thread-safe)."""
        self._stopping.set()

    def reset(self) -> None:
        """Forget a failure so :meth:`run_forever` can start again."""
        self._failure = None
        self._stopping.clear()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT stop the loop; only from the main thread."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def run_once(self) -> list[SyncReport]:
        """Sync every watched folder once, act, send what is due."""
        mailbox = self.mailbox_factory()
        mailbox.connect()
        try:
            watched = mailbox.watched()
            self._learn(mailbox, self._prepare(mailbox), watched)
            reports = self._syncer(mailbox).sync_all(watched)
        finally:
            _close(mailbox)
        self._deliver()
        return reports

    def run_forever(self) -> None:
        """Until :meth:`stop` or SIGTERM: sync, IDLE, reconnect when the server goes away.

        The mailbox work runs in watcher threads, one per IDLE connection; this thread
        only waits for the stop. Stopping waits for the batch in progress to commit,
        then abandons the watchers wherever they wait (IDLE, backoff), so no IDLE
        needs cutting short.
        """
        watchers = [
            threading.Thread(target=self._work, args=(role,), name=f"triage-{role}", daemon=True)
            for role in self._idle_roles()
        ]
        for watcher in watchers:
            watcher.start()
        while all(w.is_alive() for w in watchers) and not self._stopping.wait(1.0):
            pass
        self._stopping.set()
        if self._busy.acquire(timeout=STOP_GRACE_SECONDS):
            self._busy.release()
        else:
            # Only a slow notification target gets here: its unsent outbox rows stay
            # queued and go out on the next start.
            log.warning("the current step did not finish in %d s; exiting", STOP_GRACE_SECONDS)
        if self._failure is not None:
            raise self._failure
        log.info("stopped")

    def _idle_roles(self) -> list[str]:
        """INBOX always IDLEs; junk gets its own connection when the provider allows two."""
        return ["inbox", "junk"] if self.imap.max_connections >= 2 else ["inbox"]

    def _work(self, role: str) -> None:
        attempt = 0
        try:
            while not self.stopping:
                try:
                    self._session(role)
                    attempt = 0
                except LoginError as exc:
                    if role == "inbox":  # one watcher counts, or each failure counts twice
                        self._login_failed(exc)
                    attempt += 1
                    self._sleep(self._backoff(attempt))
                except (MailboxError, OSError) as exc:
                    log.warning("mailbox connection lost: %s; reconnecting", exc)
                    metrics.count_reconnect(self.imap.account)
                    attempt += 1
                    self._sleep(self._backoff(attempt))
        except BaseException as exc:
            # Anything else is a bug: stop the daemon and let the error show.
            self._failure = exc
            self._stopping.set()

    # -- the loop ---------------------------------------------------------------------------

    def _session(self, role: str) -> None:
        """One connection's life: sync its folders, then IDLE and sync what changed.

        The inbox watcher IDLEs on INBOX and polls every watched folder that no other
        watcher IDLEs on; the junk watcher IDLEs on junk alone.
        """
        mailbox = self.mailbox_factory()
        mailbox.connect()
        if role == "inbox" and self._login_failures:
            log.info("logged in again after %d refused logins", self._login_failures)
            self._login_failures = 0
        try:
            folders = self._mine(role, mailbox.watched())
            if not folders:
                log.info("no %s folder to watch on a second connection", role)
                self._stopping.wait()
                return
            idle_on = folders[0]
            syncer = self._syncer(mailbox)
            training = self._prepare(mailbox) if role == "inbox" else []
            seen: dict[str, tuple[int, int]] = {}
            changed: Sequence[FolderLike] = folders
            while not self.stopping:
                with self._busy:
                    if self.stopping:
                        break
                    self._learn(mailbox, training, folders)
                    self._sync(syncer, changed)
                    self._deliver()
                    if self.decoder is not None:
                        self.decoder.rest()  # caught up: no worker while waiting for mail
                self._alive()
                woke = self._idle(mailbox, idle_on, folders)
                if self.stopping:
                    break
                changed = self._changed(mailbox, folders, seen, idle_on if woke else None)
        finally:
            _close(mailbox)

    def _alive(self) -> None:
        """Tell the health check and the metrics that this account's loop goes round."""
        health.beat(self.imap.account)
        metrics.mark_sync(self.imap.account, datetime.now(UTC))

    def _mine(self, role: str, watched: Sequence[Any]) -> list[Any]:
        """The folders one watcher syncs, the one it IDLEs on first."""
        junk = [f for f in watched if f.role == "junk"][:1] if "junk" in self._idle_roles() else []
        if role == "junk":
            return junk
        inbox = _inbox(watched)
        return [inbox, *(f for f in watched if f is not inbox and f not in junk)]

    def _sync(self, syncer: Syncer, folders: Sequence[FolderLike]) -> None:
        for folder in folders:
            if self.stopping:
                return
            report = syncer.sync_folder(folder)
            if report.fetched or report.resynced:
                log.info("%s", report.describe())

    def _idle(self, mailbox: DaemonMailbox, inbox: FolderLike, folders: Sequence[Any]) -> bool:
        """IDLE on INBOX until mail arrives, the refresh is due or the others need a poll."""
        timeout = float(self.imap.idle_refresh_seconds)
        if len(folders) > 1:
            timeout = min(timeout, self.timing.poll_seconds)
        return bool(mailbox.idle(inbox.name, timeout))

    def _changed(
        self,
        mailbox: DaemonMailbox,
        folders: Sequence[Any],
        seen: dict[str, tuple[int, int]],
        woke: FolderLike | None,
    ) -> list[FolderLike]:
        """Folders whose UIDVALIDITY or UIDNEXT moved since the last look (one STATUS each)."""
        changed = []
        for folder in folders:
            status = mailbox.status(folder.name)
            mark = (status.uidvalidity, status.uidnext)
            if folder is woke or seen.get(folder.name) != mark:
                changed.append(folder)
            seen[folder.name] = mark
        return changed

    def _prepare(self, mailbox: DaemonMailbox) -> list[Target]:
        """The training folders, created where missing; none in a dry run."""
        return [] if self.dry_run else trainfolders.prepare(mailbox)

    def _learn(self, mailbox: DaemonMailbox, training: Sequence[Target],
               watched: Sequence[Any]) -> None:
        """Record the corrections the seller made by moving mail into a training folder."""
        if not training:
            return
        junk = next((f.name for f in watched if f.role == "junk"), None)
        learned = trainfolders.sweep(self.db, mailbox, self.pipeline, self.imap.account,
                                     training, self.imap.rescue_folder, junk)
        if learned:
            log.info("%d correction(s) taken from the training folders", len(learned))

    def _syncer(self, mailbox: DaemonMailbox) -> Syncer:
        return Syncer(
            self.db,
            mailbox,
            self.pipeline,
            self.imap,
            notifier=self.notifier,
            hook=self._stage,
            dry_run=self.dry_run,
            out=self.out,
            should_stop=lambda: self.stopping,
            decoder=self.decoder,
        )

    def _stage(self, stage: str) -> None:
        if self.hook is not None:
            self.hook(stage)

    def _deliver(self) -> None:
        if self.deliver is None or self.dry_run:
            return
        try:
            self.deliver(self.db, self.settings, datetime.now(UTC), self.policy())
        except TriageError as exc:
            # The outbox keeps what was not sent; the next round retries.
            log.warning("notifications not sent: %s", exc)

    # -- failures -------------------------------------------------------------------------

    def _login_failed(self, exc: LoginError) -> None:
        self._login_failures += 1
        log.error("login refused (%d in a row): %s", self._login_failures, exc)
        if isinstance(exc, GrantRevoked):
            if exc.first_report:
                self.tell_operator(f"triage cannot log in to {self.imap.account}: {exc}")
            return
        if self._login_failures != LOGIN_FAILURES_TO_REPORT or self.notifier is None:
            return
        text = (f"triage cannot log in to {self.imap.user}@{self.imap.host}: the server "
                f"refused {self._login_failures} logins in a row ({exc}). Check the password.")
        self.tell_operator(text)

    def tell_operator(self, text: str) -> None:
        """A note for the seller about triage itself, sent now if a target is set."""
        if self.notifier is None:
            return
        try:
            self.notifier.notify_operator(self.db, text, datetime.now(UTC))
        except TriageError as err:
            log.error("could not tell the operator: %s", err)
        self._deliver()

    def _backoff(self, attempt: int) -> float:
        """Exponential with jitter, so many clients do not come back in step."""
        ceiling = min(self.timing.backoff_max, self.timing.backoff_first * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)

    def _sleep(self, seconds: float) -> None:
        log.info("retrying in %.1f s", seconds)
        self._stopping.wait(seconds)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        log.info("%s received: finishing the current batch", signal.Signals(signum).name)
        self._stopping.set()


def _inbox(folders: Sequence[Any]) -> Any:
    for folder in folders:
        if folder.role == "inbox":
            return folder
    raise MailboxError("the mailbox has no INBOX among its watched folders")


def _close(mailbox: DaemonMailbox) -> None:
    try:
        mailbox.close()
    except (TriageError, OSError) as exc:
        # The server may already be gone; the state is committed either way.
        log.debug("closing the connection failed: %s", exc)


# -- the command ---------------------------------------------------------------------------


def build_pipeline(settings: Settings) -> Pipeline:
    """The real model and rules; one pipeline serves every account."""
    from triage.pipeline import LazyPredictor, Pipeline
    from triage.rules import load_rules

    return Pipeline(
        LazyPredictor(_load_classifier),
        load_rules(settings.rules_path),
        settings.trusted_authserv_ids,
    )


def _load_classifier() -> Predictor:
    from triage.model import Classifier

    return Classifier.load(default_model_dir())


def build(
    settings: Settings,
    pipeline: Pipeline | None = None,
    *,
    dry_run: bool = False,
    decoder: Decoder | None = None,
) -> Daemon:
    """The daemon of ``settings.imap`` with the real model, rules, mailbox and notifier."""
    from triage.mailbox import Mailbox
    from triage.sync import default_notifier

    imap = settings.imap
    if imap is None:
        raise ConfigError(NO_MAILBOX)
    pipeline = pipeline or build_pipeline(settings)
    return Daemon(
        settings,
        Database(settings.database_path),
        pipeline,
        lambda: Mailbox(imap),
        notifier=default_notifier(),
        dry_run=dry_run,
        decoder=decoder,
        policy=running_policy(pipeline),
    )


def account_pipeline(shared: Pipeline, classifier: Predictor) -> Pipeline:
    """A pipeline of one account's own: its classifier, the shared rules and trust."""
    from triage.pipeline import Pipeline

    return Pipeline(classifier, shared.rules, shared.trusted_authserv_ids,
                    shared.rescue_folder, shared.assess)


def running_policy(pipeline: Pipeline) -> Callable[[], NotifyPolicy]:
    """The notify section of the rules the pipeline runs, never the file on disk."""

    def policy() -> NotifyPolicy:
        held: NotifyPolicy = pipeline.rules.section("notify")
        return held

    return policy


class Supervisor:
    """Runs one :class:`Daemon` per account, each in its own thread, and reloads the rules.

    One account's failure (a wrong password, a server that is down, even a bug) is
    logged and retried by that account's daemon; the others go on.
    """

    def __init__(self, daemons: Sequence[Daemon], watcher: RulesWatcher | None = None,
                 learners: Sequence[Learner] = ()) -> None:
        self.daemons = list(daemons)
        self.watcher = watcher
        self.learners = list(learners)
        self._stopping = threading.Event()
        self._reload = threading.Event()

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGHUP, lambda signum, frame: self._reload.set())

    def stop(self) -> None:
        self._stopping.set()

    def run(self, check_every: float = 2.0) -> None:
        for learner in self.learners:  # a current learned model decides from the first mail
            self._guarded(learner.start)
        threads = [
            threading.Thread(target=self._run_one, args=(d,), name=f"triage-{d.imap.account}",
                             daemon=True)
            for d in self.daemons
        ]
        for thread in threads:
            thread.start()
        while not self._stopping.wait(check_every):
            self._check_rules()
            for learner in self.learners:
                self._guarded(learner.poll)
        for daemon in self.daemons:
            daemon.stop()
        # One deadline for all: the process must be gone within 10 s of SIGTERM, and the
        # threads are daemon threads, so whatever still runs then ends with the process.
        deadline = time.monotonic() + STOP_GRACE_SECONDS + 1
        for learner in self.learners:  # a refit in progress is stopped, nothing half-written
            self._guarded(learner.stop)
        for thread in threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))

    def _check_rules(self) -> None:
        if self.watcher is None:
            return
        if self._reload.is_set():
            self._reload.clear()
            self.watcher.reload()
        else:
            self.watcher.check()

    def _guarded(self, step: Callable[[], None]) -> None:
        """Learning is a bonus: whatever goes wrong with it, watching the mail goes on."""
        try:
            step()
        except Exception:
            log.exception("learning from the corrections failed; the current model keeps "
                          "deciding")

    def _run_one(self, daemon: Daemon) -> None:
        while not self._stopping.is_set():
            try:
                daemon.run_forever()
                return
            except Exception:
                log.exception("account %s stopped on an error; restarting it", daemon.imap.account)
                daemon.reset()
                self._stopping.wait(BACKOFF_MAX_SECONDS / 10)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        log.info("%s received: finishing the current batch", signal.Signals(signum).name)
        self._stopping.set()


def tell_operator_refused(
    settings: Settings, policy: Callable[[], NotifyPolicy] = NotifyPolicy
) -> Callable[[RulesError], None]:
    """Report a refused edit at once: queue an operator note and send it now, to the
    targets of the last good policy (the broken file is never read for it)."""
    tell = operator_note(settings, policy)

    def refused(error: RulesError) -> None:
        health.set_problem("rules", f"the last rules.yaml edit was refused: {error}")
        tell(f"Your rules.yaml edit was refused; the last good rules keep running. {error}")

    return refused


def operator_note(
    settings: Settings, policy: Callable[[], NotifyPolicy] = NotifyPolicy
) -> Callable[[str], None]:
    """Queue a note for the seller about triage itself and send it now, from any thread
    (a database connection of its own)."""

    def tell(text: str) -> None:
        from triage import notify

        db = Database(settings.database_path)
        try:
            notify.notify_operator(db, text, datetime.now(UTC))
        finally:
            db.close()
        # Sent from a thread of its own: a slow target must not hold up the caller, nor
        # the SIGTERM it waits for.
        threading.Thread(target=send_now, args=(policy(),), name="triage-operator",
                         daemon=True).start()

    def send_now(held: NotifyPolicy) -> None:
        from triage import notify

        db = Database(settings.database_path)
        try:
            notify.deliver_due(db, settings, datetime.now(UTC), policy=held)
        except TriageError as exc:
            log.warning("a note for the operator is queued, not yet sent: %s", exc)
        finally:
            db.close()

    return tell


def rules_accepted(*pipelines: Pipeline) -> Callable[[Rules], None]:
    """New rules take over whole, in every account's pipeline; a refused edit no longer
    counts against health."""

    def apply(rules: Rules) -> None:
        for pipeline in pipelines:
            pipeline.use_rules(rules)
        health.set_problem("rules", None)

    return apply


def run_command(args: argparse.Namespace) -> int:
    settings = from_env()
    if not settings.accounts:
        # Never the demo here: under a supervisor that restarts it, a quiet exit 0 after a
        # misspelt variable would hide the mistake (``triage demo`` is the demo).
        raise ConfigError(NO_MAILBOX)
    pipeline = build_pipeline(settings)
    decoder = build_decoder(pipeline.classifier, default_model_dir(), settings.decode_workers,
                            settings.state_dir)
    try:
        return _run(args, settings, pipeline, decoder)
    finally:
        decoder.close()


def _run(args: argparse.Namespace, settings: Settings, pipeline: Pipeline,
         decoder: Decoder) -> int:
    from triage import learning

    where = learning.where_for(settings)
    daemons, pipes, learners = [], [pipeline], []
    # A dry run or a single pass uses a current learned model but never refits one.
    refits = not (args.once or args.dry_run) and settings.learn_after_seconds > 0
    learning_db = Database(settings.database_path) if refits else None
    for account in settings.accounts:
        # Each account's mail is decided by its own learned model once it has one.
        model = learning.AccountModel(pipeline.classifier)
        own = account_pipeline(pipeline, model)
        pipes.append(own)
        daemons.append(build(replace(settings, imap=account), own, dry_run=args.dry_run,
                             decoder=learning.AccountDecoder(decoder, model)))
        if refits:
            learners.append(learning.Learner(
                account.account, model, where, after_seconds=settings.learn_after_seconds,
                tell=operator_note(settings, running_policy(own)),
                problem=functools.partial(health.set_problem, f"learning {account.account}"),
                db=learning_db,
            ))
        else:
            model.use(learning.current_model(where, account.account))
    if args.once or args.dry_run:
        # A dry run changes no state, so looping would print the same lines forever.
        return run_once_all(daemons)
    health.start(settings)
    watcher = RulesWatcher(settings.rules_path,
                           rules_accepted(*pipes),
                           tell_operator_refused(settings, running_policy(pipeline)))
    supervisor = Supervisor(daemons, watcher, learners)
    supervisor.install_signal_handlers()
    for account in settings.accounts:
        log.info("watching %s", account.describe())
    if isinstance(pipeline.classifier, LazyPredictor):
        # Loaded beside the watchers, not before them: watching starts in a fraction of
        # the time, and the first mail that needs the model does not wait for it.
        threading.Thread(target=pipeline.classifier.load, name="triage-model",
                         daemon=True).start()
    try:
        supervisor.run()
    finally:
        if learning_db is not None:
            learning_db.close()
    log.info("stopped")
    return 0


def run_once_all(daemons: Sequence[Daemon]) -> int:
    """One sync of every account; an account that fails does not stop the others."""
    status = 0
    for daemon in daemons:
        try:
            for report in daemon.run_once():
                log.info("%s: %s", daemon.imap.account, report.describe())
        except MailboxError as exc:
            log.error("%s: %s", daemon.imap.account, exc)
            if isinstance(exc, GrantRevoked) and exc.first_report:
                daemon.tell_operator(f"triage cannot log in to {daemon.imap.account}: {exc}")
            status = 2
    return status
