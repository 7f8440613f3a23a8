"""From parsed mail to verdicts: trust, the model, the seller's rules, then the safety net.

The safety net comes last so no rule can undo it: suspicious mail is never moved out
of junk, and genuine Amazon seller mail found in junk is rescued.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Protocol

from triage import trust
from triage.errors import ModelError
from triage.message import Message
from triage.rules import Rules, clamp_severity
from triage.taxonomy import TYPES
from triage.verdict import POSSIBLY_CRITICAL, Action, Verdict

if TYPE_CHECKING:
    from triage.corrections import Match, Recall

JUNK = "junk"
SETTLED_TRUST = trust.Trust(False, False, "not from Amazon and not presenting as Amazon")
SENT = "sent"


class Prediction(Protocol):
    @property
    def type(self) -> str: ...
    @property
    def severity(self) -> str: ...
    @property
    def confidence(self) -> float: ...


class Predictor(Protocol):
    """What the pipeline needs of a classifier (``triage.model.Classifier`` is one)."""

    def predict(self, messages: Sequence[Message], /) -> Sequence[Prediction]: ...


class LazyPredictor:
    """A classifier loaded the first time a mail needs it.

    Loading the model (scikit-learn and its weights) takes seconds and a large share
    of the daemon's memory; a mailbox whose mail its headers settle never needs it,
    and the daemon is watching before it is loaded.
    """

    def __init__(self, load: Callable[[], Predictor]) -> None:
        self._load = load
        self._loaded: Predictor | None = None
        self._lock = threading.Lock()

    def load(self) -> Predictor:
        """The classifier, loaded now if it was not yet."""
        if self._loaded is None:
            with self._lock:  # accounts sync in threads: one loads, the others wait
                if self._loaded is None:
                    self._loaded = self._load()
        return self._loaded

    def predict(self, messages: Sequence[Message], /) -> Sequence[Prediction]:
        return self.load().predict(messages)


class Assessment(Protocol):
    @property
    def authenticated(self) -> bool: ...
    @property
    def suspicious(self) -> bool: ...
    @property
    def reason(self) -> str: ...


Assess = Callable[[Message, Sequence[str]], Assessment]


def _assess(message: Message, trusted_authserv_ids: Sequence[str]) -> Assessment:
    return trust.assess(message, trusted_authserv_ids=tuple(trusted_authserv_ids))


class Pipeline:
    """Decides about batches of mail from one folder; changes nothing itself."""

    def __init__(
        self,
        classifier: Predictor,
        rules: Rules | None = None,
        trusted_authserv_ids: Sequence[str] = (),
        rescue_folder: str | None = None,
        assess: Assess = _assess,
    ) -> None:
        self.classifier = classifier
        self.rules = rules if rules is not None else Rules()
        self.trusted_authserv_ids = tuple(trusted_authserv_ids)
        self.rescue_folder = rescue_folder
        self.assess = assess

    def use_rules(self, rules: Rules) -> None:
        """Swap in newly loaded rules; the next batch is decided by them."""
        self.rules = rules

    def decide(
        self,
        messages: Sequence[Message],
        folder: str = "INBOX",
        role: str = "inbox",
        predictions: Sequence[Prediction | None] | None = None,
        corrections: Recall | None = None,
    ) -> list[Verdict]:
        """One verdict per message, in order; the model sees the readable ones in one batch.

        ``predictions``, one per message (None for unreadable ones), are the model's
        answers already computed elsewhere (a decoding worker); the model is then not asked.
        ``corrections``, the seller's for this mailbox, are followed by mail like theirs.
        """
        if role == SENT:
            return [own_mail(m) for m in messages]
        readable = [m for m in messages if not m.error]
        if predictions is None:
            known: Sequence[Prediction] = self._predict(readable)
        else:
            known = [p for m, p in zip(messages, predictions, strict=True)
                     if not m.error and p is not None]
            if len(known) != len(readable):
                raise ModelError("a readable message came without its prediction")
        predicted = iter(known)
        verdicts = [
            unreadable(m) if m.error else self._decide_one(m, next(predicted), folder, role)
            for m in messages
        ]
        if corrections:
            self._follow(corrections, messages, known, verdicts, folder, role)
        return verdicts

    def _follow(
        self, corrections: Recall, messages: Sequence[Message], known: Sequence[Prediction],
        verdicts: list[Verdict], folder: str, role: str,
    ) -> None:
        """Mail like one the seller corrected is decided again with the correction;
        suspected phishing never is."""
        readable = [i for i, m in enumerate(messages) if not m.error]
        said = [(verdicts[i].type, verdicts[i].severity) for i in readable]
        found = corrections.match([messages[i] for i in readable], said)
        for i, prediction, match in zip(readable, known, found, strict=True):
            if match is not None and not verdicts[i].suspicious:
                verdicts[i] = self._decide_one(messages[i], prediction, folder, role, match)

    def _predict(self, messages: Sequence[Message]) -> Sequence[Prediction]:
        if not messages:
            return []
        predictions = self.classifier.predict(messages)
        if len(predictions) != len(messages):
            raise ModelError(
                f"classifier returned {len(predictions)} predictions for {len(messages)} messages"
            )
        return predictions

    def _decide_one(
        self, message: Message, prediction: Prediction, folder: str, role: str,
        match: Match | None = None,
    ) -> Verdict:
        # A mail settled by its headers (triage.screen) was found not to present as
        # Amazon and not to come from an Amazon domain: there is nothing to assess.
        settled = bool(getattr(prediction, "reason", ""))
        found = SETTLED_TRUST if settled else self.assess(message, self.trusted_authserv_ids)
        verdict = model_verdict(message, prediction, found)
        if match is not None and not found.suspicious:
            verdict = match.apply(verdict)  # first, so the rules act on what the mail is
        verdict = self.rules.apply(message, verdict, folder, role)
        if match is not None and not found.suspicious:
            verdict = match.stand(verdict, self.rules.defaults)
        # A rule may have re-typed the mail, which decides whether it is seller mail.
        amazon = found.authenticated and verdict.type != "other"
        if verdict.amazon != amazon:  # a copy of the verdict costs more than the rest here
            verdict = replace(verdict, amazon=amazon)
        return self._safety(verdict, role)

    def _safety(self, verdict: Verdict, role: str) -> Verdict:
        if role != JUNK:
            return verdict
        if verdict.suspicious:
            return _keep_in_junk(verdict)
        if verdict.amazon and not any(a.kind in ("move", "rescue") for a in verdict.actions):
            return replace(
                verdict,
                actions=[*verdict.actions, Action("rescue", self.rescue_folder)],
                reasons=[*verdict.reasons, "genuine Amazon seller mail in junk: rescued"],
            )
        return verdict


def model_verdict(message: Message, prediction: Prediction, found: Assessment) -> Verdict:
    """What the model and the trust check say, before any rule."""
    if prediction.type not in TYPES:
        raise ModelError(f"classifier returned the unknown type '{prediction.type}'")
    severity = clamp_severity(prediction.type, prediction.severity)
    # A mail settled by its headers (triage.screen) says so instead of naming the model.
    settled = getattr(prediction, "reason", "")
    # The account's learned model (triage.learning) names itself; the shipped one is "model".
    by = getattr(prediction, "decided_by", "model")
    reasons = [settled or f"{by}: {prediction.type}, {severity} ({prediction.confidence:.2f})"]
    if severity != prediction.severity:
        reasons.append(f"a {prediction.type} is never {prediction.severity}: {severity}")
    if found.suspicious:
        reasons.append(f"suspicious: {found.reason}")
    # A stand-in classifier may not say; the shipped one marks an unsure critical.
    possibly = bool(getattr(prediction, "possibly_critical", False))
    return Verdict(
        type=prediction.type,
        severity=severity,
        confidence=float(prediction.confidence),
        suspicious=found.suspicious,
        amazon=found.authenticated and prediction.type != "other",
        reasons=reasons,
        order_id=message.order_id,
        decided_by="headers" if settled else by,
        possibly_critical=possibly,
        tags=[POSSIBLY_CRITICAL] if possibly else [],
    )


def _keep_in_junk(verdict: Verdict) -> Verdict:
    """Suspicious mail stays in junk whatever a rule asked."""
    refused = [a for a in verdict.actions if a.kind in ("move", "rescue")]
    if not refused:
        return verdict
    asked = ", ".join(a.describe() for a in refused)
    return replace(
        verdict,
        actions=[a for a in verdict.actions if a not in refused],
        reasons=[*verdict.reasons, f"ignored '{asked}': suspicious mail never leaves junk"],
    )


def own_mail(message: Message) -> Verdict:
    """The seller's own sent mail: kept only to see replies, never alerted or judged."""
    return Verdict(
        type="other",
        severity="low",
        confidence=1.0,
        reasons=["the seller's own sent mail: used to see replies to buyers"],
        actions=[Action("ignore")],
        order_id=message.order_id,
        error=message.error or None,
    )


def unreadable(message: Message) -> Verdict:
    """The verdict for a mail that could not be parsed: recorded, never acted on."""
    return Verdict(
        type="other",
        severity="low",
        confidence=0.0,
        reasons=[f"not classified: {message.error}"],
        error=message.error,
    )


def describe(verdict: Verdict) -> str:
    """One line for ``--dry-run``: what the mail is, who decided, what would be done."""
    what = f"{verdict.type}/{verdict.severity}"
    if verdict.suspicious:
        what += " SUSPICIOUS"
    if verdict.error:
        return f"{what} (unreadable: {verdict.error}) -> nothing"
    actions = ", ".join(a.describe() for a in verdict.actions) or "nothing"
    tags = f" [{', '.join(verdict.tags)}]" if verdict.tags else ""
    return f"{what}{tags} by {verdict.decided_by} -> {actions}"
