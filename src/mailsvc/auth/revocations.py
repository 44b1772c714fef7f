"""Which API keys are revoked, as this process last read it: the check that makes a
revoke reach the tokens already issued for the key.

A token names its key in its subject (`apikey:<id>`) and stays valid until `exp`
by itself; every request with such a token asks `ApiKeyRevocations`. The answer is
kept per process, so the hot path is a dict lookup:

- an active key is read again from the database once `API_KEY_STATUS_CACHE_SECONDS`
  have passed: a revoke made by another process (or `mailsvc apikey revoke`) reaches
  this one within that time;
- a revoked key (or an id no key has) stays revoked: keys are never restored;
- the process that revokes a key forgets its entry once the revoke commits, so its
  own requests are refused from the next one on. A read that started before the
  revoke committed, and ends after it was forgotten, answers its own request but
  is not kept.

Nothing is shared between processes and nothing survives a restart: a new process
reads each key once before trusting it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailsvc.auth.repository import ApiKeyRepository

API_KEY_SUBJECT_PREFIX = "apikey:"

# Keys of one deployment are few; the bound only keeps forged-looking subjects
# (tokens signed by `mailsvc token create --subject apikey:...`) from growing it.
_MAX_ENTRIES = 10_000
_FOREVER = float("inf")


def api_key_subject(key_id: uuid.UUID) -> str:
    """The `sub` of the tokens issued for this key."""
    return f"{API_KEY_SUBJECT_PREFIX}{key_id}"


class ApiKeyRevocations:
    """Per-process cache of API key statuses, read through `sessionmaker` on a miss.

    `sessionmaker` should be the autocommit one (one statement, no transaction).
    `clock` is monotonic seconds; tests pass their own.
    """

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        lifetime_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._lifetime = lifetime_seconds
        self._clock = clock
        # key id as the subject spells it -> (revoked, trusted until)
        self._entries: dict[str, tuple[bool, float]] = {}
        # Bumped by `forget`: a read begun before it may hold the status from before.
        self._forgets = 0

    def cached(self, key_id: str) -> bool | None:
        """Whether the key is revoked, if known and fresh here; None means `load` it."""
        entry = self._entries.get(key_id)
        if entry is None or entry[1] <= self._clock():
            return None
        return entry[0]

    async def load(self, key_id: str) -> bool:
        """Read whether the key is revoked (an id of no key is), and keep the answer."""
        forgets = self._forgets
        try:
            parsed = uuid.UUID(key_id)
        except ValueError:
            revoked = True
        else:
            async with self._sessionmaker() as session:
                revoked = await ApiKeyRepository(session).is_revoked(parsed)
        if revoked or forgets == self._forgets:
            self._keep(key_id, revoked)
        return revoked

    async def is_revoked(self, key_id: str) -> bool:
        """`cached`, or else `load`."""
        revoked = self.cached(key_id)
        return await self.load(key_id) if revoked is None else revoked

    def forget(self, key_id: uuid.UUID) -> None:
        """Drop what is known of the key: the next request reads it again."""
        self._forgets += 1
        self._entries.pop(str(key_id), None)

    def _keep(self, key_id: str, revoked: bool) -> None:
        self._entries.pop(key_id, None)
        if len(self._entries) >= _MAX_ENTRIES:
            del self._entries[next(iter(self._entries))]
        until = _FOREVER if revoked else self._clock() + self._lifetime
        self._entries[key_id] = (revoked, until)
