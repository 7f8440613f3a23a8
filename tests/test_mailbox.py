"""The mailbox interface against a real Dovecot server (and role naming as a table)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import dovecot as dovecot_lib
import pytest

from triage.errors import ConfigError, LoginError, MailboxError
from triage.mailbox import Mailbox, assign_roles
from triage.settings import ImapSettings


def message(subject: str, body: str = "Hello.", size: int = 0) -> bytes:
    padding = ("x" * 76 + "\r\n") * (size // 78)
    return (
        f"From: seller-notification@amazon.com\r\nTo: seller@example.com\r\n"
        f"Subject: {subject}\r\nMessage-ID: <{subject.replace(' ', '.')}@example.com>\r\n"
        f"\r\n{body}\r\n{padding}"
    ).encode()


def roles(folders: list) -> dict[str, str]:
    return {folder.name: folder.role for folder in folders}


@pytest.fixture
def mailbox(dovecot: dovecot_lib.Account) -> Iterator[Mailbox]:
    with Mailbox(dovecot.imap_settings()) as box:
        yield box


# -- folder roles --------------------------------------------------------------


def test_roles_come_from_special_use_and_settings(dovecot: dovecot_lib.Account) -> None:
    dovecot.create_folder("Orders")
    dovecot.create_folder("Archive")
    with Mailbox(dovecot.imap_settings(folders=("Orders",))) as box:
        found = roles(box.folders())
        watched = [folder.name for folder in box.watched()]
    assert found == {
        "INBOX": "inbox",
        "Junk": "junk",
        "Sent": "sent",
        "Orders": "extra",
        "Archive": "other",
    }
    assert watched == ["INBOX", "Junk", "Sent", "Orders"]


def test_roles_by_name_when_the_server_marks_nothing(dovecot_servers) -> None:
    account = dovecot_servers.account(special_use=False)
    with Mailbox(account.imap_settings()) as box:
        found = roles(box.folders())
    assert found == {"INBOX": "inbox", "Bulk Mail": "junk", "Sent Items": "sent"}


def test_configured_junk_folder_wins_over_special_use(dovecot: dovecot_lib.Account) -> None:
    dovecot.create_folder("Spam")
    with Mailbox(dovecot.imap_settings(junk_folder="Spam")) as box:
        found = roles(box.folders())
    assert found["Spam"] == "junk"
    assert found["Junk"] == "other"


def test_configured_folder_missing_on_server_is_a_config_error(
    dovecot: dovecot_lib.Account,
) -> None:
    with (
        Mailbox(dovecot.imap_settings(folders=("Nowhere",))) as box,
        pytest.raises(ConfigError, match="Nowhere"),
    ):
        box.folders()


SETTINGS = ImapSettings(host="imap.example.com", user="seller", password="secret")
NO_FLAGS: tuple[bytes, ...] = ()


@pytest.mark.parametrize(
    ("listing", "expected"),
    [
        pytest.param(
            [(NO_FLAGS, b"/", "INBOX"), ((b"\\HasNoChildren",), b"/", "[Gmail]/Spam")],
            {"INBOX": "inbox", "[Gmail]/Spam": "junk"},
            id="gmail-spam",
        ),
        pytest.param(
            [
                (NO_FLAGS, b".", "INBOX"),
                (NO_FLAGS, b".", "INBOX.Junk"),
                (NO_FLAGS, b".", "INBOX.Sent"),
            ],
            {"INBOX": "inbox", "INBOX.Junk": "junk", "INBOX.Sent": "sent"},
            id="courier-prefix",
        ),
        pytest.param(
            [
                (NO_FLAGS, b"/", "Inbox"),
                (NO_FLAGS, b"/", "Junk E-mail"),
                (NO_FLAGS, b"/", "Sent Items"),
            ],
            {"Inbox": "inbox", "Junk E-mail": "junk", "Sent Items": "sent"},
            id="exchange-names",
        ),
        pytest.param(
            [(NO_FLAGS, b"/", "INBOX"), (NO_FLAGS, b"/", "Bulk Mail")],
            {"INBOX": "inbox", "Bulk Mail": "junk"},
            id="yahoo-bulk",
        ),
        pytest.param(
            [
                (NO_FLAGS, b"/", "INBOX"),
                (NO_FLAGS, b"/", "Spam"),
                ((b"\\Junk",), b"/", "Quarantine"),
            ],
            {"INBOX": "inbox", "Spam": "other", "Quarantine": "junk"},
            id="special-use-beats-name",
        ),
        pytest.param(
            [(NO_FLAGS, b"/", "INBOX"), ((b"\\Noselect",), b"/", "Junk"), (NO_FLAGS, b"/", "Spam")],
            {"INBOX": "inbox", "Junk": "other", "Spam": "junk"},
            id="noselect-skipped",
        ),
        pytest.param(
            [(NO_FLAGS, b"/", "INBOX"), (NO_FLAGS, b"/", "Receipts")],
            {"INBOX": "inbox", "Receipts": "other"},
            id="no-junk-at-all",
        ),
    ],
)
def test_roles_by_name(listing: list, expected: dict[str, str]) -> None:
    assert roles(assign_roles(listing, SETTINGS)) == expected


# -- reading -------------------------------------------------------------------


def test_fetch_returns_the_message_and_does_not_mark_it_read(
    dovecot: dovecot_lib.Account, mailbox: Mailbox
) -> None:
    raw = message("Your listing was removed")
    received = datetime(2024, 3, 1, 9, 30, tzinfo=UTC)
    uid = dovecot.append("INBOX", raw, date=received)

    [fetched] = mailbox.fetch("INBOX", [uid])

    assert (fetched.uid, fetched.raw, fetched.size, fetched.truncated) == (
        uid,
        raw,
        len(raw),
        False,
    )
    assert fetched.internaldate == received
    assert "\\Seen" not in dovecot.flags("INBOX", uid)


def test_fetch_caps_the_bytes_of_a_big_message(dovecot: dovecot_lib.Account) -> None:
    cap = 64 * 1024
    big = dovecot.append("INBOX", message("Invoice attached", size=5 * 1024 * 1024))
    small = dovecot.append("INBOX", message("Short note"))
    with Mailbox(dovecot.imap_settings(max_fetch_bytes=cap)) as box:
        fetched = {f.uid: f for f in box.fetch("INBOX", [big, small])}

    assert len(fetched[big].raw) <= cap
    assert fetched[big].size >= 5 * 1024 * 1024
    assert fetched[big].truncated
    assert not fetched[small].truncated


def test_fetch_memory_stays_bounded_by_the_cap(dovecot: dovecot_lib.Account) -> None:
    cap = 64 * 1024
    uids = [dovecot.append("INBOX", message(f"Report {n}", size=5 * 1024 * 1024)) for n in range(3)]
    with Mailbox(dovecot.imap_settings(max_fetch_bytes=cap, fetch_batch=1)) as box:
        tracemalloc.start()
        try:
            sizes = [len(fetched.raw) for fetched in box.fetch("INBOX", uids)]
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert sizes == [cap, cap, cap]
    assert peak < 1024 * 1024  # never a whole 5 MB message in memory


def test_fetch_in_small_batches_keeps_uid_order_and_skips_gone_uids(
    dovecot: dovecot_lib.Account,
) -> None:
    uids = [dovecot.append("Junk", message(f"Message {n}")) for n in range(5)]
    with Mailbox(dovecot.imap_settings(fetch_batch=2)) as box:
        fetched = list(box.fetch("Junk", [*reversed(uids), 999]))
    assert [f.uid for f in fetched] == uids
    assert [f.raw for f in fetched] == [message(f"Message {n}") for n in range(5)]


def test_openings_then_the_rest_give_each_message_whole(dovecot: dovecot_lib.Account) -> None:
    cap = 64 * 1024
    small = dovecot.append("INBOX", message("Short note"))
    long = dovecot.append("INBOX", message("Catalogue", size=40 * 1024))
    big = dovecot.append("INBOX", message("Invoice attached", size=5 * 1024 * 1024))
    with Mailbox(dovecot.imap_settings(max_fetch_bytes=cap)) as box:
        openings = {f.uid: f for f in box.fetch_openings("INBOX", [small, long, big, 999], 4096)}
        assert set(openings) == {small, long, big}
        assert openings[small].raw == message("Short note") and not openings[small].truncated
        assert openings[long].raw == message("Catalogue", size=40 * 1024)[:4096]
        assert openings[long].truncated and openings[long].size == len(message("Catalogue",
                                                                               size=40 * 1024))
        whole = {f.uid: f for f in box.fetch_rest("INBOX", list(openings.values()))}
    assert whole[small].raw == message("Short note")
    assert whole[long].raw == message("Catalogue", size=40 * 1024) and not whole[long].truncated
    assert whole[big].raw == message("Invoice attached", size=5 * 1024 * 1024)[:cap]
    assert whole[big].truncated


def test_uids_after_the_last_seen_one(dovecot: dovecot_lib.Account, mailbox: Mailbox) -> None:
    uids = [dovecot.append("INBOX", message(f"Order {n}")) for n in range(3)]
    assert mailbox.uids_after("INBOX", 0) == uids
    assert mailbox.uids_after("INBOX", uids[0]) == uids[1:]
    assert mailbox.uids_after("INBOX", uids[-1]) == []


def test_uids_after_since_leaves_out_older_mail(dovecot: dovecot_lib.Account) -> None:
    today = datetime.now(UTC)
    old = dovecot.append("INBOX", message("Old"), date=today - timedelta(days=90))
    new = dovecot.append("INBOX", message("New"), date=today)
    with Mailbox(dovecot.imap_settings()) as box:
        found = box.uids_after("INBOX", 0, since=date.today() - timedelta(days=30))
    assert new in found
    assert old not in found


def test_status_and_select_agree(dovecot: dovecot_lib.Account, mailbox: Mailbox) -> None:
    dovecot.append("Junk", message("One"))
    dovecot.append("Junk", message("Two"))
    status = mailbox.status("Junk")
    assert (status.messages, status.uidnext) == (2, 3)
    assert mailbox.select("Junk") == status


def test_uidvalidity_changes_after_the_server_loses_its_index(dovecot: dovecot_lib.Account) -> None:
    dovecot.append("INBOX", message("Kept"))
    with Mailbox(dovecot.imap_settings()) as box:
        before = box.status("INBOX")
    dovecot.reset_uidvalidity("INBOX")
    with Mailbox(dovecot.imap_settings()) as box:
        after = box.status("INBOX")
    assert after.uidvalidity != before.uidvalidity
    assert after.messages == 1


# -- changing ------------------------------------------------------------------

VARIANTS = [
    pytest.param((), id="move"),
    pytest.param(("MOVE",), id="copy-uid-expunge"),
    pytest.param(("MOVE", "UIDPLUS"), id="copy-expunge"),
]


@pytest.mark.parametrize("without", VARIANTS)
def test_move_takes_only_the_given_message(dovecot_servers, without: tuple[str, ...]) -> None:
    account = dovecot_servers.account(without=without)
    moved = account.append("Junk", message("Payment received"))
    stays = account.append("Junk", message("Cheap pills"))
    with Mailbox(account.imap_settings()) as box:
        assert not set(without) & box.capabilities()
        box.move("Junk", [moved], "INBOX")
        box.move("Junk", [moved], "INBOX")  # a retry after a crash changes nothing

    assert account.uids("Junk") == [stays]
    assert "\\Deleted" not in account.flags("Junk", stays)
    [inbox_uid] = account.uids("INBOX")
    with Mailbox(account.imap_settings()) as box:
        [fetched] = box.fetch("INBOX", [inbox_uid])
    assert fetched.raw == message("Payment received")


def test_rescue_without_move_capability(dovecot_without_move: dovecot_lib.Account) -> None:
    uid = dovecot_without_move.append("Junk", message("Disbursement delayed"))
    with Mailbox(dovecot_without_move.imap_settings()) as box:
        assert "MOVE" not in box.capabilities()
        box.rescue("Junk", [uid], "INBOX")
    assert dovecot_without_move.uids("Junk") == []
    [rescued] = dovecot_without_move.uids("INBOX")
    assert "$NotJunk" in dovecot_without_move.flags("INBOX", rescued)


def test_plain_expunge_never_erases_other_deleted_mail(dovecot_servers) -> None:
    account = dovecot_servers.account(without=("MOVE", "UIDPLUS"))
    moved = account.append("Junk", message("Account health warning"))
    deleted_by_seller = account.append("Junk", message("Old spam"), flags=["\\Deleted"])
    with Mailbox(account.imap_settings()) as box:
        box.move("Junk", [moved], "INBOX")

    assert deleted_by_seller in account.uids("Junk")
    assert len(account.uids("INBOX")) == 1


def test_move_into_the_same_folder_changes_nothing(
    dovecot: dovecot_lib.Account, mailbox: Mailbox
) -> None:
    uid = dovecot.append("INBOX", message("Already in the inbox"))
    mailbox.rescue("INBOX", [uid], "INBOX")
    assert dovecot.uids("INBOX") == [uid]


def test_folder_with_accents_is_read_like_any_other(dovecot: dovecot_lib.Account) -> None:
    dovecot.create_folder("Réclamations")
    uid = dovecot.append("Réclamations", message("A-to-z claim"))
    with Mailbox(dovecot.imap_settings(folders=("Réclamations",))) as box:
        assert roles(box.folders())["Réclamations"] == "extra"
        assert box.uids_after("Réclamations", 0) == [uid]
        [fetched] = box.fetch("Réclamations", [uid])
    assert fetched.raw == message("A-to-z claim")


def test_move_to_a_missing_folder_is_an_error_and_keeps_the_message(
    dovecot: dovecot_lib.Account, mailbox: Mailbox
) -> None:
    uid = dovecot.append("Junk", message("Listing suppressed"))
    with pytest.raises(MailboxError, match="Nowhere"):
        mailbox.move("Junk", [uid], "Nowhere")
    assert dovecot.uids("Junk") == [uid]


def test_rescue_marks_not_junk_and_moves_to_inbox(
    dovecot: dovecot_lib.Account, mailbox: Mailbox
) -> None:
    uid = dovecot.append("Junk", message("Your account is at risk"), flags=["$Junk"])
    mailbox.rescue("Junk", [uid], "INBOX")

    assert dovecot.uids("Junk") == []
    [rescued] = dovecot.uids("INBOX")
    flags = dovecot.flags("INBOX", rescued)
    assert "$NotJunk" in flags
    assert "$Junk" not in flags


def test_flags_added_and_removed(dovecot: dovecot_lib.Account, mailbox: Mailbox) -> None:
    uid = dovecot.append("INBOX", message("Buyer question"))
    mailbox.add_flags("INBOX", [uid], ["\\Flagged", "$Triage"])
    assert {"\\Flagged", "$Triage"} <= set(mailbox.flags("INBOX", [uid])[uid])
    mailbox.remove_flags("INBOX", [uid], ["$Triage"])
    assert "$Triage" not in mailbox.flags("INBOX", [uid])[uid]


class RecordingClient:
    """Stands in for imapclient: a folder with the given PERMANENTFLAGS; records STOREs."""

    normalise_times = True

    def __init__(self, permanent: tuple[bytes, ...] | None) -> None:
        self.permanent = permanent
        self.stored: list[tuple[str, ...]] = []

    def __call__(self, host: str, **options: object) -> RecordingClient:
        return self

    def has_capability(self, capability: str) -> bool:
        return False

    def login(self, user: str, password: str) -> bytes:
        return b"Logged in"

    def capabilities(self) -> tuple[bytes, ...]:
        return (b"IMAP4REV1",)

    def select_folder(self, folder: str) -> dict[bytes, object]:
        response: dict[bytes, object] = {b"EXISTS": 1, b"UIDVALIDITY": 7, b"UIDNEXT": 2}
        if self.permanent is not None:
            response[b"PERMANENTFLAGS"] = self.permanent
        return response

    def add_flags(self, uids: list[int], flags: list[str], silent: bool) -> None:
        self.stored.extend(flags)

    def logout(self) -> bytes:
        return b"Logged out"


@pytest.mark.parametrize(
    ("permanent", "stored"),
    [
        pytest.param(
            (b"\\Seen", b"\\Flagged", b"\\*"), ["$NotJunk", "\\Flagged"], id="keywords-kept"
        ),
        pytest.param((b"\\Seen", b"\\Flagged"), ["\\Flagged"], id="no-keywords"),
        pytest.param((b"\\Seen",), [], id="read-only-flags"),
        pytest.param(None, ["$NotJunk", "\\Flagged"], id="no-permanentflags-means-all"),
    ],
)
def test_only_flags_the_folder_keeps_are_set(
    permanent: tuple[bytes, ...] | None, stored: list[str]
) -> None:
    client = RecordingClient(permanent)
    settings = ImapSettings(host="imap.example.com", user="u", password="p")
    with Mailbox(settings, client_factory=client) as box:
        box.add_flags("INBOX", [1], ["$NotJunk", "\\Flagged"])
    assert client.stored == stored


# -- waiting -------------------------------------------------------------------


def test_idle_wakes_up_when_mail_arrives(dovecot: dovecot_lib.Account, mailbox: Mailbox) -> None:
    mailbox.select("INBOX")
    delivery = threading.Timer(0.3, dovecot.append, ("INBOX", message("New buyer message")))
    delivery.start()
    try:
        assert mailbox.idle("INBOX", timeout=30) is True
    finally:
        delivery.join()
    assert len(mailbox.uids_after("INBOX", 0)) == 1


def test_idle_reports_mail_that_came_just_before_it(
    dovecot: dovecot_lib.Account, mailbox: Mailbox
) -> None:
    mailbox.select("INBOX")
    dovecot.append("INBOX", message("Arrived between sync and idle"))
    assert mailbox.idle("INBOX", timeout=30) is True


def test_idle_without_the_capability_polls(dovecot_servers) -> None:
    account = dovecot_servers.account(without=("IDLE",))
    with Mailbox(account.imap_settings()) as box:
        box.select("INBOX")
        account.append("INBOX", message("Polled"))
        assert box.idle("INBOX", timeout=0.1) is True
        assert box.idle("INBOX", timeout=0.1) is False


def test_idle_times_out_quietly(mailbox: Mailbox) -> None:
    assert mailbox.idle("INBOX", timeout=0.3) is False


def test_idle_raises_when_the_server_goes_away(
    dovecot: dovecot_lib.Account, mailbox: Mailbox
) -> None:
    mailbox.select("INBOX")
    outage = threading.Timer(0.3, dovecot.stop)
    outage.start()
    try:
        with pytest.raises(MailboxError):
            mailbox.idle("INBOX", timeout=30)
    finally:
        outage.join()
        dovecot.start()


def test_reconnect_after_a_restart(dovecot: dovecot_lib.Account, mailbox: Mailbox) -> None:
    uid = dovecot.append("INBOX", message("Still here"))
    mailbox.select("INBOX")
    dovecot.restart()
    with pytest.raises(MailboxError):
        mailbox.uids_after("INBOX", 0)
    mailbox.close()  # a dead connection closes without complaint
    mailbox.connect()
    assert mailbox.uids_after("INBOX", 0) == [uid]


# -- connecting ------------------------------------------------------------------


def test_wrong_password_is_a_login_error_without_the_password(dovecot: dovecot_lib.Account) -> None:
    wrong = "hunter2-wrong"
    with pytest.raises(LoginError) as caught:
        Mailbox(dovecot.imap_settings(password=wrong)).connect()
    assert wrong not in str(caught.value)
    assert dovecot.user in str(caught.value)


class RefusesPlaintextLogin:
    """A server that announces LOGINDISABLED, as most do on an unencrypted port."""

    def __init__(self, host: str, **options: object) -> None:
        self.host = host

    def has_capability(self, capability: str) -> bool:
        return capability == "LOGINDISABLED"

    def logout(self) -> bytes:
        return b"Logging out"


def test_login_disabled_without_tls_says_to_use_tls() -> None:
    settings = ImapSettings(
        host="imap.example.com", port=143, user="u", password="p", security="none"
    )
    with pytest.raises(MailboxError, match="TRIAGE_IMAP_SECURITY=starttls") as caught:
        Mailbox(settings, client_factory=RefusesPlaintextLogin).connect()
    assert not isinstance(caught.value, LoginError)


def test_nothing_listening_is_a_mailbox_error() -> None:
    settings = ImapSettings(
        host="127.0.0.1", port=dovecot_lib.free_port(), user="u", password="p", security="none"
    )
    with pytest.raises(MailboxError, match="cannot connect"):
        Mailbox(settings).connect()


# -- triage folders --------------------------------------------------------------


def run_triage(env: dict[str, str], tmp_path, *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TRIAGE_")}
    clean.update(env, TRIAGE_STATE_DIR=str(tmp_path))
    return subprocess.run(
        [sys.executable, "-m", "triage.cli", *args],
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_folders_command_prints_each_role(dovecot: dovecot_lib.Account, tmp_path) -> None:
    result = run_triage(dovecot.env(), tmp_path, "folders")
    assert result.returncode == 0, result.stderr
    rows = [line.split()[:2] for line in result.stdout.splitlines()[1:]]
    assert rows == [["inbox", "INBOX"], ["junk", "Junk"], ["sent", "Sent"]]


def test_folders_command_wrong_password_is_one_line(dovecot: dovecot_lib.Account, tmp_path) -> None:
    wrong = "not-the-password-42"
    result = run_triage({**dovecot.env(), "TRIAGE_IMAP_PASSWORD": wrong}, tmp_path, "folders")
    assert result.returncode == 2
    assert wrong not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("triage: ")
    assert "refused the user name or password" in line


def test_folders_command_without_a_mailbox_says_what_is_missing(tmp_path) -> None:
    result = run_triage({}, tmp_path, "folders")
    assert result.returncode == 2
    assert "TRIAGE_IMAP_HOST" in result.stderr
    assert "Traceback" not in result.stderr


# -- TLS ---------------------------------------------------------------------------


@pytest.fixture
def tls_account(dovecot_servers) -> dovecot_lib.Account:
    return dovecot_servers.account(tls=True)


@pytest.mark.parametrize("security", ["tls", "starttls"])
def test_tls_with_the_servers_certificate(tls_account: dovecot_lib.Account, security: str) -> None:
    with Mailbox(tls_account.tls_settings(security)) as box:
        assert "inbox" in roles(box.folders()).values()


@pytest.mark.parametrize("security", ["tls", "starttls"])
def test_untrusted_certificate_is_refused(tls_account: dovecot_lib.Account, security: str) -> None:
    settings = tls_account.tls_settings(security, ca_file=None)
    with pytest.raises(MailboxError, match="certificate is not trusted"):
        Mailbox(settings).connect()


def test_verification_can_be_turned_off(tls_account: dovecot_lib.Account) -> None:
    settings = tls_account.tls_settings("tls", ca_file=None, verify_certificate=False)
    with Mailbox(settings) as box:
        assert box.status("INBOX").messages == 0


def test_implicit_tls_on_a_plain_port_suggests_starttls(tls_account: dovecot_lib.Account) -> None:
    settings = tls_account.tls_settings("tls", port=tls_account.port)
    with pytest.raises(MailboxError, match="SECURITY=starttls"):
        Mailbox(settings).connect()


def test_idle_cut_short_by_a_signal_closes_at_once(mailbox: Mailbox) -> None:
    class Interrupted(Exception):
        pass

    def interrupt(signum: int, frame: object) -> None:
        raise Interrupted

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 0.2)
    try:
        with pytest.raises(Interrupted):
            mailbox.idle("INBOX", timeout=30)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    # The session still in IDLE is dropped: a LOGOUT would wait for the read timeout.
    with pytest.raises(MailboxError, match="not connected"):
        mailbox.status("INBOX")
    mailbox.close()
    mailbox.connect()
    assert mailbox.idle("INBOX", timeout=0.1) is False
