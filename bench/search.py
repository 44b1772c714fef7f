"""Search benchmark (issue 4): full-text search through mailsvc's API against notmuch.

One run, everything on loopback and started here (and stopped again, also on Ctrl-C):

1. PostgreSQL and Redis (embedded, or the servers of DATABASE_URL / REDIS_URL; a fresh
   database either way, migrated);
2. the mailbox of bench/searchcorpus.py (100,000 messages by default: English, German,
   Russian and Chinese mail from 300 people over three years, threads, flags,
   attachment metadata), written straight into PostgreSQL for one tenant, account and
   INBOX (COPY), its search documents filled by mailsvc's own
   `SearchIndexRepository.index` in chunks, then `VACUUM (ANALYZE)` (the state
   autovacuum leaves a table in once a first sync has indexed it);
3. the same messages as RFC 822 files in a Maildir, indexed by `notmuch new` (a private
   NOTMUCH_CONFIG and database; `XAPIAN_CJK_NGRAM=1` so notmuch, like mailsvc, finds
   Chinese words inside a sentence; TZ=UTC);
4. 200 searches built from the mailbox's vocabulary (`searchcorpus.QUERY_MIX`: common,
   rare, two words, phrases, OR, exclusions, from:, subject:, date ranges,
   has:attachment, is:unread, German, Russian, Chinese), each with its notmuch
   translation, timed three ways, sequentially (one request, call or process at a
   time), a warm-up pass of each, then `--rounds` (3) rounds in which each way takes its
   turn, so that a busy moment on the shared machine falls on all of them alike:
   - through the HTTP API: `GET /api/messages?q=...&limit=50` on a `mailsvc serve`
     subprocess (uvicorn, one worker), with httpx over one keep-alive connection;
   - in-process: `MessageService(session, tenant).page_json(ListRequest(q=..., limit=50))`,
     the call the endpoint makes (parse, SQL, rows to schemas), on a connection
     already checked out; the SQL part alone is measured too (cursor execute+fetch),
     and, as diagnostics, again without the `ts_headline` excerpts, and again with
     `plan_cache_mode=force_custom_plan` (asyncpg prepares every statement, and after
     five executions PostgreSQL may plan one for all values: the generic plan);
   - `notmuch search --limit=50 --output=messages` as a subprocess (notmuch's Python
     bindings are not installed here), newest first as mailsvc lists; reported with
     and without the cost of starting notmuch and opening its database (the median
     of a search for a Message-ID that does not exist, subtracted);
   plus one pass of `--output=threads` for the record.

Then the figures against the targets (p95 < 50 ms through the API; API p95 no slower
than notmuch's), per-kind percentiles, a sanity check of the results (queries with
hits on both sides, and how much of the first page both agree on), and EXPLAIN
(ANALYZE, BUFFERS) of the slowest query of the four kinds slowest in SQL, custom and
generic plan (printed when the target is missed or with --explain, the generic one
when it differs; always in --json).

mailsvc runs with its defaults except: IDLE off (the account is never connected),
rate limits raised far above the request rate, LOG_LEVEL=WARNING.

Run: `.venv/bin/python bench/search.py [--messages 100000] [--seed 1] [--rounds 3]
[--json FILE] [--explain]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# bench/ is not a package and tests/ is not installed: make both importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import asyncpg
import httpx
from harness import (
    LIVE_CHILDREN,
    Results,
    describe_ms,
    machine_basics,
    percentile,
    quietly,
    run_main,
    summary_ms,
)
from pydantic import SecretStr
from searchcorpus import CorpusMessage, Mailbox, Query, build_queries, generate_mailbox, render
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from tests.fixtures.databases import asyncpg_dsn, create_database, drop_database

from mailsvc.auth.scopes import ALL_SCOPES
from mailsvc.auth.tokens import TokenCodec
from mailsvc.config import Settings, generate_encryption_key
from mailsvc.embedded import EmbeddedPostgres, EmbeddedRedis, free_loopback_port
from mailsvc.kit.db import create_engine, create_sessionmaker
from mailsvc.message.service import ListRequest, MessageService
from mailsvc.mime.text import make_snippet
from mailsvc.search.repository import SearchIndexRepository

BENCH_DIR = Path(__file__).resolve().parent
NOTMUCH = shutil.which("notmuch") or "/usr/bin/notmuch"
TENANT = "bench"
PAGE = 50
API_TARGET_MS = 50.0
INDEX_CHUNK = 2_000
INDEX_CONNECTIONS = 2
SERVE_START_TIMEOUT_SECONDS = 60
# Settings of mailsvc that the environment must not change behind the bench's back.
SETTING_NAMES = frozenset(name.upper() for name in Settings.model_fields)


def machine_description(**versions: str) -> dict[str, Any]:
    return {**machine_basics(), **versions}


# -- servers ------------------------------------------------------------------------------


@dataclass
class Servers:
    server_url: str
    database_url: str
    database_name: str
    redis_url: str
    postgres_version: str = ""
    postgres_settings: str = ""


def start_servers(workdir: Path, stack: contextlib.ExitStack) -> Servers:
    """PostgreSQL and Redis (embedded unless DATABASE_URL / REDIS_URL are set) and a
    fresh migrated database, each registered on `stack` to be stopped or dropped."""
    server_url = os.environ.get("DATABASE_URL")
    if not server_url:
        postgres = EmbeddedPostgres(workdir / "postgres")
        server_url = postgres.start()
        stack.callback(quietly(postgres.stop))
    redis_url = os.environ.get("REDIS_URL")
    if not redis_url:
        redis_server = EmbeddedRedis(workdir / "redis", persist=False)
        redis_url = redis_server.start()
        stack.callback(quietly(redis_server.stop))
    database_url, database_name = asyncio.run(create_database(server_url, prefix="mailsvc_bench"))
    stack.callback(quietly(lambda: asyncio.run(drop_database(server_url, database_name))))
    servers = Servers(server_url, database_url, database_name, redis_url)
    servers.postgres_version, servers.postgres_settings = asyncio.run(_describe(database_url))
    return servers


async def _describe(database_url: str) -> tuple[str, str]:
    """The server's version and the settings that matter most to these queries."""
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        version = str(await connection.fetchval("SHOW server_version"))
        names = ("shared_buffers", "work_mem", "effective_cache_size", "jit", "random_page_cost")
        values = [f"{name}={await connection.fetchval(f'SHOW {name}')}" for name in names]
        return version, " ".join(values)
    finally:
        await connection.close()


@dataclass
class MailsvcServer:
    """`mailsvc serve` in its own process group on a free loopback port."""

    url: str
    process: subprocess.Popen[bytes]
    log_path: Path


def serve_env(servers: Servers, jwt_secret: str, **overrides: str) -> dict[str, str]:
    """The environment of a `mailsvc serve` child: mailsvc's defaults, except what the
    bench must set (servers, secrets, IDLE off, rate limits out of the way)."""
    env = {k: v for k, v in os.environ.items() if k.upper() not in SETTING_NAMES}
    env.update(
        ENVIRONMENT="production",
        DATABASE_URL=servers.database_url,
        REDIS_URL=servers.redis_url,
        JWT_SECRET=jwt_secret,
        ENCRYPTION_KEY=generate_encryption_key(),
        # The bench account has placeholder credentials and no server behind it.
        IDLE_ENABLED="false",
        RATE_LIMIT_REQUESTS_PER_MINUTE="100000000",
        RATE_LIMIT_REQUESTS_PER_HOUR="1000000000",
        LOG_LEVEL="WARNING",
    )
    env.update(overrides)
    return env


def start_process(
    command: Sequence[str], *, env: dict[str, str], cwd: Path, log_path: Path
) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            list(command),
            env=env,
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    LIVE_CHILDREN.add(process)
    return process


def wait_process(process: subprocess.Popen[bytes], *, timeout: float | None = None) -> int:
    """Wait for a child of `start_process` to end on its own; its exit status."""
    returncode = process.wait(timeout=timeout)
    LIVE_CHILDREN.discard(process)
    return returncode


def stop_process(process: subprocess.Popen[bytes], *, timeout: float = 15) -> None:
    """SIGTERM to its group (uvicorn shuts down gracefully), SIGKILL after `timeout`."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    LIVE_CHILDREN.discard(process)


def wait_until_serving(
    url: str, process: subprocess.Popen[bytes], log_path: Path, *, path: str = "/health"
) -> None:
    """Until `url + path` answers 200; raises if the process exits first."""
    deadline = time.monotonic() + SERVE_START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"server exited with {process.returncode}:\n{log_path.read_text()[-4000:]}"
            )
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}{path}", timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"server not up within {SERVE_START_TIMEOUT_SECONDS} s")


def start_mailsvc(
    servers: Servers, jwt_secret: str, workdir: Path, *, name: str = "mailsvc", **overrides: str
) -> MailsvcServer:
    """`python -m mailsvc serve` as deployed (uvicorn, one worker), cwd in `workdir` so
    no `.env` file is read."""
    port = free_loopback_port()
    log_path = workdir / f"{name}.log"
    process = start_process(
        [sys.executable, "-m", "mailsvc", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=serve_env(servers, jwt_secret, **overrides),
        cwd=workdir,
        log_path=log_path,
    )
    url = f"http://127.0.0.1:{port}"
    wait_until_serving(url, process, log_path)
    return MailsvcServer(url, process, log_path)


def mint_token(jwt_secret: str, tenant: str) -> str:
    """An access token as `mailsvc token create` issues it (all scopes, 12 hours)."""
    settings = Settings(_env_file=None, jwt_secret=SecretStr(jwt_secret))
    return TokenCodec(settings).issue(
        subject="bench", tenants=[tenant], scopes=list(ALL_SCOPES), expires_in=12 * 3600
    )


# -- loading PostgreSQL -------------------------------------------------------------------

_MESSAGE_COLUMNS = (
    "id", "tenant_id", "account_id", "mailbox_id", "uid", "uidvalidity", "modseq",
    "message_id_header", "in_reply_to", "references", "subject", "from_", "sender", "to",
    "cc", "bcc", "reply_to", "date", "internal_date", "size", "flags", "thread_id",
    "snippet", "text_body", "has_attachments",
)  # fmt: skip
_THREAD_COLUMNS = (
    "id", "tenant_id", "account_id", "subject", "participants", "message_count",
    "unread_count", "last_message_at",
)  # fmt: skip
_ATTACHMENT_COLUMNS = (
    "id", "tenant_id", "message_id", "section", "filename", "content_type", "encoding",
    "size", "is_inline",
)  # fmt: skip


def _addresses(people: Iterable[Any]) -> str:
    return json.dumps([{"name": p.name, "address": p.address} for p in people])


def _message_record(
    message: CorpusMessage, tenant: str, account_id: uuid.UUID, mailbox_id: uuid.UUID
) -> tuple[Any, ...]:
    return (
        message.id, tenant, account_id, mailbox_id, message.uid, 1, message.uid,
        message.message_id, message.in_reply_to, message.references, message.subject,
        _addresses([message.sender]), "[]", _addresses(message.to), _addresses(message.cc),
        "[]", "[]", message.date, message.internal_date, message.size, message.flags,
        message.thread_id, make_snippet(message.text_body), message.text_body,
        bool(message.attachments),
    )  # fmt: skip


@dataclass
class LoadReport:
    account_id: uuid.UUID
    mailbox_id: uuid.UUID
    copy_seconds: float
    index_seconds: float
    vacuum_seconds: float
    indexed: int
    table_mb: float


async def load_database(
    database_url: str, mailbox: Mailbox, *, tenant: str, seed: int
) -> LoadReport:
    """One account with one INBOX holding `mailbox`, as a finished first sync leaves it.

    Rows go in by COPY; the search documents are then computed by mailsvc's own
    `SearchIndexRepository.index` (the statement a sync runs after each stored batch),
    INDEX_CHUNK messages per transaction on INDEX_CONNECTIONS connections; then VACUUM
    (ANALYZE), which also empties the GIN index's pending list as autovacuum would.
    Every message must have `size` set (see `searchcorpus.rows_of`).
    """
    rng = random.Random(seed)
    account_id = uuid.UUID(int=rng.getrandbits(128), version=4)
    mailbox_id = uuid.UUID(int=rng.getrandbits(128), version=4)
    messages = mailbox.messages
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        started = time.perf_counter()
        async with connection.transaction():
            # Credentials are placeholders: this account is never connected.
            await connection.execute(
                """
                INSERT INTO accounts (id, tenant_id, email, display_name, imap_host, imap_port,
                    imap_security, imap_username, imap_secret, smtp_host, smtp_port,
                    smtp_security, smtp_username, smtp_secret, state)
                VALUES ($1, $2, $3, $4, 'imap.bench.example', 993, 'tls', $3,
                    'bench-placeholder', 'smtp.bench.example', 465, 'tls', $3,
                    'bench-placeholder', 'connected')
                """,
                account_id,
                tenant,
                mailbox.owner.address,
                mailbox.owner.name,
            )
            unseen = sum(1 for m in messages if "\\Seen" not in m.flags)
            await connection.execute(
                """
                INSERT INTO mailboxes (id, tenant_id, account_id, name, delimiter, special_use,
                    subscribed, uidvalidity, uidnext, highestmodseq, messages_total,
                    messages_unseen, messages_synced, sync_state, last_synced_at)
                VALUES ($1, $2, $3, 'INBOX', '/', 'inbox', true, 1, $4, $5, $6, $7, $6,
                    'synced', now())
                """,
                mailbox_id,
                tenant,
                account_id,
                len(messages) + 1,
                len(messages),
                len(messages),
                unseen,
            )
            await connection.copy_records_to_table(
                "threads",
                columns=_THREAD_COLUMNS,
                records=[
                    (
                        thread.id,
                        tenant,
                        account_id,
                        thread.subject.removeprefix("Re: "),
                        _addresses(
                            {
                                p.address: p for m in thread.messages for p in (m.sender, *m.to)
                            }.values()
                        ),
                        len(thread.messages),
                        sum(1 for m in thread.messages if "\\Seen" not in m.flags),
                        thread.messages[-1].internal_date,
                    )
                    for thread in mailbox.threads
                ],
            )
            await connection.copy_records_to_table(
                "messages",
                columns=_MESSAGE_COLUMNS,
                records=(_message_record(m, tenant, account_id, mailbox_id) for m in messages),
            )
            await connection.copy_records_to_table(
                "attachments",
                columns=_ATTACHMENT_COLUMNS,
                records=[
                    (
                        uuid.UUID(int=rng.getrandbits(128), version=4),
                        tenant,
                        message.id,
                        str(section),
                        attachment.filename,
                        attachment.content_type,
                        "base64",
                        len(attachment.payload),
                        False,
                    )
                    for message in messages
                    for section, attachment in enumerate(message.attachments, start=2)
                ],
            )
        copy_seconds = time.perf_counter() - started

        started = time.perf_counter()
        indexed = await _index_search_documents(database_url, [m.id for m in messages], tenant)
        index_seconds = time.perf_counter() - started

        started = time.perf_counter()
        await connection.execute("VACUUM (ANALYZE)")
        vacuum_seconds = time.perf_counter() - started
        table_bytes = await connection.fetchval("SELECT pg_total_relation_size('messages')")
    finally:
        await connection.close()
    return LoadReport(
        account_id=account_id,
        mailbox_id=mailbox_id,
        copy_seconds=copy_seconds,
        index_seconds=index_seconds,
        vacuum_seconds=vacuum_seconds,
        indexed=indexed,
        table_mb=table_bytes / 2**20,
    )


async def _index_search_documents(
    database_url: str, message_ids: Sequence[uuid.UUID], tenant: str
) -> int:
    engine = create_engine(database_url, pool_size=INDEX_CONNECTIONS)
    sessionmaker = create_sessionmaker(engine)
    chunks = [message_ids[i : i + INDEX_CHUNK] for i in range(0, len(message_ids), INDEX_CHUNK)]
    queue: asyncio.Queue[Sequence[uuid.UUID]] = asyncio.Queue()
    for chunk in chunks:
        queue.put_nowait(chunk)
    indexed = 0

    async def indexer() -> None:
        nonlocal indexed
        while not queue.empty():
            chunk = queue.get_nowait()
            async with sessionmaker.begin() as session:
                done = await SearchIndexRepository(session, tenant).index(chunk)
            indexed += done

    try:
        await asyncio.gather(*(indexer() for _ in range(INDEX_CONNECTIONS)))
    finally:
        await engine.dispose()
    return indexed


# -- notmuch ------------------------------------------------------------------------------


@dataclass
class Notmuch:
    """A private notmuch: its own config file (and so its own database)."""

    config: Path

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "NOTMUCH_CONFIG": str(self.config),
            # Index and query Chinese as character bigrams, as mailsvc does.
            "XAPIAN_CJK_NGRAM": "1",
            "TZ": "UTC",
        }

    def run(self, *arguments: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [NOTMUCH, *arguments], env=self.env, capture_output=True, text=True, check=True
        )


_MAILDIR_FLAGS = {"\\Flagged": "F", "\\Answered": "R", "\\Seen": "S"}


def write_maildir(root: Path, messages: Sequence[CorpusMessage]) -> int:
    """Every message as a file in `root/cur` with its Maildir flags; sets `size`."""
    for sub in ("cur", "new", "tmp"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    base = 1_640_995_200
    total = 0
    for message in messages:
        raw = render(message)
        message.size = len(raw)
        flags = "".join(sorted(_MAILDIR_FLAGS[f] for f in message.flags if f in _MAILDIR_FLAGS))
        name = f"{base + message.index}.M{message.index}P1.bench,S={len(raw)}:2,{flags}"
        (root / "cur" / name).write_bytes(raw)
        total += len(raw)
    return total


def setup_notmuch(workdir: Path, maildir: Path) -> Notmuch:
    config = workdir / "notmuch-config"
    config.write_text(
        "[database]\n"
        f"path={maildir}\n"
        "[user]\n"
        "name=Robin Bench\n"
        "primary_email=robin@bench.example\n"
        "[new]\n"
        "tags=unread;inbox;\n"
        "ignore=\n"
        "[search]\n"
        "exclude_tags=\n"
        "[maildir]\n"
        "synchronize_flags=true\n"
    )
    return Notmuch(config=config)


def directory_bytes(path: Path) -> int:
    return sum(entry.stat().st_size for entry in path.rglob("*") if entry.is_file())


# -- measuring ----------------------------------------------------------------------------


@dataclass
class QueryOutcome:
    """Everything measured for one query."""

    query: Query
    api_seconds: list[float] = field(default_factory=list)
    service_seconds: list[float] = field(default_factory=list)
    sql_seconds: list[float] = field(default_factory=list)
    sql_no_highlight_seconds: list[float] = field(default_factory=list)
    sql_custom_plan_seconds: list[float] = field(default_factory=list)
    statements: int = 0
    notmuch_seconds: list[float] = field(default_factory=list)
    notmuch_threads_seconds: list[float] = field(default_factory=list)
    api_ids: list[str] = field(default_factory=list)
    api_response_bytes: int = 0
    notmuch_ids: list[str] = field(default_factory=list)
    error: str | None = None


class _SqlClock:
    """Time spent in cursor execute (asyncpg fetches the rows there too), per call."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.seconds = 0.0
        self.statements = 0
        self.captured: list[tuple[str, Any]] = []
        self.capture = False
        sync_engine = engine.sync_engine
        event.listen(sync_engine, "before_cursor_execute", self._before)
        event.listen(sync_engine, "after_cursor_execute", self._after)

    def _before(self, _conn: Any, _cursor: Any, statement: str, parameters: Any, context: Any,
                _many: bool) -> None:  # fmt: skip
        context._bench_started = time.perf_counter()
        if self.capture:
            self.captured.append((statement, parameters))

    def _after(self, _conn: Any, _cursor: Any, _statement: str, _parameters: Any, context: Any,
               _many: bool) -> None:  # fmt: skip
        self.seconds += time.perf_counter() - context._bench_started
        self.statements += 1


def _without_highlight(service: Any) -> None:
    # Reaches into the service (a bench diagnostic, not an API): same filters, same
    # statement, minus the ts_headline column.
    repository = service._messages
    page = repository.page_json

    async def page_without_highlight(filters: Any, **options: Any) -> Any:
        return await page(filters, **{**options, "highlight": False})

    repository.page_json = page_without_highlight


class _NotmuchSearch:
    """`notmuch search` of a query, a process each, timed from spawn to exit."""

    def __init__(self, notmuch: Notmuch) -> None:
        self.command = [NOTMUCH, "search", f"--limit={PAGE}", "--sort=newest-first"]
        self.env = notmuch.env

    def __call__(self, query: str, *, output: str = "messages") -> tuple[float, list[str]]:
        started = time.perf_counter()
        done = subprocess.run(
            [*self.command, f"--output={output}", "--", query],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )
        elapsed = time.perf_counter() - started
        if done.returncode != 0:
            raise RuntimeError(f"notmuch search {query!r} failed: {done.stderr.strip()}")
        return elapsed, [line.removeprefix("id:") for line in done.stdout.splitlines() if line]


async def measure(
    *,
    server: MailsvcServer,
    token: str,
    database_url: str,
    notmuch: Notmuch,
    outcomes: Sequence[QueryOutcome],
    rounds: int,
) -> dict[str, float]:
    """A warm-up pass of each way, then `rounds` rounds of: every query through the
    API, in-process, and with notmuch, plus two in-process diagnostics (without the
    excerpts; with custom plans forced). Interleaved so that a busy moment on the
    shared machine falls on all of them alike. Sequential: one request, call or process
    at a time. Returns notmuch's start-up baseline.
    """
    engine = create_engine(database_url, pool_size=1)
    # As the service's engine, but PostgreSQL plans every execution for its values:
    # asyncpg prepares (and caches) each statement, and after five executions the
    # server may switch a prepared statement to a generic plan for all values.
    custom_engine = create_async_engine(
        database_url,
        pool_size=1,
        pool_pre_ping=True,
        connect_args={"server_settings": {"plan_cache_mode": "force_custom_plan"}},
    )
    clock, custom_clock = _SqlClock(engine), _SqlClock(custom_engine)
    notmuch_search = _NotmuchSearch(notmuch)
    headers = {"Authorization": f"Bearer {token}"}

    def api_pass(client: httpx.Client, record: bool) -> None:
        for outcome in outcomes:
            if outcome.error:
                continue
            params: dict[str, str | int] = {"q": outcome.query.q, "limit": PAGE}
            started = time.perf_counter()
            response = client.get("/api/messages", params=params)
            elapsed = time.perf_counter() - started
            if response.status_code != 200:
                problem = f"HTTP {response.status_code}: {response.text[:300]}"
                if record:  # it answered 200 in the warm-up
                    raise RuntimeError(f"{outcome.query.q!r}: {problem}")
                outcome.error = problem
            elif record:
                outcome.api_seconds.append(elapsed)
            else:
                outcome.api_ids = [item["id"] for item in response.json()["items"]]
                outcome.api_response_bytes = len(response.content)

    async def service_pass(
        session: AsyncSession, clock: _SqlClock, record: bool, variant: str
    ) -> None:
        for outcome in outcomes:
            if outcome.error:
                continue
            service = MessageService(session, TENANT)
            if variant == "no highlight":
                _without_highlight(service)
            clock.seconds, clock.statements = 0.0, 0
            started = time.perf_counter()
            await service.page_json(ListRequest(q=outcome.query.q, limit=PAGE))
            elapsed = time.perf_counter() - started
            await session.rollback()
            await session.connection()  # the next call's connection, checked out untimed
            if not record:
                continue
            if variant == "service":
                outcome.service_seconds.append(elapsed)
                outcome.sql_seconds.append(clock.seconds)
                outcome.statements = clock.statements
            elif variant == "no highlight":
                outcome.sql_no_highlight_seconds.append(clock.seconds)
            else:
                outcome.sql_custom_plan_seconds.append(clock.seconds)

    def notmuch_pass(record: bool) -> None:
        for outcome in outcomes:
            if outcome.error:
                continue
            elapsed, found = notmuch_search(outcome.query.notmuch)
            if record:
                outcome.notmuch_seconds.append(elapsed)
            else:
                outcome.notmuch_ids = found

    try:
        with httpx.Client(base_url=server.url, headers=headers, timeout=120) as client:
            async with (
                create_sessionmaker(engine)() as session,
                create_sessionmaker(custom_engine)() as custom_session,
            ):
                # A request's session holds one connection for the whole call.
                await session.connection()
                await custom_session.connection()
                for round_number in range(rounds + 1):  # the first is the warm-up
                    record = round_number > 0
                    print(
                        f"  {'round ' + str(round_number) if record else 'warm-up'} "
                        f"(load average {os.getloadavg()[0]:.2f}) ..."
                    )
                    api_pass(client, record)
                    await service_pass(session, clock, record, "service")
                    await service_pass(session, clock, record, "no highlight")
                    await service_pass(custom_session, custom_clock, record, "custom plans")
                    notmuch_pass(record)
    finally:
        await engine.dispose()
        await custom_engine.dispose()

    # Starting notmuch and opening its database: a search that reads no postings.
    empty = "id:no-such-message@bench.example"
    for _ in range(5):
        notmuch_search(empty)
    baseline = [notmuch_search(empty)[0] for _ in range(30 * rounds)]
    for outcome in outcomes:
        if not outcome.error:
            outcome.notmuch_threads_seconds.append(
                notmuch_search(outcome.query.notmuch, output="threads")[0]
            )
    return {
        "startup_median_s": statistics.median(baseline),
        "startup_p95_s": percentile(baseline, 0.95),
    }


# -- explaining ---------------------------------------------------------------------------


async def explain(database_url: str, query: Query) -> dict[str, Any]:
    """EXPLAIN (ANALYZE, BUFFERS) of every statement `MessageService.page_json` runs."""
    engine = create_engine(database_url, pool_size=1)
    clock = _SqlClock(engine)
    try:
        async with create_sessionmaker(engine)() as session:
            clock.capture = True
            await MessageService(session, TENANT).page_json(ListRequest(q=query.q, limit=PAGE))
            clock.capture = False
            plans = []
            connection = await session.connection()
            for number, (statement, parameters) in enumerate(clock.captured):
                plan = {
                    "statement": statement,
                    "parameters": [str(p)[:200] for p in parameters or ()],
                }
                # The custom plan for these values; then the generic plan, which
                # PostgreSQL may switch a prepared statement to after five executions
                # (asyncpg prepares and caches every statement SQLAlchemy sends, and
                # all searches of a kind share one statement text).
                await connection.exec_driver_sql("SET plan_cache_mode = force_custom_plan")
                result = await connection.exec_driver_sql(
                    "EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters
                )
                plan["plan"] = "\n".join(row[0] for row in result.all())
                name = f"bench_plan_{number}"
                await connection.exec_driver_sql(f"PREPARE {name} AS {statement}")
                await connection.exec_driver_sql("SET plan_cache_mode = force_generic_plan")
                arguments = ", ".join(_sql_literal(value) for value in parameters or ())
                result = await connection.exec_driver_sql(
                    f"EXPLAIN (ANALYZE, BUFFERS) EXECUTE {name}({arguments})"
                )
                plan["generic"] = "\n".join(row[0] for row in result.all())
                plans.append(plan)
            await session.rollback()
    finally:
        await engine.dispose()
    return {"kind": query.kind, "q": query.q, "statements": plans}


def _sql_literal(value: Any) -> str:
    """`value` as an SQL literal for EXECUTE (which takes no bind parameters); the
    prepared statement's parameter types convert it."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list | tuple):
        quoted = (str(v).replace("\\", "\\\\").replace('"', '\\"') for v in value)
        value = "{" + ",".join(f'"{v}"' for v in quoted) + "}"
    return "'" + str(value).replace("'", "''") + "'"


def _plan_shape(plan: str) -> list[str]:
    """The plan's nodes without costs and timings, to compare two plans."""
    lines = plan.splitlines()
    return [line.split("  (")[0].strip() for line in lines[:1] + [x for x in lines if "->" in x]]


# -- the run ------------------------------------------------------------------------------


def compare_results(outcomes: Sequence[QueryOutcome], mailbox: Mailbox) -> dict[str, Any]:
    """Which queries found something on each side, and how much of the first page agrees."""
    message_ids = {str(m.id): m.message_id for m in mailbox.messages}
    both = mailsvc_only = notmuch_only = neither = 0
    overlaps: list[float] = []
    disagreements: list[dict[str, Any]] = []
    for outcome in outcomes:
        ours = {message_ids[i] for i in outcome.api_ids}
        theirs = set(outcome.notmuch_ids)
        if ours and theirs:
            both += 1
            overlap = len(ours & theirs) / max(len(ours), len(theirs))
            overlaps.append(overlap)
        elif ours:
            mailsvc_only += 1
        elif theirs:
            notmuch_only += 1
        else:
            neither += 1
        if (ours or theirs) and ours != theirs:
            disagreements.append(
                {
                    "kind": outcome.query.kind,
                    "q": outcome.query.q,
                    "notmuch": outcome.query.notmuch,
                    "mailsvc": len(ours),
                    "notmuch_hits": len(theirs),
                    "common": len(ours & theirs),
                }
            )
    return {
        "both": both,
        "mailsvc_only": mailsvc_only,
        "notmuch_only": notmuch_only,
        "neither": neither,
        "identical_first_page": sum(1 for o in overlaps if o == 1.0),
        "median_overlap": statistics.median(overlaps) if overlaps else 0.0,
        "disagreements": disagreements,
    }


def per_kind_table(outcomes: Sequence[QueryOutcome], startup: float) -> list[dict[str, Any]]:
    """Percentiles per query kind, slowest (API p95) first, with each kind's slowest query."""
    kinds: dict[str, list[QueryOutcome]] = defaultdict(list)
    for outcome in outcomes:
        if not outcome.error:
            kinds[outcome.query.kind].append(outcome)
    table: list[dict[str, Any]] = []
    for kind, group in kinds.items():
        api = [s for o in group for s in o.api_seconds]
        sql = [s for o in group for s in o.sql_seconds]
        sql_bare = [s for o in group for s in o.sql_no_highlight_seconds] or [0.0]
        sql_custom = [s for o in group for s in o.sql_custom_plan_seconds] or [0.0]
        nm = [s for o in group for s in o.notmuch_seconds]
        table.append(
            {
                "kind": kind,
                "queries": len(group),
                "api_p50_ms": percentile(api, 0.5) * 1000,
                "api_p95_ms": percentile(api, 0.95) * 1000,
                "sql_p95_ms": percentile(sql, 0.95) * 1000,
                "sql_no_highlight_p95_ms": percentile(sql_bare, 0.95) * 1000,
                "sql_custom_plan_p95_ms": percentile(sql_custom, 0.95) * 1000,
                "notmuch_p50_ms": percentile(nm, 0.5) * 1000,
                "notmuch_p95_ms": percentile(nm, 0.95) * 1000,
                "notmuch_p95_no_start_ms": max(percentile(nm, 0.95) - startup, 0) * 1000,
                "with_hits": sum(1 for o in group if o.api_ids),
                "slowest": max(group, key=lambda o: statistics.median(o.api_seconds)).query.q,
                "slowest_sql": max(group, key=lambda o: statistics.median(o.sql_seconds)).query.q,
            }
        )
    table.sort(key=lambda row: -row["api_p95_ms"])
    return table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--messages", type=int, default=100_000, help="mailbox size")
    parser.add_argument("--seed", type=int, default=1, help="corpus and query seed")
    parser.add_argument("--rounds", type=int, default=3, help="timed passes over the queries")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    parser.add_argument(
        "--explain", action="store_true", help="print the query plans even when the target is met"
    )


def run_bench(args: argparse.Namespace, stack: contextlib.ExitStack) -> Results:
    results = Results()
    results.data["command"] = " ".join([".venv/bin/python", "bench/search.py", *sys.argv[1:]])
    notmuch_version = subprocess.run(
        [NOTMUCH, "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    workdir = Path(tempfile.mkdtemp(prefix="mailsvc-bench-search-"))
    stack.callback(shutil.rmtree, workdir, ignore_errors=True)

    started = time.perf_counter()
    servers = start_servers(workdir, stack)
    machine = machine_description(
        notmuch=notmuch_version,
        postgres=servers.postgres_version,
        postgres_settings=servers.postgres_settings,
    )
    results.data["machine"] = machine
    print(
        f"machine: {machine['nproc']} CPUs ({machine['cpu']}), {machine['memory_gib']} GiB; "
        f"PostgreSQL {machine['postgres']} ({machine['postgres_settings']}); {notmuch_version}; "
        f"code {machine['code']}"
    )
    print(f"servers up and database migrated in {time.perf_counter() - started:.1f} s")

    # The mailbox, the Maildir (which also gives every message its size), the database.
    started = time.perf_counter()
    mailbox = generate_mailbox(args.messages, args.seed)
    queries = build_queries(mailbox, args.seed)
    generated_in = time.perf_counter() - started
    maildir = workdir / "mail"
    started = time.perf_counter()
    raw_bytes = write_maildir(maildir, mailbox.messages)
    written_in = time.perf_counter() - started
    print(
        f"mailbox: {len(mailbox.messages):,} messages ({len(mailbox.threads):,} threads, "
        f"{raw_bytes / 1e6:,.0f} MB as RFC 822) and {len(queries)} queries generated in "
        f"{generated_in:.1f} s; Maildir written in {written_in:.1f} s"
    )
    # notmuch indexes in the background (one core) while PostgreSQL loads.
    notmuch = setup_notmuch(workdir, maildir)
    started = time.perf_counter()
    indexer = start_process(
        [NOTMUCH, "new", "--quiet"], env=notmuch.env, cwd=workdir, log_path=workdir / "notmuch.log"
    )
    load = asyncio.run(load_database(servers.database_url, mailbox, tenant=TENANT, seed=args.seed))
    if load.indexed != len(mailbox.messages):
        raise RuntimeError(f"indexed {load.indexed} of {len(mailbox.messages)} messages")
    print(
        f"PostgreSQL: COPY {load.copy_seconds:.1f} s, search documents "
        f"{load.index_seconds:.1f} s ({load.indexed / load.index_seconds:,.0f} msg/s), "
        f"VACUUM (ANALYZE) {load.vacuum_seconds:.1f} s; messages table with indexes and "
        f"TOAST {load.table_mb:,.0f} MiB"
    )
    returncode = wait_process(indexer)
    notmuch_new_seconds = time.perf_counter() - started
    if returncode != 0:
        raise RuntimeError(f"notmuch new failed: {(workdir / 'notmuch.log').read_text()[-2000:]}")
    notmuch_count = int(notmuch.run("count", "*").stdout.strip())
    if notmuch_count != len(mailbox.messages):
        raise RuntimeError(f"notmuch indexed {notmuch_count} of {len(mailbox.messages)} messages")
    xapian_mb = directory_bytes(maildir / ".notmuch") / 2**20
    print(
        f"notmuch new (beside the PostgreSQL load): {notmuch_new_seconds:.1f} s; Xapian "
        f"database {xapian_mb:,.0f} MiB"
    )
    results.data["corpus"] = {
        "messages": len(mailbox.messages),
        "threads": len(mailbox.threads),
        "raw_bytes": raw_bytes,
        "seed": args.seed,
        "languages": dict(Counter(m.language for m in mailbox.messages)),
        "with_attachments": sum(1 for m in mailbox.messages if m.attachments),
        "generate_seconds": generated_in,
        "maildir_write_seconds": written_in,
        "copy_seconds": load.copy_seconds,
        "search_index_seconds": load.index_seconds,
        "vacuum_analyze_seconds": load.vacuum_seconds,
        "messages_table_mib": load.table_mb,
        "notmuch_new_seconds": notmuch_new_seconds,
        "xapian_mib": xapian_mb,
    }
    results.add(
        "mailbox",
        f"{len(mailbox.messages):,} messages, {raw_bytes / 1e6:,.0f} MB RFC 822; PostgreSQL "
        f"messages {load.table_mb:,.0f} MiB (load {load.copy_seconds:.0f} s + documents "
        f"{load.index_seconds:.0f} s); notmuch new {notmuch_new_seconds:.0f} s, "
        f"{xapian_mb:,.0f} MiB",
    )

    outcomes = [QueryOutcome(query) for query in queries]

    jwt_secret = secrets.token_urlsafe(48)
    server = start_mailsvc(servers, jwt_secret, workdir)
    try:
        print(
            f"{len(queries)} queries: a warm-up pass, then {args.rounds} rounds of API, "
            "in-process (and its two diagnostics) and notmuch ..."
        )
        startup = asyncio.run(
            measure(
                server=server,
                token=mint_token(jwt_secret, TENANT),
                database_url=servers.database_url,
                notmuch=notmuch,
                outcomes=outcomes,
                rounds=args.rounds,
            )
        )
    finally:
        stop_process(server.process)
    startup_s = startup["startup_median_s"]
    failed = [o for o in outcomes if o.error]
    for outcome in failed:
        print(f"  query refused: {outcome.query.q!r}: {outcome.error}")
    measured = [o for o in outcomes if not o.error]
    if not measured:
        raise RuntimeError("every query failed")

    api = [s for o in measured for s in o.api_seconds]
    service = [s for o in measured for s in o.service_seconds]
    sql = [s for o in measured for s in o.sql_seconds]
    sql_bare = [s for o in measured for s in o.sql_no_highlight_seconds]
    sql_custom = [s for o in measured for s in o.sql_custom_plan_seconds]
    nm = [s for o in measured for s in o.notmuch_seconds]
    nm_bare = [max(s - startup_s, 0.0) for s in nm]
    nm_threads = [s for o in measured for s in o.notmuch_threads_seconds]
    api_p95 = percentile(api, 0.95)
    samples = f"{len(measured)} queries x {args.rounds}"
    results.add(
        f"API GET /api/messages?q=...&limit={PAGE} ({samples})",
        describe_ms(api),
        f"p95 < {API_TARGET_MS:.0f} ms on 100,000 messages",
        api_p95 * 1000 < API_TARGET_MS if args.messages >= 100_000 else None,
    )
    results.add("  in-process MessageService.page", describe_ms(service))
    results.add("  of which SQL (execute + fetch)", describe_ms(sql))
    results.add("  diagnostic: the same SQL without ts_headline", describe_ms(sql_bare))
    results.add(
        "  diagnostic: the same SQL, plan_cache_mode=force_custom_plan", describe_ms(sql_custom)
    )
    results.add(f"notmuch search --output=messages ({samples}), process incl.", describe_ms(nm))
    results.add(
        f"  notmuch start-up + open (median of {30 * args.rounds} empty searches)",
        f"{startup_s * 1000:.1f} ms (p95 {startup['startup_p95_s'] * 1000:.1f} ms)",
    )
    results.add("  notmuch search, start-up subtracted", describe_ms(nm_bare))
    results.add("notmuch search --output=threads (1 pass)", describe_ms(nm_threads))
    results.add(
        "API p95 vs notmuch p95 (process incl.)",
        f"{api_p95 * 1000:.1f} ms vs {percentile(nm, 0.95) * 1000:.1f} ms",
        "API no slower",
        api_p95 <= percentile(nm, 0.95),
    )
    results.add(
        "API p95 vs notmuch p95 (start-up subtracted)",
        f"{api_p95 * 1000:.1f} ms vs {percentile(nm_bare, 0.95) * 1000:.1f} ms",
        "API no slower",
        api_p95 <= percentile(nm_bare, 0.95),
    )
    comparison = compare_results(measured, mailbox)
    results.add(
        "queries with results (sanity)",
        f"both {comparison['both']}, mailsvc only {comparison['mailsvc_only']}, notmuch only "
        f"{comparison['notmuch_only']}, neither {comparison['neither']}"
        + (f"; {len(failed)} refused by the API" if failed else ""),
    )
    results.add(
        "  first page agreement where both found some",
        f"identical {comparison['identical_first_page']} of {comparison['both']}, median "
        f"overlap {comparison['median_overlap']:.0%}",
    )

    kinds = per_kind_table(measured, startup_s)
    print()
    print(
        f"{'kind':<15} {'n':>3} {'API p50':>8} {'API p95':>8} {'SQL p95':>8} {'-hl p95':>8} "
        f"{'cust p95':>8} {'nm p50':>8} "
        f"{'nm p95':>8} {'nm-start':>8} {'hits':>5}  slowest query (API median)"
    )
    for row in kinds:
        print(
            f"{row['kind']:<15} {row['queries']:>3} {row['api_p50_ms']:>8.1f} "
            f"{row['api_p95_ms']:>8.1f} {row['sql_p95_ms']:>8.1f} "
            f"{row['sql_no_highlight_p95_ms']:>8.1f} {row['sql_custom_plan_p95_ms']:>8.1f} "
            f"{row['notmuch_p50_ms']:>8.1f} "
            f"{row['notmuch_p95_ms']:>8.1f} {row['notmuch_p95_no_start_ms']:>8.1f} "
            f"{row['with_hits']:>5}  {row['slowest']}"
        )
    print(
        "(milliseconds; SQL = execute + fetch in MessageService.page; -hl = the same without "
        "ts_headline; cust = the same\n with plan_cache_mode=force_custom_plan; nm = notmuch "
        "search --output=messages; nm-start = its p95 minus start-up)"
    )

    # Plans of the slowest query (in SQL) of each of the four kinds slowest in SQL.
    by_query = {o.query.q: o for o in measured}
    plans = [
        asyncio.run(explain(servers.database_url, by_query[row["slowest_sql"]].query))
        for row in sorted(kinds, key=lambda row: -row["sql_p95_ms"])[:4]
    ]
    if args.explain or api_p95 * 1000 >= API_TARGET_MS:
        for plan in plans:
            print(f"\n=== EXPLAIN (ANALYZE, BUFFERS): {plan['kind']}: {plan['q']}")
            for statement in plan["statements"]:
                print(statement["plan"])
                if _plan_shape(statement["generic"]) != _plan_shape(statement["plan"]):
                    print("--- generic plan (what a prepared statement may switch to):")
                    print(statement["generic"])

    results.data.update(
        api=summary_ms(api),
        service=summary_ms(service),
        sql=summary_ms(sql),
        sql_no_highlight=summary_ms(sql_bare),
        sql_custom_plan=summary_ms(sql_custom),
        notmuch=summary_ms(nm),
        notmuch_without_startup=summary_ms(nm_bare),
        notmuch_threads=summary_ms(nm_threads),
        notmuch_startup=startup,
        comparison=comparison,
        kinds=kinds,
        plans=plans,
        refused=[{"q": o.query.q, "error": o.error} for o in failed],
        queries=[
            {
                "kind": o.query.kind,
                "q": o.query.q,
                "notmuch": o.query.notmuch,
                "api_ms": [round(s * 1000, 2) for s in o.api_seconds],
                "service_ms": [round(s * 1000, 2) for s in o.service_seconds],
                "sql_ms": [round(s * 1000, 2) for s in o.sql_seconds],
                "sql_no_highlight_ms": [round(s * 1000, 2) for s in o.sql_no_highlight_seconds],
                "sql_custom_plan_ms": [round(s * 1000, 2) for s in o.sql_custom_plan_seconds],
                "statements": o.statements,
                "notmuch_ms": [round(s * 1000, 2) for s in o.notmuch_seconds],
                "api_hits": len(o.api_ids),
                "api_response_bytes": o.api_response_bytes,
                "notmuch_hits": len(o.notmuch_ids),
            }
            for o in measured
        ],
        run_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    return results


def main() -> None:
    run_main(__doc__.split("\n\n")[0], add_arguments, run_bench)


if __name__ == "__main__":
    main()
