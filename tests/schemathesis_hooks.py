"""Schemathesis hooks for tests/test_schemathesis.py (loaded through SCHEMATHESIS_HOOKS).

tests/schemathesis.toml lets some operations answer a schema-valid request with a
4xx that no schema can rule out (a cursor we did not issue, an account that does not
exist, a mail server that cannot be reached). A status is coarser than the reason,
so the check below holds each such answer to the problem `code`s the config names
for it: a 400 from a list is fine when it says `invalid_cursor`, and a failure
when it says anything else.
"""

from __future__ import annotations

import json
from typing import Any

import schemathesis
from schemathesis import Case, CheckContext, Response


@schemathesis.check
def expected_problem_code(ctx: CheckContext, response: Response, case: Case[Any]) -> bool | None:
    """A schema-valid request refused with a status the config allows for it carries
    one of the problem codes the config names for that status."""
    allowed: dict[str, Any] = ctx.config.custom_kwargs.get("expected_problem_code", {})
    codes = allowed.get("codes", {}).get(str(response.status_code))
    meta = case.meta
    if codes is None or meta is None or not meta.generation.mode.is_positive:
        return None
    try:
        code = json.loads(response.content).get("code")
    except (ValueError, AttributeError):
        code = None
    if code not in codes:
        raise AssertionError(
            f"{response.status_code} with code {code!r} for a schema-valid request; "
            f"tests/schemathesis.toml expects only {', '.join(codes)} here"
        )
    return None
