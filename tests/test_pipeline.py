"""The pipeline: model, trust and rules into verdicts, and the safety no rule can undo."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import pytest

from triage.errors import ModelError
from triage.message import Message, parse
from triage.pipeline import Pipeline, describe
from triage.rules import Rules, load_rules, parse_rules
from triage.verdict import Action

SHIPPED = Path(__file__).resolve().parent.parent / "rules.yaml"

PASS = ("mx.shop.example; spf=pass smtp.mailfrom={d}; dkim=pass header.d={d};"
        " dmarc=pass header.from={d}")


def mail(sender: str, subject: str, body: str = "Please see Seller Central.",
         authenticated_as: str | None = None) -> Message:
    """A parsed mail; ``authenticated_as`` adds the receiving server's passing results."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "shop@example.com"
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{abs(hash((sender, subject)))}@mail.example>"
    if authenticated_as:
        msg["Authentication-Results"] = PASS.format(d=authenticated_as)
    msg.set_content(body)
    return parse(msg.as_bytes())


def amazon(subject: str, tld: str = "de", local: str = "seller-notification") -> Message:
    return mail(f'"Amazon Seller Central" <{local}@amazon.{tld}>', subject,
                authenticated_as=f"amazon.{tld}")


def phishing(subject: str) -> Message:
    return mail('"Amazon Seller Central" <security@amaz0n-seller-support.com>', subject,
                body="Your Amazon seller account is locked. Log in at http://amaz0n.example/",
                authenticated_as="amaz0n-seller-support.com")


@dataclass(frozen=True)
class Prediction:
    type: str
    severity: str
    confidence: float = 0.9


class StandInClassifier:
    """Answers what it was told for each subject; remembers the batches it was given."""

    def __init__(self, answers: dict[str, Prediction] | None = None,
                 default: Prediction = Prediction("other", "low")) -> None:
        self.answers = answers or {}
        self.default = default
        self.batches: list[int] = []

    def predict(self, messages: Sequence[Message], /) -> list[Prediction]:
        self.batches.append(len(messages))
        return [self.answers.get(m.subject, self.default) for m in messages]


def rules(text: str) -> Rules:
    return parse_rules(textwrap.dedent(text), "test.yaml")


MOVE_ALL_TO_INBOX = rules("""\
    version: 1
    rules:
      - name: everything-to-inbox
        match: {folder: junk}
        actions: [{move: INBOX}]
""")


def test_genuine_claim_is_decided_from_model_trust_and_rules() -> None:
    claim = amazon("A-to-z Guarantee claim received for order 302-1234567-7654321",
                   tld="com", local="atoz-guarantee-no-reply")
    pipe = Pipeline(StandInClassifier(default=Prediction("claim", "high", 0.8)),
                    load_rules(SHIPPED))
    (verdict,) = pipe.decide([claim])
    assert (verdict.type, verdict.severity) == ("claim", "critical")
    assert verdict.amazon and not verdict.suspicious
    assert verdict.order_id == "302-1234567-7654321"
    assert verdict.decided_by == "rule:claim-needs-answer-is-critical"
    assert verdict.reasons[0] == "model: claim, high (0.80)"
    assert Action("alert") in verdict.actions
    assert verdict.confidence == pytest.approx(0.8)


def test_model_is_called_once_per_batch_without_unreadable_mail() -> None:
    model = StandInClassifier()
    broken = Message(error="unreadable message: no headers")
    verdicts = Pipeline(model).decide([amazon("one"), broken, amazon("two")])
    assert model.batches == [2]
    assert [v.error for v in verdicts] == [None, "unreadable message: no headers", None]


def test_unreadable_mail_is_recorded_and_left_alone() -> None:
    (verdict,) = Pipeline(StandInClassifier(), load_rules(SHIPPED)).decide(
        [Message(error="unreadable message: bad MIME")], folder="Spam", role="junk")
    assert (verdict.type, verdict.severity) == ("other", "low")
    assert verdict.error == "unreadable message: bad MIME"
    assert verdict.actions == []
    assert "unreadable" in describe(verdict)


def test_no_mail_no_model_call() -> None:
    model = StandInClassifier()
    assert Pipeline(model).decide([]) == []
    assert model.batches == []


@pytest.mark.parametrize(
    ("predicted", "expected"),
    [
        (Prediction("buyer_message", "low"), "high"),
        (Prediction("order", "normal"), "high"),
        (Prediction("return", "critical"), "normal"),
        (Prediction("marketing", "high"), "low"),
        (Prediction("claim", "critical"), "critical"),
        (Prediction("payment", "critical"), "high"),
    ],
)
def test_model_severity_is_clamped_to_the_type(predicted: Prediction, expected: str) -> None:
    (verdict,) = Pipeline(StandInClassifier(default=predicted)).decide([amazon("x")])
    assert verdict.severity == expected


@pytest.mark.parametrize(
    ("message", "predicted", "is_amazon"),
    [
        (amazon("Your payment is on its way"), Prediction("payment", "low"), True),
        (amazon("Your order has shipped"), Prediction("other", "low"), False),
        (phishing("Your payment is on hold"), Prediction("payment", "high"), False),
        (mail("Anna <anna@supplier.example>", "Invoice"), Prediction("other", "low"), False),
    ],
)
def test_amazon_means_authenticated_seller_mail(message: Message, predicted: Prediction,
                                               is_amazon: bool) -> None:
    (verdict,) = Pipeline(StandInClassifier(default=predicted)).decide([message])
    assert verdict.amazon is is_amazon


def test_genuine_amazon_mail_in_junk_is_rescued() -> None:
    pipe = Pipeline(StandInClassifier(default=Prediction("payment", "low")), load_rules(SHIPPED),
                    rescue_folder="INBOX")
    (verdict,) = pipe.decide([amazon("Your payment is on its way")], "Spam", "junk")
    assert Action("rescue", "INBOX") in verdict.actions
    assert "genuine Amazon seller mail in junk: rescued" in verdict.reasons


@pytest.mark.parametrize("role", ["inbox", "sent", "extra"])
def test_rescue_only_happens_in_junk(role: str) -> None:
    pipe = Pipeline(StandInClassifier(default=Prediction("payment", "low")))
    (verdict,) = pipe.decide([amazon("Your payment is on its way")], "Folder", role)
    assert all(a.kind != "rescue" for a in verdict.actions)


@pytest.mark.parametrize("rules_", [Rules(), MOVE_ALL_TO_INBOX], ids=["no rules", "move rule"])
def test_suspicious_mail_never_leaves_junk(rules_: Rules) -> None:
    lure = phishing("Your account has been suspended")
    pipe = Pipeline(StandInClassifier(default=Prediction("account_health", "critical")), rules_)
    (verdict,) = pipe.decide([lure], "Junk", "junk")
    assert verdict.suspicious
    assert all(a.kind not in ("move", "rescue") for a in verdict.actions)


def test_a_refused_move_says_why() -> None:
    pipe = Pipeline(StandInClassifier(default=Prediction("claim", "critical")), MOVE_ALL_TO_INBOX)
    (verdict,) = pipe.decide([phishing("A-to-z claim received")], "Junk", "junk")
    assert "ignored 'move to INBOX': suspicious mail never leaves junk" in verdict.reasons


def test_a_rule_may_move_genuine_mail_out_of_junk_instead_of_the_rescue() -> None:
    pipe = Pipeline(StandInClassifier(default=Prediction("order", "low")), MOVE_ALL_TO_INBOX)
    (verdict,) = pipe.decide([amazon("Sold, ship now")], "Junk", "junk")
    assert [a for a in verdict.actions if a.kind in ("move", "rescue")] == [Action("move", "INBOX")]


def test_mail_a_rule_calls_other_is_not_rescued() -> None:
    retype = rules("""\
        version: 1
        rules:
          - {name: not-seller-mail, match: {subject: newsletter}, type: other}
    """)
    pipe = Pipeline(StandInClassifier(default=Prediction("marketing", "low")), retype)
    (verdict,) = pipe.decide([amazon("Seller newsletter")], "Junk", "junk")
    assert not verdict.amazon
    assert all(a.kind != "rescue" for a in verdict.actions)


def test_suspicious_mail_is_never_pushed_as_urgent_by_the_shipped_rules() -> None:
    pipe = Pipeline(StandInClassifier(default=Prediction("account_health", "critical")),
                    load_rules(SHIPPED))
    (verdict,) = pipe.decide([phishing("Your account has been suspended")])
    assert verdict.suspicious
    assert "suspected-phishing" in verdict.tags
    assert verdict.actions == [Action("digest")]
    assert any(r.startswith("suspicious: ") for r in verdict.reasons)


@pytest.mark.parametrize(
    ("predicted", "error"),
    [(Prediction("refund", "low"), "unknown type 'refund'")],
)
def test_a_classifier_answering_outside_the_taxonomy_is_refused(predicted: Prediction,
                                                                error: str) -> None:
    with pytest.raises(ModelError, match=error):
        Pipeline(StandInClassifier(default=predicted)).decide([amazon("x")])


def test_a_classifier_losing_messages_is_refused() -> None:
    class Lossy(StandInClassifier):
        def predict(self, messages: Sequence[Message], /) -> list[Prediction]:
            return super().predict(messages)[:-1]

    with pytest.raises(ModelError, match="1 predictions for 2 messages"):
        Pipeline(Lossy()).decide([amazon("a"), amazon("b")])


def test_describe_for_dry_run() -> None:
    pipe = Pipeline(StandInClassifier(default=Prediction("payment", "low")), load_rules(SHIPPED))
    (verdict,) = pipe.decide([amazon("Your payment is on its way")], "Spam", "junk")
    assert describe(verdict) == "payment/low by model -> digest, rescue"


# The shipped safety nets: genuine Amazon mail the model typed right but under-rated
# becomes critical; decisions, closures and look-alikes do not.
SAFETY_NETS = [
    ("account_health", "high", "Your Amazon selling account has been deactivated", "critical"),
    ("account_health", "normal", "Your account is at risk of deactivation", "critical"),
    ("account_health", "high", "Ihr Amazon-Verkäuferkonto wurde deaktiviert", "critical"),
    ("account_health", "high", "Kontozustand: Ihr Konto ist gefährdet", "critical"),
    ("account_health", "high", "Votre compte vendeur Amazon a été désactivé", "critical"),
    ("account_health", "high", "Il tuo account venditore è stato sospeso", "critical"),
    ("account_health", "high", "Tu cuenta de vendedor ha sido suspendida", "critical"),
    ("account_health", "normal", "Your selling privileges have been reinstated", "normal"),
    ("account_health", "normal", "Ihr Verkäuferkonto wurde reaktiviert", "normal"),
    ("account_health", "high", "Your late response rate is above target", "high"),
    ("claim", "high", "A-to-z Guarantee claim received for order 302-1234567-7654321",
     "critical"),
    ("claim", "normal", "Chargeback notification for order 302-1234567-7654321 - response "
     "required", "critical"),
    ("claim", "high", "Rückbuchungsanfrage: Bitte antworten Sie innerhalb von 7 Tagen",
     "critical"),
    ("claim", "high", "Nouvelle réclamation A à Z – votre réponse est requise", "critical"),
    ("claim", "high", "Richiesta di informazioni: reclamo dalla Garanzia dalla A alla Z",
     "critical"),
    ("claim", "high", "Solicitud de información: reclamación de la Garantía de la A a la Z",
     "critical"),
    ("claim", "high", "A-to-z Guarantee claim decision for order 302-1234567-7654321", "high"),
    ("claim", "normal", "Claim closed in your favour: 302-1234567-7654321", "normal"),
    ("claim", "high", "Rétrofacturation débitée : commande 302-1234567-7654321", "high"),
    ("policy", "high", "Your listing has been removed: B0ABCDEFGH", "critical"),
    ("policy", "high", "Notice: Policy Warning", "high"),
    ("marketing", "low", "Webinar: avoid account suspension", "low"),
    ("feedback", "normal", "New 1-star feedback for order 302-1234567-7654321", "high"),
    ("feedback", "normal", "Sie haben eine negative Bewertung erhalten", "high"),
    ("feedback", "low", "New 5-star feedback for order 302-1234567-7654321", "low"),
    ("feedback", "normal", "Outcome of your request to remove 1-star feedback", "normal"),
    ("buyer_message", "low", "Inquiry from Amazon customer Jane (Order: 302-1234567-7654321)",
     "high"),
]


@pytest.mark.parametrize(("type_", "model_says", "subject", "expected"), SAFETY_NETS)
def test_shipped_safety_nets(type_: str, model_says: str, subject: str, expected: str) -> None:
    pipe = Pipeline(StandInClassifier(default=Prediction(type_, model_says)), load_rules(SHIPPED))
    (verdict,) = pipe.decide([amazon(subject)])
    assert verdict.severity == expected


@pytest.mark.parametrize(
    ("model_says", "sender", "subject", "expected"),
    [
        ("order", "atoz-guarantee-no-reply", "Reclamo relativo alla Garanzia dalla A alla Z per "
         "l'ordine 302-1234567-7654321", ("claim", "critical")),
        ("inventory", "seller-notification", "Richiesta SAFE-T: servono ulteriori informazioni",
         ("claim", "critical")),
        ("order", "seller-performance", "Tu cuenta corre el riesgo de ser desactivada",
         ("account_health", "critical")),
        ("order", "seller-notification", "Ihr Konto ist gefährdet, deaktiviert zu werden",
         ("account_health", "critical")),
        ("marketing", "seller-news", "Webinar: how to avoid account suspension",
         ("marketing", "low")),
        ("order", "seller-notification", "Sold, ship now: 302-1234567-7654321", ("order", "high")),
    ],
)
def test_shipped_rules_correct_a_mistyped_notice(model_says: str, sender: str, subject: str,
                                                 expected: tuple[str, str]) -> None:
    predicted = Prediction(model_says, "high")
    pipe = Pipeline(StandInClassifier(default=predicted), load_rules(SHIPPED))
    (verdict,) = pipe.decide([amazon(subject, local=sender)])
    assert (verdict.type, verdict.severity) == expected


def test_safety_nets_do_not_trust_look_alikes() -> None:
    pipe = Pipeline(StandInClassifier(default=Prediction("account_health", "high")),
                    load_rules(SHIPPED))
    (verdict,) = pipe.decide([phishing("Your Amazon selling account has been deactivated")])
    assert verdict.severity == "high"
    assert not verdict.amazon


def test_with_the_real_model() -> None:
    model = pytest.importorskip("triage.model")
    try:
        classifier = model.Classifier.load()
    except ModelError as exc:
        pytest.skip(f"no trained model: {exc}")
    claim = amazon("A-to-z Guarantee claim received for order 302-1234567-7654321",
                   tld="com", local="atoz-guarantee-no-reply")
    (verdict,) = Pipeline(classifier, load_rules(SHIPPED)).decide([claim])
    assert verdict.type == "claim"
    assert verdict.severity == "critical"
