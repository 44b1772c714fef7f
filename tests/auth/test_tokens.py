import base64
import hashlib
import hmac
import json
import time

import pytest
from pydantic import SecretStr

from mailsvc.auth.tokens import InvalidTokenError, TokenCodec
from mailsvc.config import Environment, Settings

SECRET = "k4Jd8Wn2Qz7Lp0Xs5Vb9Mc3Hf6Ty1Rg"


def codec(**overrides: object) -> TokenCodec:
    values: dict[str, object] = {
        "environment": Environment.TEST,
        "jwt_secret": SecretStr(SECRET),
        **overrides,
    }
    return TokenCodec(Settings(_env_file=None, **values))  # type: ignore[call-arg, arg-type]


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def test_issued_token_verifies_with_its_grants() -> None:
    tokens = codec()
    claims = tokens.verify(
        tokens.issue(subject="app", tenants=["acme", "beta"], scopes=["mail:read"], expires_in=60)
    )
    assert claims.subject == "app"
    assert claims.tenants == {"acme", "beta"}
    assert claims.scopes == {"mail:read"}


def test_alg_none_is_rejected() -> None:
    now = int(time.time())
    unsigned = ".".join([
        _b64({"alg": "none", "typ": "JWT"}),
        _b64({"sub": "x", "tenant": "acme", "scopes": [], "exp": now + 60,
              "iss": "mailsvc", "aud": "mailsvc-api"}),
        "",
    ])  # fmt: skip
    with pytest.raises(InvalidTokenError):
        codec().verify(unsigned)


def test_wrong_signature_is_rejected() -> None:
    other = codec(jwt_secret=SecretStr("another-secret-of-enough-length-xyz"))
    token = other.issue(subject="x", tenants=["acme"], scopes=[], expires_in=60)
    with pytest.raises(InvalidTokenError):
        codec().verify(token)


def test_wrong_audience_is_rejected() -> None:
    token = codec(jwt_audience="someone-else").issue(
        subject="x", tenants=["acme"], scopes=[], expires_in=60
    )
    with pytest.raises(InvalidTokenError):
        codec().verify(token)


def test_wrong_issuer_is_rejected() -> None:
    token = codec(jwt_issuer="evil").issue(subject="x", tenants=["acme"], scopes=[], expires_in=60)
    with pytest.raises(InvalidTokenError):
        codec().verify(token)


def test_expired_token_is_rejected() -> None:
    token = codec().issue(subject="x", tenants=["acme"], scopes=[], expires_in=-10)
    with pytest.raises(InvalidTokenError):
        codec().verify(token)


def test_a_verified_token_is_refused_once_it_expires() -> None:
    tokens = codec()
    token = tokens.issue(subject="x", tenants=["acme"], scopes=[], expires_in=1)
    claims = tokens.verify(token)
    assert tokens.verify(token) is claims  # from the cache of verified tokens
    # python-jose compares whole seconds: the token is refused from `exp + 1` on.
    time.sleep(max(0.0, claims.expires_at + 1 - time.time()) + 0.05)
    with pytest.raises(InvalidTokenError):
        tokens.verify(token)


def test_token_without_tenant_is_rejected() -> None:
    from jose import jwt

    now = int(time.time())
    token = jwt.encode(
        {"sub": "x", "exp": now + 60, "iss": "mailsvc", "aud": "mailsvc-api"},
        SECRET,
        algorithm="HS256",
    )
    with pytest.raises(InvalidTokenError, match="tenant"):
        codec().verify(token)


def test_hs256_token_is_refused_when_rs256_is_configured() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    rs = codec(
        jwt_algorithm="RS256", jwt_private_key=SecretStr(private_pem), jwt_public_key=public_pem
    )
    good = rs.issue(subject="x", tenants=["acme"], scopes=[], expires_in=60)
    assert rs.verify(good).tenants == {"acme"}
    # Algorithm confusion: an HS256 token "signed" with the public key must not pass.
    # (jose refuses to build one, so it is forged by hand.)
    head_and_body = _b64({"alg": "HS256", "typ": "JWT"}) + "." + _b64(
        {"sub": "x", "tenant": "acme", "exp": int(time.time()) + 60,
         "iss": "mailsvc", "aud": "mailsvc-api"}
    )  # fmt: skip
    mac = hmac.new(public_pem.encode(), head_and_body.encode(), hashlib.sha256).digest()
    forged = head_and_body + "." + base64.urlsafe_b64encode(mac).decode().rstrip("=")
    with pytest.raises(InvalidTokenError):
        rs.verify(forged)
