"""``triage login``: connect a Microsoft or Google mailbox with OAuth2, once.

The device-code flow: triage shows a short code and a web address; the seller opens
it on any device (a phone will do, no browser on the server needed), signs in and
allows access. The refresh token that comes back is saved in the state folder with
mode 0600 (``oauth-login.json``) beside the token endpoint and client it belongs to,
so ``TRIAGE_IMAP_AUTH=oauth2`` needs nothing more. It is never printed or logged.

Microsoft goes through MSAL, Microsoft's own client library. Google, and any provider
given by ``--device-url`` and ``--token-url``, through the standard device flow
(RFC 8628).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests

from triage import settings as settings_module
from triage.errors import ConfigError, TriageError
from triage.oauth import OAuthError, post_form, write_private

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
MICROSOFT_SCOPE = "https://outlook.office.com/IMAP.AccessAsUser.All"


@dataclass(frozen=True)
class Endpoints:
    """Where one provider's device flow runs and what it asks for."""

    device_url: str
    token_url: str
    scope: str


def microsoft(tenant: str) -> Endpoints:
    base = f"https://login.microsoftonline.com/{tenant}/oauth2/v2.0"
    return Endpoints(f"{base}/devicecode", f"{base}/token", f"{MICROSOFT_SCOPE} offline_access")


GOOGLE = Endpoints(
    "https://oauth2.googleapis.com/device/code",
    "https://oauth2.googleapis.com/token",
    "https://mail.google.com/",
)


class LoginFailed(TriageError):
    """The seller did not allow access, or the code expired before they did."""


def device_flow(
    session: requests.Session,
    endpoints: Endpoints,
    client_id: str,
    client_secret: str,
    show: Callable[[str], None],
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """RFC 8628: ask for a code, show it, poll until the seller allowed access."""
    client = {"client_id": client_id, **({"client_secret": client_secret} if client_secret else {})}
    start = post_form(session, endpoints.device_url, {**client, "scope": endpoints.scope})
    if "device_code" not in start:
        raise OAuthError(f"{endpoints.device_url} refused: {start.get('error', 'no device code')}")
    address = start.get("verification_uri") or start.get("verification_url")
    show(f"To let triage read your mailbox, open {address}\n"
         f"and enter the code {start['user_code']}")
    interval = float(start.get("interval") or 5)
    deadline = time.monotonic() + float(start.get("expires_in") or 900)
    poll = {**client, "grant_type": DEVICE_GRANT, "device_code": start["device_code"]}
    while time.monotonic() < deadline:
        sleep(interval)
        answer = post_form(session, endpoints.token_url, poll)
        error = answer.get("error")
        if not error:
            return answer
        if error == "slow_down":
            interval += 5
        elif error != "authorization_pending":
            raise LoginFailed(f"sign-in not completed: {error} "
                              f"({answer.get('error_description', '')})".rstrip(" ()"))
    raise LoginFailed("the code expired before access was allowed; run `triage login` again")


def microsoft_flow(tenant: str, client_id: str, show: Callable[[str], None]) -> dict[str, Any]:
    """The device flow through MSAL (it knows Microsoft's endpoints and error codes)."""
    import msal

    authority = f"https://login.microsoftonline.com/{tenant}"
    try:
        # MSAL looks the tenant up on the network as it starts.
        app = msal.PublicClientApplication(client_id, authority=authority)
        flow = app.initiate_device_flow(scopes=[MICROSOFT_SCOPE])
    except (requests.RequestException, ValueError) as exc:
        raise LoginFailed(f"cannot reach Microsoft's sign-in at {authority}: "
                          f"{type(exc).__name__}") from exc
    if "user_code" not in flow:
        raise LoginFailed(f"Microsoft refused to start the sign-in: {flow.get('error')} "
                          f"({flow.get('error_description', '')})")
    show(str(flow["message"]))
    result: dict[str, Any] = app.acquire_token_by_device_flow(flow)
    if "error" in result:
        raise LoginFailed(f"sign-in not completed: {result['error']} "
                          f"({result.get('error_description', '')})")
    return result


def login_command(args: argparse.Namespace) -> int:
    env_client = settings_module.oauth_client_from_env()
    client_id = args.client_id or env_client.client_id
    if not client_id:
        raise ConfigError("triage login needs the OAuth client id of your app registration: "
                          "--client-id or TRIAGE_OAUTH_CLIENT_ID (see the README)")
    client_secret = env_client.client_secret
    endpoints = microsoft(args.tenant) if args.provider == "microsoft" else GOOGLE
    endpoints = Endpoints(args.device_url or endpoints.device_url,
                          args.token_url or endpoints.token_url,
                          args.scope or env_client.scope or endpoints.scope)
    custom = bool(args.device_url or args.token_url)
    if args.provider == "microsoft" and not custom:
        answer = microsoft_flow(args.tenant, client_id, print)
    else:
        answer = device_flow(requests.Session(), endpoints, client_id, client_secret, print)
    refresh_token = answer.get("refresh_token")
    if not isinstance(refresh_token, str) or not refresh_token:
        raise LoginFailed("the provider gave no refresh token: ask for offline access "
                          "(the scope must allow it)")
    path = env_client.state_dir / settings_module.LOGIN_FILE
    saved = {"provider": args.provider, "token_url": endpoints.token_url,
             "client_id": client_id, "scope": endpoints.scope, "refresh_token": refresh_token}
    if client_secret:
        saved["client_secret"] = client_secret
    write_private(path, saved)
    print(f"Signed in. The authorisation is saved in {path} (readable by you only).\n"
          "Next: set TRIAGE_IMAP_AUTH=oauth2 (triage init writes it for Microsoft), "
          "then run `triage doctor`.")
    return 0
