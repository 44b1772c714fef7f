"""Pooled connections that died while idle (a database restart) are replaced, not used."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from mailsvc.kit import db


async def test_a_connection_killed_while_idle_is_replaced_at_checkout(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = db.create_engine(database_url, pool_size=1)
    try:
        async with engine.connect() as connection:
            first_pid = await connection.scalar(text("SELECT pg_backend_pid()"))
        other = db.create_engine(database_url, pool_size=1)
        async with other.connect() as killer:
            await killer.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first_pid})
        await other.dispose()
        # The pooled connection is dead now; treat it as idle long enough to be pinged.
        monkeypatch.setattr(db, "IDLE_PING_SECONDS", 0.0)
        async with engine.connect() as connection:
            second_pid = await connection.scalar(text("SELECT pg_backend_pid()"))
        assert second_pid != first_pid
    finally:
        await engine.dispose()
