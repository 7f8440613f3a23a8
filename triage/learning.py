"""An account's learned model: the shipped corpus refitted with the seller's corrections.

A correction is followed at once by look-alike mail (:mod:`triage.corrections`); a
refit of the model on the shipped corpus plus the account's corrected mail fixes other
mail besides, and the two together halve the error on template families the model
never saw (bench/README.md, "Corrections"). So each account may have a learned model,
kept in the state folder (``models/<account>``) with what it was trained from: a digest
of the account's active corrections and the identity of the shipped model. When either
changes (a new correction, an undo, an upgrade of triage) the learned model is stale
and never used; the shipped model decides until the next refit, the corrections still
in force on top of either.

The daemon refits by itself (:class:`Learner`): some time after the last correction, in
a child process at low priority, so syncing and alerts keep flowing; the new model
replaces the old in the account's pipeline without a restart. A refit that fails is
logged and told to the seller once, and the previous model keeps deciding.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import multiprocessing
import os
import re
import resource
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from triage import corrections, progress, resources
from triage.corrections import Correction
from triage.decoder import Decoder
from triage.errors import ModelError, TriageError
from triage.pipeline import LazyPredictor
from triage.resources import METADATA_FILE, MODEL_FILE
from triage.settings import Settings, default_model_dir
from triage.state import Database

if TYPE_CHECKING:
    from triage.message import Message
    from triage.model import Classifier, Weights
    from triage.pipeline import Prediction, Predictor

log = logging.getLogger(__name__)

MODELS_DIR = "models"  # under the state folder
LEARNED_BY = "learned model"  # what a verdict of the learned model says decided it
FORMAT = 1
NICENESS = 10  # the refit yields the cores to syncing and alerts
# A seller correcting mail in a row gets one refit, yet one who never stops still gets one.
LONGEST_WAIT_FACTOR = 5
STOP_SECONDS = 3.0  # how long a stopped refit may take to end before it is killed
# One refit at a time in a daemon, whatever the number of accounts: each child holds
# about 300 MB, and an upgrade of triage makes every account's learned model stale at once.
REFITS_AT_ONCE = 1
_refits = threading.BoundedSemaphore(REFITS_AT_ONCE)


# -- what a learned model is trained from ---------------------------------------------


def model_dir(state_dir: Path, account: str) -> Path:
    """Where the account's learned model lives: a name the file system takes, and unique."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", account).strip("._") or "account"
    tag = hashlib.sha256(account.encode()).hexdigest()[:8]
    return Path(state_dir) / MODELS_DIR / f"{safe[:60]}-{tag}"


def corrections_digest(found: Sequence[Correction]) -> str:
    """Changes with any correction added or undone, or corrected again to something else."""
    rows = sorted((c.id, c.type, c.severity) for c in found)
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()


def shipped_identity(shipped_dir: Path) -> str:
    """The shipped model's corpus digest and training time: another model, another identity."""
    try:
        meta = json.loads((Path(shipped_dir) / METADATA_FILE).read_text(encoding="utf-8"))
        spec = json.loads((Path(shipped_dir) / MODEL_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"{shipped_dir}: no readable model to learn from ({exc})") from exc
    return f"{meta.get('corpus_sha256', '')}@{spec.get('trained_at') or meta.get('trained_at')}"


def training_samples(found: Sequence[Correction]) -> list[tuple[Message, str, str, str]]:
    """Corrections as (message, type, severity, family) for a fit: each its own family."""
    return [(c.to_message(), c.type, c.severity, f"correction-{c.account}-{c.id}")
            for c in found]


def fit(
    messages: Sequence[Message], types: Sequence[str], severities: Sequence[str],
    families: Sequence[str], found: Sequence[Correction], critical_threshold: float,
    sure_level: float, weight: float | None = None,
) -> Weights:
    """The corpus plus the corrected mail, each counted ``weight`` corpus mails (default
    :data:`triage.train.CORRECTION_WEIGHT`); the shipped model's critical threshold and
    sure level (no cross-validation to pick them)."""
    from triage import train  # scikit-learn: only a refit needs it

    weight = train.CORRECTION_WEIGHT if weight is None else weight
    extra = training_samples(found)
    fitted = train.fit(
        [*messages, *(e[0] for e in extra)],
        [*types, *(e[1] for e in extra)],
        [*severities, *(e[2] for e in extra)],
        [*families, *(e[3] for e in extra)],
        critical_threshold=critical_threshold,
        sample_weight=[1.0] * len(messages) + [weight] * len(extra),
    ).weights
    fitted.sure_level = sure_level
    return fitted


@dataclass(frozen=True)
class Status:
    """Whether the account's learned model may decide, and why (not)."""

    state: str  # "current", "stale" or "none"
    why: str
    path: Path
    corrections: int  # active corrections now
    metadata: dict[str, Any]

    @property
    def current(self) -> bool:
        return self.state == "current"

    def describe(self) -> str:
        if self.current:
            return (f"learned model: current ({self.metadata.get('corrections', 0)} corrections, "
                    f"trained {self.metadata.get('trained_at', '?')}) at {self.path}")
        return f"learned model: {self.state} ({self.why})"


def _metadata(path: Path) -> dict[str, Any] | None:
    try:
        meta = json.loads((path / METADATA_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and "learned" in meta else None


def status(db: Database, state_dir: Path, account: str, shipped_dir: Path) -> Status:
    found = corrections.listing(db, account, active_only=True)
    path = model_dir(state_dir, account)
    meta = _metadata(path)
    if meta is None:
        why = "none made yet" if found else "no corrections to learn from"
        return Status("none", why, path, len(found), {})
    learned = meta["learned"]
    if learned.get("format") != FORMAT:
        why = "made by another version of triage"
    elif learned.get("corrections_sha256") != corrections_digest(found):
        why = "your corrections changed since"
    elif learned.get("shipped") != shipped_identity(shipped_dir):
        why = "the shipped model changed since"
    else:
        return Status("current", "", path, len(found), learned)
    return Status("stale", why, path, len(found), learned)


def current_classifier(
    db: Database, state_dir: Path, account: str, shipped_dir: Path
) -> Classifier | None:
    """The account's learned model, its verdicts naming it, if it is current and loads."""
    found = status(db, state_dir, account, shipped_dir)
    if not found.current:
        return None
    from triage.model import Classifier  # numpy, scipy, the lexicon: only to load one

    try:
        return learned_classifier(Classifier.load(found.path))
    except ModelError as exc:
        log.warning("%s: the learned model does not load (%s); the shipped model decides",
                    account, exc)
        return None


def classifier_for(where: Where, account: str) -> Classifier:
    """What decides the account's mail now: its current learned model, else the shipped."""
    from triage.model import Classifier

    return current_model(where, account) or Classifier.load(where.shipped_dir)


def current_model(where: Where, account: str) -> Classifier | None:
    """The account's learned model if there is a current one (nothing is refitted)."""
    if not where.database_path.exists():
        return None
    db = Database(where.database_path)
    try:
        return current_classifier(db, where.state_dir, account, where.shipped_dir)
    finally:
        db.close()


@dataclass(frozen=True)
class Where:
    """The files a refit reads and writes."""

    database_path: Path
    state_dir: Path
    shipped_dir: Path
    corpus_dir: Path


def where_for(settings: Settings) -> Where:
    """The state folder of ``settings``, the shipped model and corpus in use."""
    return Where(settings.database_path, settings.state_dir, default_model_dir(),
                 resources.corpus_dir())


# -- making one ------------------------------------------------------------------------


@dataclass(frozen=True)
class Learned:
    """What one refit did."""

    account: str
    corrections: int
    mails: int
    path: Path | None  # None: no corrections, no learned model
    seconds: float


def learn(
    database_path: Path, state_dir: Path, account: str, shipped_dir: Path, corpus_dir: Path,
    *, weight: float | None = None, shown: progress.Progress | None = None,
) -> Learned:
    """Refit the account's learned model now; with no active correction, remove it.

    Written whole into a folder of its own, then put in place by renaming a link, so a
    reader finds the old model or the new one, never half of one; a refit stopped half
    way leaves only a temporary folder, removed by the next refit.
    """
    target = model_dir(state_dir, account)
    with _locked(target):  # `triage learn` and the daemon's refit: one at a time
        return _learn(database_path, target, account, shipped_dir, corpus_dir, weight, shown)


def _learn(
    database_path: Path, target: Path, account: str, shipped_dir: Path, corpus_dir: Path,
    weight: float | None, shown: progress.Progress | None,
) -> Learned:
    started = time.perf_counter()
    db = Database(database_path)
    try:
        found = corrections.listing(db, account, active_only=True)
    finally:
        db.close()
    clear_leftovers(target)
    if not found:
        _remove(target)
        return Learned(account, 0, 0, None, time.perf_counter() - started)
    from triage import train
    from triage.model import Classifier

    weight = train.CORRECTION_WEIGHT if weight is None else weight
    identity = shipped_identity(shipped_dir)
    shipped = Classifier.load(shipped_dir).weights
    corpus = train.read_corpus(Path(corpus_dir))
    if shown is not None:
        shown.advance()
    weights = fit(corpus.messages, corpus.types, corpus.severities, corpus.groups, found,
                  shipped.critical_threshold, shipped.sure_level, weight)
    if shown is not None:
        shown.advance()
    meta = {
        "learned": {
            "format": FORMAT,
            "account": account,
            "corrections": len(found),
            "correction_ids": [c.id for c in found],
            "corrections_sha256": corrections_digest(found),
            "correction_weight": weight,
            "shipped": identity,
            "corpus_sha256": corpus.digest,
            "mails": len(corpus.messages),
            "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
    }
    _install(target, weights, meta)
    if shown is not None:
        shown.advance()
    return Learned(account, len(found), len(corpus.messages), target,
                   time.perf_counter() - started)


def _install(target: Path, weights: Weights, meta: dict[str, Any]) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    from triage import model

    made = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    model.save(weights, made, {"trained_at": meta["learned"]["trained_at"]})
    (made / METADATA_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    before = _resolved(target)
    link = target.parent / f".{target.name}.link"
    link.unlink(missing_ok=True)
    link.symlink_to(made.name)
    os.replace(link, target)  # one rename: the old model or the new, never neither
    if before is not None:
        shutil.rmtree(before, ignore_errors=True)


def _resolved(target: Path) -> Path | None:
    if target.is_symlink():
        return target.resolve()
    if target.is_dir():  # a real folder would refuse the rename over it
        shutil.rmtree(target, ignore_errors=True)
    return None


def _remove(target: Path) -> None:
    before = _resolved(target)
    target.unlink(missing_ok=True)
    if before is not None:
        shutil.rmtree(before, ignore_errors=True)


@contextlib.contextmanager
def _locked(target: Path, wait: bool = True) -> Iterator[bool]:
    """Held while the account's learned model is written; False if another holds it and
    ``wait`` is false. The lock goes with the process holding it, even a killed one."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with (target.parent / f"{target.name}.lock").open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True


def clear_leftovers(target: Path) -> None:
    """Folders of refits that were stopped half way (never the model in place)."""
    if not target.parent.is_dir():
        return
    keep = _resolved(target) if target.is_symlink() else None
    for path in target.parent.glob(f".{target.name}.*"):
        if path != keep:
            if path.is_symlink() or path.is_file():
                path.unlink(missing_ok=True)
            else:
                shutil.rmtree(path, ignore_errors=True)


# -- deciding with it ------------------------------------------------------------------


def learned_classifier(found: Classifier) -> Classifier:
    """A learned model: predicts as the shipped one does, and its verdicts say so."""
    from triage.model import Classifier

    return Classifier(found.weights, found.metadata, decided_by=LEARNED_BY)


class AccountModel:
    """What decides one account's mail: its learned model once there is a current one,
    else the shared shipped model. Swapped whole between two batches (:meth:`use`)."""

    def __init__(self, shipped: Predictor) -> None:
        self.shipped = shipped
        self.learned: Predictor | None = None

    def use(self, learned: Predictor | None) -> None:
        """``learned`` as :func:`current_classifier` gives it, or None for the shipped."""
        self.learned = learned

    def use_later(self, path: Path) -> None:
        """A learned model found current at start, loaded when a mail first needs it:
        loading takes most of a second, and the daemon watches before that."""
        shipped = self.shipped

        def load() -> Predictor:
            from triage.model import Classifier

            try:
                found = Classifier.load(path)
            except ModelError as exc:
                log.warning("the learned model in %s does not load (%s); the shipped model "
                            "decides", path, exc)
                return shipped
            return learned_classifier(found)

        self.learned = LazyPredictor(load)

    def predict(self, messages: Sequence[Message], /) -> Sequence[Prediction]:
        learned = self.learned  # read once: a swap mid-batch must not mix two models
        return (learned or self.shipped).predict(messages)


class AccountDecoder(Decoder):
    """The daemon's shared decoder while the shipped model decides the account's mail;
    this process with the learned model once it has one (the decoding worker holds the
    shipped model only)."""

    def __init__(self, shared: Decoder, account_model: AccountModel) -> None:
        super().__init__(account_model)
        self.shared = shared
        self.account_model = account_model

    def read(self, raws: Sequence[bytes]) -> list[Any]:
        if self.account_model.learned is None:
            return self.shared.read(raws)
        return super().read(raws)

    def rest(self) -> None:
        self.shared.rest()

    def close(self) -> None:
        """The shared decoder is closed by whoever made it."""


# -- the daemon's refits ---------------------------------------------------------------


class Learner:
    """Refits one account's learned model when its corrections change, in a child process.

    :meth:`poll` is called every few seconds from one thread (the daemon's supervisor):
    it sees corrections change (from the training folders, ``triage correct`` or an
    undo), waits ``after_seconds`` past the last change, starts the refit, and when the
    child ends puts its model to work or reports why it failed.
    """

    def __init__(
        self, account: str, account_model: AccountModel, where: Where, *,
        after_seconds: float, tell: Callable[[str], None] = lambda text: None,
        problem: Callable[[str | None], None] = lambda reason: None,
        clock: Callable[[], float] = time.monotonic, db: Database | None = None,
    ) -> None:
        self.account = account
        self.model = account_model
        self.where = where
        self.after = after_seconds
        self.tell = tell
        self.problem = problem
        self.clock = clock
        # A daemon's learners share one connection (``db``): one per account cost 100
        # accounts most of a second before watching, and memory for as long as they run.
        self._own_db = db is None
        self.db = Database(where.database_path) if db is None else db
        self._seen: tuple[int, int] | None = None
        self._due: float | None = None
        self._first_change: float | None = None
        self._child: Any = None
        self._pipe: Connection | None = None
        self._told = False
        self._lock = threading.Lock()
        self.last: dict[str, Any] | None = None  # what the last refit measured
        self.refits = 0  # started since this learner was made

    def start(self) -> None:
        """At start: the current learned model goes to work; a stale one is refitted now."""
        self._seen = corrections.version(self.db, self.account)
        found = self._status()
        if found.current:
            self.model.use_later(found.path)
            log.info("%s: %s", self.account, found.describe())
        elif found.corrections or found.state != "none":
            log.info("%s: %s; refitting", self.account, found.describe())
            self._due = self.clock()

    def poll(self) -> None:
        with self._lock:
            now = self.clock()
            if self._child is not None:
                if self._child.is_alive():
                    self._see_changes(now)
                    return
                self._finish()
            self._see_changes(now)
            if self._due is not None and now >= self._due:
                if not _refits.acquire(blocking=False):
                    return  # another account's refit runs; this one stays due
                self._due = self._first_change = None
                try:
                    self._begin()
                except BaseException:
                    self._child = self._pipe = None
                    _refits.release()
                    raise

    def _see_changes(self, now: float) -> None:
        seen = corrections.version(self.db, self.account)
        if seen == self._seen:
            return
        self._seen = seen
        if self.model.learned is not None and not self._status().current:
            # An undone correction must stop counting at once, not after the refit.
            self.model.use(None)
            log.info("%s: the learned model is stale; the shipped model decides until the "
                     "refit", self.account)
        self._first_change = self._first_change if self._first_change is not None else now
        self._due = min(now + self.after, self._first_change + LONGEST_WAIT_FACTOR * self.after)

    def _status(self) -> Status:
        return status(self.db, self.where.state_dir, self.account, self.where.shipped_dir)

    def _begin(self) -> None:
        context = multiprocessing.get_context("spawn")
        mine, theirs = context.Pipe(duplex=False)
        self._pipe = mine
        self._child = context.Process(
            target=_refit_in_child, name=f"triage-learn-{self.account}",
            args=(theirs, self.where, self.account, os.getpid()), daemon=True,
        )
        self._child.start()
        self.refits += 1
        theirs.close()
        log.info("%s: refitting the learned model with the corrections (pid %d)",
                 self.account, self._child.pid)

    def _finish(self) -> None:
        child, pipe = self._child, self._pipe
        self._child = self._pipe = None
        child.join()
        _refits.release()
        answer: tuple[str, Any] = ("failed", f"the refit ended with exit code {child.exitcode}")
        try:
            if pipe is not None and pipe.poll():
                answer = pipe.recv()
        except (EOFError, OSError):
            pass
        finally:
            if pipe is not None:
                pipe.close()
        if answer[0] == "ok":
            self._done(answer[1])
        else:
            self._failed(str(answer[1]))

    def _done(self, measured: dict[str, Any]) -> None:
        self.last = measured
        found = self._status()
        learned = current_classifier(self.db, self.where.state_dir, self.account,
                                     self.where.shipped_dir) if found.current else None
        self.model.use(learned)
        self._told = False
        self.problem(None)
        log.info("%s: learned model %s from %d corrections (%.1f s CPU, %.0f MB peak)",
                 self.account, "in use" if learned is not None else "not current",
                 measured.get("corrections", 0), measured.get("cpu_seconds", 0.0),
                 measured.get("peak_rss_mb", 0.0))

    def _failed(self, reason: str) -> None:
        log.error("%s: refitting the learned model failed, the previous model keeps "
                  "deciding: %s", self.account, reason)
        self.problem(f"refitting {self.account}'s learned model failed: {reason}")
        if not self._told:
            self._told = True
            self.tell(f"triage could not learn from your corrections for {self.account}: "
                      f"{reason}. Your corrections still apply to similar mail, and the "
                      "previous model keeps deciding.")

    @property
    def busy(self) -> bool:
        return self._child is not None and self._child.is_alive()

    def stop(self) -> None:
        """Stop a refit in progress; no half-written model is left."""
        with self._lock:
            child, self._child = self._child, None
            if child is not None and child.is_alive():
                child.terminate()
                child.join(STOP_SECONDS)
                if child.is_alive():
                    child.kill()
                    child.join()
                log.info("%s: refit stopped", self.account)
            if child is not None:
                _refits.release()
            if self._pipe is not None:
                self._pipe.close()
                self._pipe = None
            target = model_dir(self.where.state_dir, self.account)
            with _locked(target, wait=False) as mine:
                if mine:  # not while `triage learn` writes
                    clear_leftovers(target)
            if self._own_db:
                self.db.close()


def _refit_in_child(answer: Connection, where: Where, account: str, parent: int) -> None:
    """The child: refit at low priority and answer how it went, with what it cost."""
    with contextlib.suppress(OSError):  # already as low as it goes
        os.nice(NICENESS)
    threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()
    try:
        done = learn(where.database_path, where.state_dir, account, where.shipped_dir,
                     where.corpus_dir)
    except Exception as exc:  # the reason goes to the daemon, which tells the seller
        answer.send(("failed", str(exc) if isinstance(exc, TriageError)
                     else f"{type(exc).__name__}: {exc}"))
        return
    usage = resource.getrusage(resource.RUSAGE_SELF)
    answer.send(("ok", {
        "corrections": done.corrections, "mails": done.mails,
        "seconds": round(done.seconds, 1),
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),  # KiB on Linux
    }))


def _exit_with(parent: int) -> None:
    """A daemon gone (even killed) takes its refit along."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


# -- the command line ------------------------------------------------------------------


def learn_command(account: str, where: Where) -> int:
    """``triage learn``: refit the account's learned model now, with progress."""
    with progress.track("learn", total=3, unit="step") as shown:
        done = learn(where.database_path, where.state_dir, account, where.shipped_dir,
                     where.corpus_dir, shown=shown)
    if done.path is None:
        print(f"no active corrections for {account}: the shipped model decides")
        return 0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(f"learned from {done.corrections} corrections of {account} and {done.mails} corpus "
          f"mails in {done.seconds:.1f} s ({usage.ru_utime + usage.ru_stime:.1f} s CPU, "
          f"{usage.ru_maxrss / 1024:.0f} MB peak); written to {done.path}")
    return 0
