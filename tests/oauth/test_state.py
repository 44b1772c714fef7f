"""PKCE and the single-use authorization state (oauth/state.py), on the real Redis."""

import redis.asyncio as aioredis

from mailsvc.oauth import state as states


def test_s256_challenge_matches_rfc_7636_appendix_b() -> None:
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert states.challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_verifiers_are_long_enough_and_unreserved() -> None:
    verifier = states.new_verifier()
    assert 43 <= len(verifier) <= 128
    assert set(verifier) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
    )


async def test_a_state_is_taken_once(redis_url: str) -> None:
    redis = aioredis.Redis.from_url(redis_url)
    try:
        pending = states.PendingAuthorization(
            tenant_id="t-state",
            app_id="01938f2e-7c4a-7d41-9f0e-3b1c2d4e5f60",
            verifier=states.new_verifier(),
            return_url="https://app.example.com/back",
            client_state=None,
            account_id=None,
            options={},
        )
        state = states.new_state()
        await states.remember(redis, state, pending)
        assert await redis.ttl(f"mailsvc:oauth-state:{state}") > 590
        assert await states.take(redis, state) == pending
        assert await states.take(redis, state) is None
        assert await states.take(redis, states.new_state()) is None
        assert await states.take(redis, "") is None
        assert await states.take(redis, "x" * 5000) is None
    finally:
        await redis.aclose()
