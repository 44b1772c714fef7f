"""The SASL initial responses that carry an OAuth2 token (kit/sasl.py)."""

import base64

import pytest

from mailsvc.kit import sasl


def _decoded(response: str) -> bytes:
    return base64.b64decode(response)


def test_xoauth2_is_googles_documented_form() -> None:
    # developers.google.com/gmail/imap/xoauth2-protocol, "The SASL XOAUTH2 Mechanism".
    response = sasl.initial_response(
        "XOAUTH2",
        user="someuser@example.com",
        token="ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg",
        host="imap.gmail.com",
        port=993,
    )
    assert response == (
        "dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52"
        "YjNSbGNrQmhkSFJoZG1semRHRXVZMjl0Q2cBAQ=="
    )


def test_oauthbearer_is_rfc_7628s_form() -> None:
    # RFC 7628 §4.1: n,a=user@example.com,^Ahost=server.example.com^Aport=143^A
    # auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==^A^A
    response = sasl.initial_response(
        "OAUTHBEARER",
        user="user@example.com",
        token="vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==",
        host="server.example.com",
        port=143,
    )
    assert response == (
        "bixhPXVzZXJAZXhhbXBsZS5jb20sAWhvc3Q9c2VydmVyLmV4YW1wbGUuY29tAXBvcnQ9MTQzAWF1dGg9QmVhcmVy"
        "IHZGOWRmdDRxbVRjMk52YjNSbGNrQmhiSFJoZG1semRHRXVZMjl0Q2c9PQEB"
    )


def test_oauthbearer_escapes_the_authzid() -> None:
    response = sasl.initial_response(
        "OAUTHBEARER", user="a,b=c@x.test", token="t", host="h", port=1
    )
    assert _decoded(response).startswith(b"n,a=a=2Cb=3Dc@x.test,\x01")


@pytest.mark.parametrize(
    ("user", "token"),
    [
        ("ada\x01@x.test", "t"),
        ("ada@x.test", "t\x01auth=Bearer other"),
        ("ada@x.test", "t\r\nA1 X"),
    ],
)
def test_a_field_cannot_smuggle_in_another(user: str, token: str) -> None:
    with pytest.raises(ValueError, match="control characters"):
        sasl.initial_response("XOAUTH2", user=user, token=token, host="h", port=1)


@pytest.mark.parametrize(
    ("offered", "chosen"),
    [
        (["PLAIN", "XOAUTH2", "OAUTHBEARER"], "XOAUTH2"),
        (["plain", "oauthbearer"], "OAUTHBEARER"),
        (["xoauth2"], "XOAUTH2"),
        (["PLAIN", "LOGIN"], None),
        ([], None),
    ],
)
def test_the_mechanism_comes_from_what_the_server_offers(
    offered: list[str], chosen: str | None
) -> None:
    assert sasl.oauth_mechanism(offered) == chosen


def test_the_error_challenge_is_answered_as_each_mechanism_wants() -> None:
    assert sasl.error_acknowledgement("XOAUTH2") == ""
    assert _decoded(sasl.error_acknowledgement("OAUTHBEARER")) == b"\x01"
