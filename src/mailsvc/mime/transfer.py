"""Incremental Content-Transfer-Encoding decoding, for parts streamed from IMAP.

A part arrives in chunks of any size; each decoder keeps only the few bytes that
cannot be decoded yet (an incomplete base64 quantum, an unfinished quoted-printable
line), so memory stays bounded by the chunk size, never the part's.
"""

from __future__ import annotations

import binascii
import re

_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/=]")
# A quoted-printable line has no business being longer; past this, decode anyway
# (keeping a possible split `=XX` escape) so a hostile part cannot grow the buffer.
_QP_MAX_PENDING = 64 * 1024


class TransferDecoder:
    """Decodes `base64`, `quoted-printable`, or passes anything else through."""

    def __init__(self, encoding: str | None) -> None:
        self._encoding = (encoding or "7bit").strip().lower()
        self._pending = b""

    def feed(self, chunk: bytes) -> bytes:
        """Decoded bytes of `chunk` (and of what was held back from before)."""
        if self._encoding == "base64":
            data = self._pending + _NOT_BASE64.sub(b"", chunk)
            usable = len(data) - len(data) % 4
            self._pending = data[usable:]
            return _base64(data[:usable])
        if self._encoding == "quoted-printable":
            data = self._pending + chunk
            cut = data.rfind(b"\n") + 1
            if not cut and len(data) > _QP_MAX_PENDING:
                cut = len(data) - 2  # `=X` may still be completed by the next chunk
            self._pending = data[cut:]
            return binascii.a2b_qp(data[:cut])
        return chunk

    def finish(self) -> bytes:
        """Whatever was held back; a truncated base64 tail is padded and decoded."""
        pending, self._pending = self._pending, b""
        if self._encoding == "base64":
            pending = pending.rstrip(b"=")
            return _base64(pending + b"=" * (-len(pending) % 4)) if len(pending) > 1 else b""
        if self._encoding == "quoted-printable":
            return binascii.a2b_qp(pending)
        return pending


def _base64(data: bytes) -> bytes:
    try:
        return binascii.a2b_base64(data)
    except binascii.Error:
        # Padding in the middle (two encoded blobs glued together) or other damage:
        # decode quantum by quantum, skipping those that cannot be read.
        out = bytearray()
        for start in range(0, len(data), 4):
            try:
                out += binascii.a2b_base64(data[start : start + 4])
            except binascii.Error:
                continue
        return bytes(out)
