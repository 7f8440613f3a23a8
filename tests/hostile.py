"""Mail as attackers and broken templates write it, for the parser and fault tests."""

from __future__ import annotations

CLAIM_ORDER = "113-7781204-5530618"


def claim_mail(corruption: str, message_id: str = "<claim-1@amazon.com>",
               order: str = CLAIM_ORDER) -> bytes:
    """A genuine-looking A-to-z claim notice with one stray byte that once hid it.

    ``ctrl-in-html``: a 0x1C byte in the HTML of an HTML-only notice;
    ``byte-in-boundary``: a non-ASCII byte in the declared MIME boundary;
    ``byte-in-delimiters``: the same byte in the boundary and every delimiter line;
    ``none``: the notice as Amazon sends it.
    """
    head = (
        "Authentication-Results: mx.example.net; dkim=pass header.i=@amazon.com;"
        " spf=pass smtp.mailfrom=amazon.com; dmarc=pass header.from=amazon.com\n"
        'From: "Amazon Seller Central" <atoz-guarantee-no-reply@amazon.com>\n'
        "To: seller@example-shop.com\n"
        f"Subject: A-to-z Guarantee claim filed: Order {order}\n"
        "Date: Fri, 20 Nov 2026 07:00:00 +0000\n"
        f"Message-ID: {message_id}\n"
        "X-Space-Notification-Type: A_Z_CLAIM_RESPONDENT_NOTIFY\n"
        "MIME-Version: 1.0\n"
    ).encode()
    text = (
        f"A buyer has filed an A-to-z Guarantee claim on order {order}. Reason: item not "
        "received. Please respond within 3 calendar days with tracking information or a "
        "refund. If you do not respond, we may grant the claim and debit your account.\n"
        "https://sellercentral.amazon.com/gp/guarantee-claims/home.html\n"
    ).encode()
    html = (
        b"<html><body><h2>A-to-z Guarantee claim filed</h2><p>" + text + b"</p>"
        b'<p><a href="https://sellercentral.amazon.com/gp/guarantee-claims/home.html">'
        b"View in Seller Central</a></p></body></html>\n"
    )
    if corruption == "ctrl-in-html":
        return head + b"Content-Type: text/html; charset=utf-8\n\n" + html.replace(
            b"<h2>A-to-z", b"<h2>\x1cA-to-z"
        )
    declared, used = {
        "none": (b"==b0und==", b"==b0und=="),
        "byte-in-boundary": (b"==b0und\xe9ry==", b"==b0und"),
        "byte-in-delimiters": (b"==b0und\xe9ry==", b"==b0und\xe9ry=="),
    }[corruption]
    return (
        head + b'Content-Type: multipart/alternative; boundary="' + declared + b'"\n\n'
        b"--" + used + b"\nContent-Type: text/plain; charset=utf-8\n\n" + text
        + b"--" + used + b"\nContent-Type: text/html; charset=utf-8\n\n" + html
        + b"--" + used + b"--\n"
    )


CORRUPTIONS = ("ctrl-in-html", "byte-in-boundary", "byte-in-delimiters")
