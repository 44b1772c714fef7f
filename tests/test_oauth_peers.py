"""Self-tests of the OAuth2 test peers: oidc-provider, Dovecot's oauth2 passdb, the relay.

If these fail, every OAuth2 account test is suspect: run them first. They talk to
the real processes over loopback, on the wire, so the exchanges asserted here are
what mailsvc's IMAP and SMTP clients will see.
"""

import base64
import dataclasses
import imaplib
import json
import smtplib
import socket
import time
from email.message import EmailMessage

import httpx
import pytest

from tests.fixtures.dovecot import DovecotServer, TestMailUser
from tests.fixtures.oauth_server import (
    OAuthClient,
    OAuthServer,
    Pkce,
    consent,
    token_request,
)
from tests.fixtures.smtp_server import SmtpRelay

CALLBACK = "http://mailsvc.test/oauth/callback"
# What Dovecot 2.3 and the relay put in the challenge before refusing a token.
XOAUTH2_FAILURE = {"status": "401", "schemes": "bearer", "scope": "mail"}
OAUTHBEARER_FAILURE = {"status": "invalid_token"}
IMAP_REFUSED = b"a NO [AUTHENTICATIONFAILED] Authentication failed."
SMTP_REFUSED = (535, b"5.7.8 Authentication credentials invalid")


def _sasl_response(mechanism: str, username: str, token: str) -> bytes:
    if mechanism == "XOAUTH2":
        return f"user={username}\x01auth=Bearer {token}\x01\x01".encode()
    return f"n,a={username},\x01host=127.0.0.1\x01port=143\x01auth=Bearer {token}\x01\x01".encode()


def _dummy_reply(mechanism: str) -> bytes:
    """What a client answers to the error challenge: nothing, or RFC 7628's ^A."""
    return b"" if mechanism == "XOAUTH2" else base64.b64encode(b"\x01")


def _imap_authenticate(
    dovecot: DovecotServer, mechanism: str, username: str, token: str
) -> tuple[dict[str, str] | None, bytes]:
    """AUTHENTICATE with SASL-IR on a raw socket: (error challenge or None, tagged reply)."""
    with socket.create_connection((dovecot.host, dovecot.imap_port), timeout=10) as sock:
        stream = sock.makefile("rb")
        assert stream.readline().startswith(b"* OK")
        initial = base64.b64encode(_sasl_response(mechanism, username, token))
        sock.sendall(b"a AUTHENTICATE " + mechanism.encode() + b" " + initial + b"\r\n")
        line = stream.readline().rstrip(b"\r\n")
        challenge = None
        if line.startswith(b"+ "):
            challenge = json.loads(base64.b64decode(line[2:]))
            sock.sendall(_dummy_reply(mechanism) + b"\r\n")
            line = stream.readline().rstrip(b"\r\n")
        return challenge, line


def _smtp_authenticate(
    relay: SmtpRelay, mechanism: str, username: str, token: str
) -> tuple[dict[str, str] | None, tuple[int, bytes], smtplib.SMTP]:
    """AUTH with an initial response: (error challenge or None, final reply, the session)."""
    smtp = smtplib.SMTP(relay.host, relay.port, local_hostname="localhost", timeout=10)
    smtp.ehlo()
    initial = base64.b64encode(_sasl_response(mechanism, username, token)).decode()
    reply = smtp.docmd("AUTH", f"{mechanism} {initial}")
    challenge = None
    if reply[0] == 334:
        challenge = json.loads(base64.b64decode(reply[1]))
        reply = smtp.docmd(_dummy_reply(mechanism).decode())
    return challenge, reply, smtp


def _refused_everywhere(
    oauth_dovecot: DovecotServer, oauth_smtp_relay: SmtpRelay, username: str, token: str
) -> None:
    assert _imap_authenticate(oauth_dovecot, "XOAUTH2", username, token) == (
        XOAUTH2_FAILURE,
        IMAP_REFUSED,
    )
    challenge, reply, smtp = _smtp_authenticate(oauth_smtp_relay, "OAUTHBEARER", username, token)
    smtp.close()
    assert (challenge, reply) == (OAUTHBEARER_FAILURE, SMTP_REFUSED)


@pytest.fixture
def oauth_client(oauth_server: OAuthServer) -> OAuthClient:
    return oauth_server.register_client(redirect_uris=[CALLBACK])


@pytest.mark.parametrize("mechanism", ["XOAUTH2", "OAUTHBEARER"])
def test_access_token_logs_in_to_imap_and_smtp(
    oauth_server: OAuthServer,
    oauth_client: OAuthClient,
    oauth_dovecot: DovecotServer,
    oauth_smtp_relay: SmtpRelay,
    oauth_mail_user: TestMailUser,
    mechanism: str,
) -> None:
    tokens = oauth_server.issue_tokens(oauth_client, oauth_mail_user.email)
    assert tokens["token_type"] == "Bearer"
    assert set(tokens) >= {"access_token", "refresh_token", "expires_in", "id_token"}

    # The login name may be the address or the bare mailbox name (Dovecot's %Ln).
    for username in (oauth_mail_user.email, oauth_mail_user.username):
        challenge, imap_reply = _imap_authenticate(
            oauth_dovecot, mechanism, username, tokens["access_token"]
        )
        assert challenge is None
        assert imap_reply.startswith(b"a OK "), imap_reply

    challenge, smtp_reply, smtp = _smtp_authenticate(
        oauth_smtp_relay, mechanism, oauth_mail_user.email, tokens["access_token"]
    )
    with smtp:
        assert (challenge, smtp_reply[0]) == (None, 235)
        message = EmailMessage()
        message["From"] = oauth_mail_user.email
        message["To"] = oauth_mail_user.email
        message["Subject"] = f"sent with {mechanism}"
        message.set_content("token-authenticated submission\n")
        smtp.send_message(message)
    received = next(
        m
        for m in oauth_smtp_relay.received
        if b"sent with " + mechanism.encode() in m.data and m.auth_username == oauth_mail_user.email
    )
    assert received.auth_mechanism == mechanism


def test_password_login_still_works_and_tokens_are_not_passwords(
    oauth_server: OAuthServer,
    oauth_client: OAuthClient,
    oauth_dovecot: DovecotServer,
    oauth_smtp_relay: SmtpRelay,
    oauth_mail_user: TestMailUser,
) -> None:
    with imaplib.IMAP4(oauth_dovecot.host, oauth_dovecot.imap_port, timeout=10) as imap:
        assert imap.login(oauth_mail_user.email, oauth_mail_user.password)[0] == "OK"
    with smtplib.SMTP(oauth_smtp_relay.host, oauth_smtp_relay.port, timeout=10) as smtp:
        smtp.ehlo()
        assert smtp.esmtp_features["auth"].split() == ["LOGIN", "OAUTHBEARER", "PLAIN", "XOAUTH2"]
        assert smtp.login(oauth_mail_user.username, oauth_mail_user.password)[0] == 235

    token = oauth_server.issue_tokens(oauth_client, oauth_mail_user.email)["access_token"]
    with imaplib.IMAP4(oauth_dovecot.host, oauth_dovecot.imap_port, timeout=10) as imap:
        with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
            imap.login(oauth_mail_user.email, token)
    with smtplib.SMTP(oauth_smtp_relay.host, oauth_smtp_relay.port, timeout=10) as smtp:
        with pytest.raises(smtplib.SMTPAuthenticationError):
            smtp.login(oauth_mail_user.email, token)


def test_expired_garbage_and_foreign_tokens_are_refused(
    oauth_server: OAuthServer,
    oauth_client: OAuthClient,
    oauth_dovecot: DovecotServer,
    oauth_smtp_relay: SmtpRelay,
    oauth_mail_user: TestMailUser,
) -> None:
    other = oauth_dovecot.add_user(f"{oauth_mail_user.username}-other", "unused")
    foreign = oauth_server.issue_tokens(oauth_client, other.email)["access_token"]
    _refused_everywhere(oauth_dovecot, oauth_smtp_relay, oauth_mail_user.email, foreign)
    _refused_everywhere(oauth_dovecot, oauth_smtp_relay, oauth_mail_user.email, "not-a-token")

    oauth_server.set_access_token_ttl(1)
    tokens = oauth_server.issue_tokens(oauth_client, oauth_mail_user.email)
    assert tokens["expires_in"] == 1
    deadline = time.monotonic() + 5
    while oauth_server.introspect(tokens["access_token"])["active"]:
        assert time.monotonic() < deadline, "the access token did not expire"
        time.sleep(0.1)
    _refused_everywhere(
        oauth_dovecot, oauth_smtp_relay, oauth_mail_user.email, tokens["access_token"]
    )
    # The refresh token outlives it and brings a working access token.
    oauth_server.set_access_token_ttl(oauth_server.default_access_token_ttl)
    refreshed = oauth_server.refresh(oauth_client, tokens["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    assert _imap_authenticate(
        oauth_dovecot, "XOAUTH2", oauth_mail_user.email, refreshed.json()["access_token"]
    )[1].startswith(b"a OK ")


def test_refresh_rotates_and_reuse_revokes_the_grant(
    oauth_server: OAuthServer, oauth_client: OAuthClient, oauth_mail_user: TestMailUser
) -> None:
    first = oauth_server.issue_tokens(oauth_client, oauth_mail_user.email)
    response = oauth_server.refresh(oauth_client, first["refresh_token"])
    assert response.status_code == 200, response.text
    second = response.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert oauth_server.introspect(second["access_token"])["active"] is True

    reused = oauth_server.refresh(oauth_client, first["refresh_token"])
    assert (reused.status_code, reused.json()["error"]) == (400, "invalid_grant")
    # oidc-provider's reuse detection: the whole grant is gone, newest tokens too.
    assert oauth_server.refresh(oauth_client, second["refresh_token"]).status_code == 400
    assert oauth_server.introspect(second["access_token"]) == {"active": False}


def test_revoking_the_subject_kills_refresh_and_access_tokens(
    oauth_server: OAuthServer,
    oauth_client: OAuthClient,
    oauth_dovecot: DovecotServer,
    oauth_smtp_relay: SmtpRelay,
    oauth_mail_user: TestMailUser,
) -> None:
    tokens = oauth_server.issue_tokens(oauth_client, oauth_mail_user.email)
    assert oauth_server.revoke_subject(oauth_mail_user.email) == 1

    refreshed = oauth_server.refresh(oauth_client, tokens["refresh_token"])
    assert (refreshed.status_code, refreshed.json()["error"]) == (400, "invalid_grant")
    assert oauth_server.introspect(tokens["access_token"]) == {"active": False}
    _refused_everywhere(
        oauth_dovecot, oauth_smtp_relay, oauth_mail_user.email, tokens["access_token"]
    )


def test_token_endpoint_faults_and_counters(
    oauth_server: OAuthServer, oauth_client: OAuthClient, oauth_mail_user: TestMailUser
) -> None:
    tokens = oauth_server.issue_tokens(oauth_client, oauth_mail_user.email)

    oauth_server.fail_token_endpoint("500")
    failed = oauth_server.refresh(oauth_client, tokens["refresh_token"])
    assert failed.status_code == 500
    assert failed.headers["content-type"].startswith("text/html")

    oauth_server.fail_token_endpoint("garbage", times=1)
    garbage = oauth_server.refresh(oauth_client, tokens["refresh_token"])
    assert garbage.status_code == 200
    assert garbage.headers["content-type"].startswith("application/json")
    with pytest.raises(json.JSONDecodeError):
        garbage.json()

    # times=1 has run out: the refresh token, never seen by oidc-provider, still works.
    assert oauth_server.refresh(oauth_client, tokens["refresh_token"]).status_code == 200
    assert oauth_server.token_requests("authorization_code") == 1
    assert oauth_server.token_requests("refresh_token") == 3
    assert oauth_server.token_requests() == 4
    oauth_server.introspect(tokens["access_token"])
    assert oauth_server.introspections() == 1
    oauth_server.reset_counts()
    assert (oauth_server.token_requests(), oauth_server.introspections()) == (0, 0)


def test_clients_may_send_their_secret_either_way(
    oauth_server: OAuthServer, oauth_client: OAuthClient, oauth_mail_user: TestMailUser
) -> None:
    tokens = oauth_server.issue_tokens(oauth_client, oauth_mail_user.email)
    # oidc-provider takes client_secret_post and client_secret_basic from any
    # client with a secret, whichever method it registered.
    as_basic = dataclasses.replace(oauth_client, auth_method="client_secret_basic")
    refreshed = oauth_server.refresh(as_basic, tokens["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    refreshed = oauth_server.refresh(oauth_client, refreshed.json()["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text

    wrong_secret = dataclasses.replace(oauth_client, client_secret="wrong")
    refused = oauth_server.refresh(wrong_secret, refreshed.json()["refresh_token"])
    assert (refused.status_code, refused.json()["error"]) == (401, "invalid_client")


def test_smtp_relay_can_offer_a_single_mechanism(oauth_smtp_relay: SmtpRelay) -> None:
    oauth_smtp_relay.offer_auth_mechanisms("XOAUTH2")
    with smtplib.SMTP(oauth_smtp_relay.host, oauth_smtp_relay.port, timeout=10) as smtp:
        smtp.ehlo()
        assert smtp.esmtp_features["auth"].strip() == "XOAUTH2"
        assert smtp.docmd("AUTH", "PLAIN AGEAYg==")[0] == 504


def test_password_relay_offers_no_token_mechanisms(smtp_relay: SmtpRelay) -> None:
    with smtplib.SMTP(smtp_relay.host, smtp_relay.port, timeout=10) as smtp:
        smtp.ehlo()
        assert smtp.esmtp_features["auth"].strip() == "LOGIN PLAIN"


async def test_consent_walks_login_and_consent_pages(
    oauth_server: OAuthServer, oauth_client: OAuthClient, oauth_mail_user: TestMailUser
) -> None:
    pkce = Pkce.generate()
    authorize = oauth_server.authorization_request_url(oauth_client, pkce=pkce, state="s-1")
    async with httpx.AsyncClient(timeout=10) as browser:
        callback = await consent(browser, authorize, login=oauth_mail_user.email, stop_at=CALLBACK)
        assert str(callback).startswith(CALLBACK + "?")
        assert callback.params["state"] == "s-1"
        assert callback.params["iss"] == oauth_server.issuer
        exchange = await browser.post(
            oauth_server.token_url,
            **token_request(
                oauth_client,
                grant_type="authorization_code",
                code=callback.params["code"],
                redirect_uri=CALLBACK,
                code_verifier=pkce.verifier,
            ),
        )
        assert exchange.status_code == 200, exchange.text
        tokens = exchange.json()
        assert tokens["scope"] == "openid email mail.imap mail.smtp"
        payload = tokens["id_token"].split(".")[1]
        id_token = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        assert id_token["email"] == id_token["sub"] == oauth_mail_user.email
        assert id_token["aud"] == oauth_client.client_id
        userinfo = await browser.get(
            oauth_server.userinfo_url,
            headers={"Authorization": f"Bearer {tokens['access_token']}"},
        )
        assert userinfo.json() == {
            "sub": oauth_mail_user.email,
            "email": oauth_mail_user.email,
            "email_verified": True,
        }

        # Without PKCE the authorization request itself is refused (an error page).
        no_pkce = authorize.replace(f"&code_challenge={pkce.challenge}", "")
        response = await browser.get(no_pkce)
        assert response.status_code == 303
        assert "error=invalid_request" in response.headers["location"]
