"""Secret encryption at rest: AES-256-GCM with a key id and bound associated data.

Sealed form: ``v1.<key id>.<base64url(nonce || ciphertext || tag)>``. The key id
is derived from the key itself (first 8 bytes of its SHA-256, hex), so rotating
means adding the old key to `ENCRYPTION_KEYS_OLD` and setting a new
`ENCRYPTION_KEY`; `mailsvc keys rotate` then re-seals what is left on old keys.
The associated data binds a ciphertext to its tenant, row and purpose, so a
sealed secret copied into another row or tenant fails to open.
"""

from __future__ import annotations

import base64
import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_VERSION = "v1"
_NONCE_BYTES = 12


class SecretDecryptionError(Exception):
    """A sealed secret could not be opened (unknown key, tampered, or wrong binding)."""


def key_id(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:16]


def associated_data(*parts: str) -> bytes:
    """Length-prefixed parts, so ("a", "bc") and ("ab", "c") never collide."""
    return b"".join(len(p.encode()).to_bytes(4, "big") + p.encode() for p in parts)


class SecretBox:
    """Seals with the current key; opens with the current or any old key."""

    def __init__(self, current: bytes, old: list[bytes] | None = None) -> None:
        self._current_id = key_id(current)
        self._keys = {key_id(k): AESGCM(k) for k in [*(old or []), current]}

    def seal(self, plaintext: str, *, context: bytes) -> str:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._keys[self._current_id].encrypt(nonce, plaintext.encode(), context)
        payload = base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")
        return f"{_VERSION}.{self._current_id}.{payload}"

    def open(self, sealed: str, *, context: bytes) -> str:
        try:
            version, kid, payload = sealed.split(".", 2)
        except ValueError as exc:
            raise SecretDecryptionError("malformed sealed secret") from exc
        if version != _VERSION:
            raise SecretDecryptionError(f"unknown sealed secret version {version!r}")
        aead = self._keys.get(kid)
        if aead is None:
            raise SecretDecryptionError(f"no key with id {kid} is configured")
        raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        try:
            plaintext = aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], context)
        except InvalidTag as exc:
            raise SecretDecryptionError("sealed secret failed authentication") from exc
        return plaintext.decode()

    def needs_rotation(self, sealed: str) -> bool:
        """True when `sealed` is not under the current key."""
        return not sealed.startswith(f"{_VERSION}.{self._current_id}.")
