"""rules.yaml: each condition, the combinators, what a rule does, and the files refused."""

from __future__ import annotations

import textwrap
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from triage import cli
from triage.errors import RulesError
from triage.message import Message, parse
from triage.rules import Rules, SectionContext, load_rules, parse_rules
from triage.verdict import Action, Verdict

SHIPPED = Path(__file__).resolve().parent.parent / "rules.yaml"


def mail(
    subject: str = "Hello",
    body: str = "Just a note.",
    sender: str = '"Amazon Seller Central" <seller-notification@amazon.de>',
    **headers: str,
) -> Message:
    """A parsed message built from real RFC 5322 bytes."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "shop@example.com"
    msg["Subject"] = subject
    msg["Message-ID"] = "<1@example.com>"
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(body)
    return parse(msg.as_bytes())


def verdict(**fields: Any) -> Verdict:
    base: dict[str, Any] = {"type": "other", "severity": "low", "confidence": 0.8}
    return Verdict(**{**base, **fields})


def rules(text: str) -> Rules:
    return parse_rules(textwrap.dedent(text), "test.yaml")


def one_rule(match: str) -> Rules:
    """A file with one rule tagging ``hit`` when ``match`` (YAML flow mapping) holds."""
    return rules(f"version: 1\nrules:\n  - name: probe\n    match: {match}\n    tags: [hit]\n")


def hits(
    match: str, message: Message, folder: str = "INBOX", role: str = "inbox", **fields: Any
) -> bool:
    decided = one_rule(match).apply(message, verdict(**fields), folder, role)
    return "hit" in decided.tags


CONDITION_CASES = [
    # sender: address, domain (with subdomains, never as a substring), glob, regex
    ("{sender: seller-notification@amazon.de}", mail(), {}, True),
    ("{sender: other@amazon.de}", mail(), {}, False),
    ("{sender: amazon.de}", mail(), {}, True),
    ("{sender: amazon.de}", mail(sender="x@marketplace.amazon.de"), {}, True),
    ("{sender: amazon.de}", mail(sender="x@amazon.de.example.net"), {}, False),
    ("{sender: '*@amazon.*'}", mail(sender="x@amazon.fr"), {}, True),
    ("{sender: '*@amazon.*'}", mail(sender="x@amazon-support.fr"), {}, False),
    ("{sender: '/^cb-seller-\\w+@/'}", mail(sender="cb-seller-query@amazon.com"), {}, True),
    ("{sender: [a@b.example, amazon.de]}", mail(), {}, True),
    # sender_name, subject, body: case-insensitive substrings or regexes
    ("{sender_name: seller central}", mail(), {}, True),
    ("{sender_name: Performance}", mail(), {}, False),
    ("{subject: CLAIM}", mail(subject="A-to-z claim received"), {}, True),
    ("{subject: 'regex:^a-to-z'}", mail(subject="A-to-z claim received"), {}, True),
    ("{subject: '/^claim/'}", mail(subject="A-to-z claim received"), {}, False),
    ("{subject: [refund, claim]}", mail(subject="New claim"), {}, True),
    ("{body: 'please respond'}", mail(body="Please RESPOND by Friday."), {}, True),
    ("{body: 'please respond'}", mail(body="Nothing to do."), {}, False),
    # header: by name, with or without a pattern
    (
        "{header: {name: X-Space-Notification-Type, pattern: BBC_}}",
        mail(X_Space_Notification_Type="BBC_MESSAGE_SENT_TO_MERCHANT"),
        {},
        True,
    ),
    (
        "{header: {name: x-space-notification-type}}",
        mail(X_Space_Notification_Type="RETURN_REQUEST"),
        {},
        True,
    ),
    ("{header: {name: X-Space-Notification-Type}}", mail(), {}, False),
    ("{header: {name: Subject, pattern: '/order \\d+/'}}", mail(subject="Order 42"), {}, True),
    # any other header the mail carries, e.g. a helpdesk's or a supplier's own
    ("{header: {name: X-Mailer, pattern: ShipStation}}", mail(X_Mailer="ShipStation 4.2"), {},
     True),
    ("{header: {name: List-Unsubscribe}}", mail(List_Unsubscribe="<mailto:u@x.example>"), {},
     True),
    ("{header: {name: X-Mailer, pattern: ShipStation}}", mail(), {}, False),
    # what the model (or an earlier rule) said
    ("{type: claim}", mail(), {"type": "claim", "severity": "high"}, True),
    ("{type: [order, return]}", mail(), {"type": "claim", "severity": "high"}, False),
    ("{severity: [critical, high]}", mail(), {"type": "claim", "severity": "high"}, True),
    ("{severity: low}", mail(), {"type": "claim", "severity": "high"}, False),
    ("{confidence: {below: 0.6}}", mail(), {"confidence": 0.42}, True),
    ("{confidence: {below: 0.6}}", mail(), {"confidence": 0.6}, False),
    ("{confidence: {above: 0.5, below: 0.9}}", mail(), {"confidence": 0.7}, True),
    ("{confidence: {above: 0.9}}", mail(), {"confidence": 0.7}, False),
    # yes/no facts
    ("{has_order_id: true}", mail(subject="Order 302-1234567-7654321"), {}, True),
    ("{has_order_id: true}", mail(), {}, False),
    ("{has_order_id: false}", mail(), {}, True),
    ("{suspicious: true}", mail(), {"suspicious": True}, True),
    ("{suspicious: false}", mail(), {"suspicious": True}, False),
    ("{amazon: true}", mail(), {"amazon": True}, True),
    ("{amazon: true}", mail(), {"amazon": False}, False),
    # several keys in one mapping must all hold
    ("{type: claim, subject: claim}", mail(subject="claim"), {"type": "claim"}, True),
    ("{type: claim, subject: refund}", mail(subject="claim"), {"type": "claim"}, False),
    # combinators
    ("{any: [{subject: refund}, {subject: claim}]}", mail(subject="claim"), {}, True),
    ("{any: [{subject: refund}, {subject: order}]}", mail(subject="claim"), {}, False),
    ("{all: [{subject: claim}, {body: note}]}", mail(subject="claim"), {}, True),
    ("{all: [{subject: claim}, {body: urgent}]}", mail(subject="claim"), {}, False),
    ("{not: {subject: claim}}", mail(subject="claim"), {}, False),
    ("{not: {any: [{subject: x}, {not: {body: note}}]}}", mail(), {}, True),
]


@pytest.mark.parametrize(("match", "message", "fields", "expected"), CONDITION_CASES)
def test_condition(match: str, message: Message, fields: dict[str, Any], expected: bool) -> None:
    assert hits(match, message, **fields) is expected


@pytest.mark.parametrize(
    ("match", "folder", "role", "expected"),
    [
        ("{folder: junk}", "Spam", "junk", True),
        ("{folder: Spam}", "Spam", "junk", True),
        ("{folder: spam}", "Spam", "junk", True),
        ("{folder: [sent, inbox]}", "Spam", "junk", False),
        ("{folder: INBOX}", "INBOX", "inbox", True),
    ],
)
def test_folder_by_name_or_role(match: str, folder: str, role: str, expected: bool) -> None:
    assert hits(match, mail(), folder=folder, role=role) is expected


RULES = """\
version: 1
defaults:
  alert: [critical]
  ignore: [low]
rules:
  - name: claims-to-phone
    match:
      type: claim
    severity: critical
    tags: [money]
    actions: [alert, flag]
  - name: atoz-folder
    match:
      subject: a-to-z
    tags: [atoz]
    actions: [{move: Claims}]
  - name: supplier
    match:
      sender: supplier.example
    type: other
    severity: high
    actions: [digest]
    stop: true
  - name: never-reached-after-stop
    match:
      sender: supplier.example
    actions: [ignore]
  - name: retype-to-return
    match:
      subject: return request
    type: return
"""


def test_rule_overrides_model_and_records_why() -> None:
    decided = rules(RULES).apply(
        mail(subject="A-to-z claim"), verdict(type="claim", severity="high")
    )
    assert decided.severity == "critical"
    assert decided.decided_by == "rule:atoz-folder"
    assert decided.tags == ["money", "atoz"]
    assert decided.actions == [Action("alert"), Action("flag"), Action("move", "Claims")]
    assert decided.reasons[0].startswith("rule 'claims-to-phone': type is claim")
    assert "severity critical" in decided.reasons[0]
    assert decided.reasons[1].startswith("rule 'atoz-folder': subject contains 'a-to-z'")


def test_stop_ends_evaluation_and_rules_may_go_beyond_the_policy_table() -> None:
    decided = rules(RULES).apply(mail(sender="ann@supplier.example"), verdict())
    assert (decided.type, decided.severity) == ("other", "high")
    assert decided.actions == [Action("digest")]
    assert decided.decided_by == "rule:supplier"


def test_retyping_clamps_severity_to_the_new_type() -> None:
    decided = rules(RULES).apply(
        mail(subject="Return request"), verdict(type="order", severity="high")
    )
    assert (decided.type, decided.severity) == ("return", "normal")


@pytest.mark.parametrize(
    ("severity", "action"),
    [("critical", "alert"), ("high", "digest"), ("normal", "digest"), ("low", "ignore")],
)
def test_defaults_choose_how_to_notify(severity: str, action: str) -> None:
    decided = rules(RULES).apply(mail(), verdict(type="feedback", severity=severity))
    assert decided.actions == [Action(action)]
    assert decided.decided_by == "model"
    assert decided.reasons == [f"defaults: {severity} -> {action}"]


@pytest.mark.parametrize(
    ("severity", "action"),
    [("critical", "alert"), ("high", "digest"), ("normal", "digest"), ("low", "digest")],
)
def test_without_defaults_critical_alerts_and_the_rest_waits(severity: str, action: str) -> None:
    decided = Rules().apply(mail(), verdict(type="feedback", severity=severity))
    assert decided.actions == [Action(action)]


def test_a_later_notify_choice_replaces_an_earlier_one() -> None:
    text = """\
    version: 1
    rules:
      - {name: first, match: {subject: x}, actions: [alert, flag]}
      - {name: second, match: {subject: x}, actions: [ignore]}
    """
    decided = rules(text).apply(mail(subject="x"), verdict())
    assert decided.actions == [Action("flag"), Action("ignore")]


def test_any_explains_the_branch_that_matched() -> None:
    decided = one_rule("{any: [{subject: refund}, {body: note}]}").apply(mail(), verdict())
    assert decided.reasons[0] == "rule 'probe': body contains 'note' -> tags hit"


def test_apply_leaves_the_given_verdict_alone() -> None:
    before = verdict(type="claim", severity="high")
    rules(RULES).apply(mail(), before)
    assert before.actions == [] and before.tags == [] and before.decided_by == "model"


REFUSED = [
    (
        "YAML syntax",
        "version: 1\nrules:\n  - name: x\n    match: {subject: a\n",
        4,
        "not valid YAML",
    ),
    ("tab indentation", "version: 1\nrules:\n\t- name: x\n", 3, "not valid YAML"),
    (
        "unknown top key",
        "version: 1\nrulez: []\n",
        2,
        "unknown key 'rulez' (expected one of: version, defaults, rules",
    ),
    (
        "unknown condition",
        "version: 1\nrules:\n  - name: x\n    match:\n      subjet: a\n    tags: [t]\n",
        5,
        "unknown condition 'subjet' (expected one of: subject",
    ),
    (
        "unknown rule key",
        "version: 1\nrules:\n  - name: x\n    match: {subject: a}\n    tag: [t]\n",
        5,
        "unknown key 'tag'",
    ),
    (
        "bad type name",
        "version: 1\nrules:\n  - name: x\n    match: {subject: a}\n    type: claims\n",
        5,
        "unknown type 'claims'",
    ),
    (
        "bad type in match",
        "version: 1\nrules:\n  - name: x\n    match:\n      type: [claim, refund]\n    tags: [t]\n",
        5,
        "unknown type 'refund'",
    ),
    (
        "bad severity",
        "version: 1\nrules:\n  - name: x\n    match: {severity: urgent}\n    tags: [t]\n",
        4,
        "unknown severity 'urgent'",
    ),
    (
        "bad regex",
        "version: 1\nrules:\n  - name: x\n    match:\n      any:\n"
        "        - subject: '/(unclosed/'\n    tags: [t]\n",
        6,
        "bad regex",
    ),
    (
        "confidence not a number",
        "version: 1\nrules:\n  - name: x\n    match:\n"
        "      confidence: {below: high}\n    tags: [t]\n",
        5,
        "expected a number",
    ),
    (
        "confidence out of range",
        "version: 1\nrules:\n  - name: x\n    match:\n"
        "      confidence: {above: 60}\n    tags: [t]\n",
        5,
        "from 0.0 to 1.0",
    ),
    (
        "flag not a boolean",
        "version: 1\nrules:\n  - name: x\n    match:\n      suspicious: maybe\n    tags: [t]\n",
        5,
        "expected true or false",
    ),
    (
        "stop not a boolean",
        "version: 1\nrules:\n  - name: x\n    match: {subject: a}\n    stop: 1\n",
        5,
        "expected true or false",
    ),
    (
        "unknown action",
        "version: 1\nrules:\n  - name: x\n    match: {subject: a}\n    actions: [alert, page]\n",
        5,
        "unknown action 'page'",
    ),
    (
        "move without folder",
        "version: 1\nrules:\n  - name: x\n    match: {subject: a}\n    actions:\n      - move\n",
        6,
        "'move' needs a folder",
    ),
    (
        "ignore with alert",
        "version: 1\nrules:\n  - name: x\n    match: {subject: a}\n    actions: [ignore, alert]\n",
        5,
        "'ignore' cannot go with",
    ),
    (
        "rule without name",
        "version: 1\nrules:\n  - match: {subject: a}\n    tags: [t]\n",
        3,
        "missing key 'name'",
    ),
    (
        "rule that does nothing",
        "version: 1\nrules:\n  - name: x\n    match: {subject: a}\n",
        3,
        "a rule must set",
    ),
    (
        "empty match",
        "version: 1\nrules:\n  - name: x\n    match: {}\n    tags: [t]\n",
        4,
        "expected at least one condition",
    ),
    ("rules not a list", "version: 1\nrules:\n  name: x\n", 3, "expected a list"),
    (
        "duplicate rule name",
        "version: 1\nrules:\n  - {name: x, match: {subject: a}, tags: [t]}\n"
        "  - {name: x, match: {subject: b}, tags: [t]}\n",
        4,
        "duplicate rule name 'x'",
    ),
    (
        "duplicate key",
        "version: 1\nrules:\n  - name: x\n    match: {subject: a}\n    tags: [t]\n    name: y\n",
        6,
        "duplicate key 'name'",
    ),
    ("wrong version", "version: 2\nrules: []\n", 1, "unsupported version"),
    ("missing version", "rules: []\n", 1, "missing key 'version'"),
    (
        "defaults severity twice",
        "version: 1\ndefaults:\n  alert: [critical]\n  digest: [critical]\n",
        4,
        "listed twice",
    ),
    ("defaults bad kind", "version: 1\ndefaults:\n  page: [critical]\n", 3, "unknown key 'page'"),
    (
        "pattern of the wrong type",
        "version: 1\nrules:\n  - name: x\n    match:\n      subject: {text: a}\n    tags: [t]\n",
        5,
        "expected a pattern, got a mapping",
    ),
]


@pytest.mark.parametrize(
    ("text", "line", "reason"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED]
)
def test_refused_files_name_file_and_line(
    tmp_path: Path, text: str, line: int, reason: str
) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(RulesError) as refused:
        load_rules(path)
    assert str(refused.value).startswith(f"{path}:{line}: ")
    assert reason in refused.value.reason


def test_unknown_key_suggests_the_near_one() -> None:
    with pytest.raises(RulesError, match="did you mean 'subject'"):
        one_rule("{subjet: a}")


@pytest.mark.parametrize(
    ("content", "reason"),
    [(None, "cannot read"), (b"version: 1\nrules: []\n\xff\xfe", "not UTF-8"), (b"", "empty")],
)
def test_unreadable_files_are_refused(tmp_path: Path, content: bytes | None, reason: str) -> None:
    path = tmp_path / "rules.yaml"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(RulesError, match=reason) as refused:
        load_rules(path)
    assert refused.value.path == str(path)


# --- hostile files and hostile mail -------------------------------------------------------

ALIAS_BOMB = "version: 1\na0: &a0 [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]\n" for i in range(1, 40)
)
HOSTILE = [
    ("alias bomb", ALIAS_BOMB, 3, "aliases (*name) are not allowed"),
    (
        "backreference",
        "version: 1\nrules:\n  - name: x\n    match: {subject: '/(a)\\1/'}\n    tags: [t]\n",
        4,
        "backreferences and lookarounds are not supported",
    ),
    (
        "lookahead",
        "version: 1\nrules:\n  - name: x\n    match: {body: '/(?=refund)/'}\n    tags: [t]\n",
        4,
        "backreferences and lookarounds are not supported",
    ),
    (
        "too many rules",
        "version: 1\nrules:\n"
        + "".join(f"  - {{name: r{i}, match: {{subject: s}}, tags: [t]}}\n" for i in range(1001)),
        1003,
        "too many rules: 1,001",
    ),
]


@pytest.mark.parametrize(
    ("text", "line", "reason"), [c[1:] for c in HOSTILE], ids=[c[0] for c in HOSTILE]
)
def test_hostile_files_are_refused_at_once(
    tmp_path: Path, text: str, line: int, reason: str
) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(text, encoding="utf-8")
    started = time.monotonic()
    with pytest.raises(RulesError) as refused:
        load_rules(path)
    assert time.monotonic() - started < 2
    assert str(refused.value).startswith(f"{path}:{line}: ")
    assert reason in refused.value.reason


def test_a_huge_file_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    with path.open("w", encoding="utf-8") as out:
        out.write("version: 1\nrules:\n")
        out.write("# padding\n" * 5_000_000)  # 50 MB
    started = time.monotonic()
    with pytest.raises(RulesError, match="too large: 50,000,018 bytes"):
        load_rules(path)
    assert time.monotonic() - started < 1


def test_a_catastrophic_regex_runs_in_linear_time() -> None:
    rules = parse_rules(
        "version: 1\nrules:\n  - name: x\n    match: {subject: '/(a+)+$/'}\n"
        "    severity: critical\n"
    )
    hostile = mail(subject="a" * 36 + "!", body="a" * 5000 + "!")
    started = time.monotonic()
    decided = rules.apply(hostile, verdict())
    assert time.monotonic() - started < 1
    assert decided.severity == "low"  # no match, and no freeze
    assert rules.apply(mail(subject="aaaa"), verdict(type="claim")).severity == "critical"


# --- sections owned by other modules ---------------------------------------------------


def load_schedule(value: Any, ctx: SectionContext) -> list[str]:
    if value is None:
        return ["08:00"]
    for index, entry in enumerate(value["digests"]):
        if ":" not in str(entry["at"]):
            ctx.error(f"schedule.digests.{index}.at", "expected HH:MM")
    return [str(entry["at"]) for entry in value["digests"]]


SCHEDULE = """\
version: 1
schedule:
  digests:
    - at: "08:00"
    - at: noon
"""


def test_section_loader_errors_name_the_line() -> None:
    with pytest.raises(RulesError) as refused:
        parse_rules(SCHEDULE, "r.yaml", sections={"schedule": load_schedule})
    assert str(refused.value) == "r.yaml:5: expected HH:MM"


def test_section_paths_may_be_relative_to_the_section() -> None:
    def loader(value: Any, ctx: SectionContext) -> int | None:
        return ctx.line_of("digests.1") if value else None

    loaded = parse_rules(SCHEDULE, "r.yaml", sections={"schedule": loader})
    assert loaded.section("schedule") == 5


def test_section_gets_its_value_or_gives_its_default() -> None:
    present = parse_rules(SCHEDULE.replace("noon", '"12:00"'), sections={"schedule": load_schedule})
    absent = parse_rules("version: 1\n", sections={"schedule": load_schedule})
    assert present.section("schedule") == ["08:00", "12:00"]
    assert absent.section("schedule") == ["08:00"]


def test_section_loader_slips_become_rules_errors() -> None:
    with pytest.raises(RulesError, match=r"r\.yaml:2: section 'schedule'"):
        parse_rules("version: 1\nschedule: 3\n", "r.yaml", sections={"schedule": load_schedule})


def test_unregistered_sections_are_refused() -> None:
    with pytest.raises(RulesError, match="unknown key 'schedule'"):
        parse_rules(SCHEDULE, "r.yaml", sections={})


# --- the shipped file and the command ----------------------------------------------------


def test_shipped_rules_load() -> None:
    assert len(load_rules(SHIPPED)) >= 4


def test_shipped_worked_examples_load_when_uncommented(tmp_path: Path) -> None:
    text = SHIPPED.read_text(encoding="utf-8")
    head, _, examples = text.partition("# --- Worked examples")
    lines = examples.splitlines()[1:]
    yaml_lines = [line for line in lines if line.startswith(("  # - ", "  #   "))]
    uncommented = [line.replace("  # ", "  ", 1) for line in yaml_lines]
    path = tmp_path / "rules.yaml"
    path.write_text(head.rstrip() + "\n" + "\n".join(uncommented) + "\n", encoding="utf-8")
    loaded = load_rules(path)
    names = [rule.name for rule in loaded.rules]
    assert {"ignore-marketing", "supplier-is-high"} <= set(names)
    supplier = loaded.apply(mail(sender="x@orders.supplier.example"), verdict())
    assert supplier.severity == "high"
    assert Action("move", "Suppliers") in supplier.actions
    # The catch-all example runs last: only claims and critical account mail still alert.
    feedback = loaded.apply(mail(), verdict(type="feedback", severity="high"))
    assert feedback.actions == [Action("digest")]


def test_check_rules_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check-rules", str(SHIPPED)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{SHIPPED}: OK (") and out.rstrip().endswith("rules)")


def test_check_rules_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("version: 1\nrules:\n  - name: x\n    match: {subjet: a}\n    tags: [t]\n")
    assert cli.main(["check-rules", str(path)]) == 1
    assert capsys.readouterr().out.startswith(f"{path}:4: unknown condition 'subjet'")
