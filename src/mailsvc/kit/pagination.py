"""Opaque keyset cursors for list endpoints (`limit`, `cursor` -> `next_cursor`)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import Query

from mailsvc.errors import BadRequestError

T = TypeVar("T")


# What `encode_cursor` issues: base64url (padding tolerated). Query parameters declare it so the
# OpenAPI schema refuses what the server would (the content stays opaque).
CURSOR_PATTERN = r"^[A-Za-z0-9_-]+={0,2}$"
CURSOR_MAX_LENGTH = 512
CursorQuery = Annotated[
    str | None,
    Query(
        max_length=CURSOR_MAX_LENGTH,
        pattern=CURSOR_PATTERN,
        description="A `next_cursor` of the previous page, passed back unchanged.",
    ),
]


class InvalidCursorError(ValueError):
    """A cursor that this service did not hand out (or that was tampered with)."""


def encode_cursor(position: dict[str, Any]) -> str:
    raw = json.dumps(position, separators=(",", ":"), default=str).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> dict[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        position = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidCursorError("cursor is not valid") from exc
    if not isinstance(position, dict):
        raise InvalidCursorError("cursor is not valid")
    return position


def read_cursor(cursor: str | None, position: Callable[[dict[str, Any]], T]) -> T | None:
    """Where `cursor` points, as `position` reads it from the decoded cursor; None for
    no cursor, and a 400 `invalid_cursor` for anything this service did not hand out
    (`position` may raise KeyError, TypeError or ValueError on a bad one)."""
    if cursor is None:
        return None
    try:
        return position(decode_cursor(cursor))
    except (InvalidCursorError, KeyError, TypeError, ValueError) as exc:
        raise BadRequestError("cursor is not valid", code="invalid_cursor") from exc
