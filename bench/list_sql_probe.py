"""What the message list's statement costs PostgreSQL, and what of it is the JSON.

The decision left open by issue 14 (store each message's summary JSON when it is
written, or not) rests on this: the list's statement builds 51 summaries as JSON on
every request. This probe loads the 10,000-message mailbox of bench/searchcorpus.py
into a fresh database (as bench/api.py does), then runs variants of the list's
statement (`message.read_repository.list_statement`) 1,500 times each, sequentially
on one connection with the product's server settings, twice round, and reports the
backend process's CPU per statement (utime + stime from /proc) and the wall time:

- the statement as the product runs it (`json_build_object`);
- the same with `jsonb_build_object` (a different key order; what it costs);
- the same without the three address fields (what the address JSON costs);
- the keyset scan alone, ids only (what reading the rows costs without any JSON).

Run: `.venv/bin/python bench/list_sql_probe.py [--messages 10000] [--rounds 1500]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import asyncpg
from searchcorpus import generate_mailbox

from mailsvc.kit.reads import SERVER_SETTINGS, asyncpg_dsn
from mailsvc.message.read_repository import list_statement
from mailsvc.search.filter import MessageFilter
from search import TENANT, load_database, start_servers, vacuum_analyze

_ADDRESSES = """'from', m.from_[0], 'to', m."to",\n    'cc', m.cc,"""


def variants() -> list[tuple[str, str, tuple[object, ...]]]:
    sql, args = list_statement(MessageFilter(), order="newest", after=None, limit=51)
    assert _ADDRESSES in sql, "the list statement changed: update this probe"
    ids_only = (
        "SELECT m.id::text, m.internal_date, m.id FROM messages m WHERE m.tenant_id = $1 "
        "ORDER BY m.internal_date DESC, m.id DESC LIMIT $2::int"
    )
    return [
        ("as the product runs it (json_build_object)", sql, args),
        ("jsonb_build_object", sql.replace("json_build_object(", "jsonb_build_object("), args),
        ("without the address fields", sql.replace(_ADDRESSES, ""), args),
        ("ids only (the keyset scan)", ids_only, args),
    ]


def _backend_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / 100


async def probe(database_url: str, rounds: int) -> None:
    connection = await asyncpg.connect(asyncpg_dsn(database_url), server_settings=SERVER_SETTINGS)
    try:
        pid = await connection.fetchval("SELECT pg_backend_pid()")
        for name, sql, args in variants() * 2:
            for _ in range(100):  # prepared and cached, pages in memory
                await connection.fetch(sql, TENANT, *args)
            cpu = _backend_cpu_seconds(pid)
            started = time.perf_counter()
            for _ in range(rounds):
                rows = await connection.fetch(sql, TENANT, *args)
            wall = time.perf_counter() - started
            cpu = _backend_cpu_seconds(pid) - cpu
            size = sum(len(str(row[0])) for row in rows)
            print(
                f"{name:44s} PostgreSQL CPU {cpu / rounds * 1000:.3f} ms, wall "
                f"{wall / rounds * 1000:.3f} ms per statement ({size:,} B of JSON)"
            )
    finally:
        await connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=1_500)
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        servers = start_servers(Path(tempfile.mkdtemp(prefix="mailsvc-sql-probe-")), stack)
        mailbox = generate_mailbox(args.messages, 1)
        asyncio.run(load_database(servers.database_url, mailbox, tenant=TENANT, seed=1))
        asyncio.run(vacuum_analyze(servers.database_url))
        asyncio.run(probe(servers.database_url, args.rounds))


if __name__ == "__main__":
    main()
