"""Opaque keyset cursors for list endpoints (`limit`, `cursor` -> `next_cursor`)."""

from __future__ import annotations

import base64
import json
from typing import Any


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
