"""Search benchmark (issues 4 and 13): search through mailsvc's API, both backends, against notmuch.

One run, everything on loopback and started here (and stopped again, also on Ctrl-C):

1. PostgreSQL and Redis (embedded, or the servers of DATABASE_URL / REDIS_URL; a fresh
   database either way, migrated);
2. the mailbox of bench/searchcorpus.py (100,000 messages by default: English, German,
   Russian and Chinese mail from 300 people over three years, threads, flags,
   attachment metadata), written straight into PostgreSQL for one tenant, account and
   INBOX by COPY (the `search_queue` triggers of migration 0013 fire on COPY too: the
   bench checks that every message was queued);
3. the same messages as RFC 822 files in a Maildir, indexed by `notmuch new` (a private
   NOTMUCH_CONFIG and database; `XAPIAN_CJK_NGRAM=1` so notmuch, like mailsvc, finds
   Chinese words inside a sentence; TZ=UTC), beside the COPY;
4. the tenant's search index built the product's way, once per backend, after notmuch
   is done (so nothing else runs meanwhile): `mailsvc search reindex --tenant bench`
   with `SEARCH_BACKEND=tantivy` (an index directory under the bench's
   `SEARCH_INDEX_DIR`), then with `SEARCH_BACKEND=postgres` (the narrow search table);
   time, messages/s and size of each; then `VACUUM (ANALYZE)` (what autovacuum does
   to tables that were just filled);
5. 200 searches built from the mailbox's vocabulary (`searchcorpus.QUERY_MIX`: common,
   rare, two words, phrases, OR, exclusions, from:, subject:, date ranges,
   has:attachment, is:unread, German, Russian, Chinese), each with its notmuch
   translation, timed sequentially (one request, call or process at a time): a
   warm-up pass of each way, then `--rounds` (3) rounds in which each way takes its
   turn, so that a busy moment on the shared machine falls on all of them alike:
   - through the HTTP API, once per backend: `GET /api/messages?q=...&limit=50` on a
     `mailsvc serve` subprocess (uvicorn, one worker) started with that
     `SEARCH_BACKEND`, with httpx over one keep-alive connection;
   - in-process, once per backend: `MessageService(reads, tenant, search=backend)
     .page_json(ListRequest(q=..., limit=50))`, the call the endpoint makes (parse,
     the backend's search, the join of the hits against PostgreSQL, the page's JSON),
     on a read pool of one connection (kit/reads.py) as the api's; split into the
     backend's `search` alone, the join's SQL (execute + fetch on that connection:
     the summaries and, for free text, the start of each body) and the highlight
     excerpts built from
     those bodies (`search.excerpt`, in a worker thread);
   - `notmuch search --limit=50 --output=messages` as a subprocess (notmuch's Python
     bindings are not installed here), newest first as mailsvc lists; reported with
     and without the cost of starting notmuch and opening its database (the median
     of a search for a Message-ID that does not exist, subtracted);
   plus one pass of `--output=threads` for the record;
6. memory (`--rss-tenants 20`, 0 skips it): 20 more tenants of `--messages / 20`
   messages each (their own mailboxes, seeds 2..21), loaded and indexed the same way
   (Tantivy only), then a fresh `mailsvc serve` (SEARCH_BACKEND=tantivy) that opens
   all 20 indexes: one search per tenant, then each tenant's own 200 queries; the api
   process's `VmHWM`, `VmRSS`, `RssAnon` and `RssFile` from /proc/PID/status
   (sampled every 50 ms, and at each step). RSS counts the touched pages of the
   memory-mapped index files (`RssFile`: page cache, shared by every process mapping
   them and reclaimable); `RssAnon` is the process's own memory. Then the same with
   `MALLOC_ARENA_MAX=2` in its environment, as a diagnostic (glibc keeps a malloc
   arena per thread that allocated, and Tantivy runs in asyncio's executor threads).

Then the figures against the targets (issue 13: Tantivy p95 < 20 ms and no slower than
notmuch's p95, p99 < 50 ms; PostgreSQL p95 < 50 ms; peak RSS with 20 tenants' indexes
open < 300 MB), per-kind percentiles, the agreement of the two backends (the same
query must return the same ids in the same order: disagreements are counted and a few
printed), a sanity check against notmuch, and EXPLAIN (ANALYZE, BUFFERS) of the
PostgreSQL backend's statements for the slowest query of its four slowest kinds
(printed when its target is missed or with --explain; always in --json).

mailsvc runs with its defaults except: IDLE off (the account is never connected),
rate limits raised far above the request rate, LOG_LEVEL=WARNING, SEARCH_BACKEND and
SEARCH_INDEX_DIR as above.

Run: `.venv/bin/python bench/search.py [--messages 100000] [--seed 1] [--rounds 3]
[--backends tantivy,postgres] [--rss-tenants 20] [--json FILE] [--explain]`.
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
import threading
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
from searchcorpus import (
    CorpusMessage,
    Mailbox,
    Query,
    build_queries,
    generate_mailbox,
    render,
    rows_of,
)
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine
from tests.fixtures.databases import asyncpg_dsn, create_database, drop_database

from mailsvc.auth.scopes import ALL_SCOPES
from mailsvc.auth.tokens import TokenCodec
from mailsvc.config import Settings, generate_encryption_key
from mailsvc.embedded import EmbeddedPostgres, EmbeddedRedis, free_loopback_port
from mailsvc.kit.db import create_engine, create_sessionmaker
from mailsvc.kit.reads import ReadPool
from mailsvc.message import service as message_service
from mailsvc.message.service import ListRequest, MessageService
from mailsvc.mime.text import make_snippet
from mailsvc.search.backends import open_search_backend
from mailsvc.search.tantivy.store import IndexStore

BENCH_DIR = Path(__file__).resolve().parent
NOTMUCH = shutil.which("notmuch") or "/usr/bin/notmuch"
TENANT = "bench"
PAGE = 50
BACKENDS = ("tantivy", "postgres")
# Issue 13's targets, through the API on 100,000 messages.
TARGET_P95_MS = {"tantivy": 20.0, "postgres": 50.0}
TANTIVY_P99_MS = 50.0
RSS_TARGET_MB = 300.0
RSS_TENANT_PREFIX = "rss"
SERVE_START_TIMEOUT_SECONDS = 60
REINDEX_TIMEOUT_SECONDS = 3600
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
    servers: Servers,
    jwt_secret: str,
    workdir: Path,
    *,
    name: str = "mailsvc",
    workers: int | None = 1,
    **overrides: str,
) -> MailsvcServer:
    """`python -m mailsvc serve` as deployed (uvicorn), cwd in `workdir` so no `.env`
    file is read: `--workers 1` unless `workers` says otherwise (None: serve's own
    default, one process per core; and the only choice before serve had `--workers`)."""
    port = free_loopback_port()
    log_path = workdir / f"{name}.log"
    command = [sys.executable, "-m", "mailsvc", "serve", "--host", "127.0.0.1", "--port", str(port)]
    if workers is not None:
        command += ["--workers", str(workers)]
    process = start_process(
        command,
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
@dataclass
class LoadReport:
    account_id: uuid.UUID
    mailbox_id: uuid.UUID
    copy_seconds: float
    queued: int
    """Rows the `search_queue` triggers added for the tenant during the COPY."""


async def load_database(
    database_url: str, mailbox: Mailbox, *, tenant: str, seed: int
) -> LoadReport:
    """One account with one INBOX holding `mailbox`, as a finished first sync leaves it
    in PostgreSQL (not yet indexed: see `build_index`).

    Rows go in by COPY in one transaction; the triggers on `messages` queue every
    message for the search indexer as they do for a sync's INSERT. Every message must
    have `size` set (see `searchcorpus.rows_of`).
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
        queued = await connection.fetchval(
            "SELECT count(DISTINCT message_id) FROM search_queue WHERE tenant_id = $1", tenant
        )
    finally:
        await connection.close()
    return LoadReport(
        account_id=account_id,
        mailbox_id=mailbox_id,
        copy_seconds=copy_seconds,
        queued=int(queued or 0),
    )


async def vacuum_analyze(database_url: str) -> float:
    """`VACUUM (ANALYZE)` of the database (what autovacuum does to freshly filled
    tables: the planner gets statistics, index-only scans a visibility map); seconds."""
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        started = time.perf_counter()
        await connection.execute("VACUUM (ANALYZE)")
        return time.perf_counter() - started
    finally:
        await connection.close()


async def table_mib(database_url: str, like: str) -> float:
    """Total size (heap, indexes, TOAST) of the tables whose names match `like`, MiB."""
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        size = await connection.fetchval(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind = 'r' AND n.nspname = current_schema() AND c.relname LIKE $1",
            like,
        )
        return float(size) / 2**20
    finally:
        await connection.close()


# -- building the index -------------------------------------------------------------------


@dataclass
class IndexBuild:
    backend: str
    seconds: float
    messages: int
    mib: float
    command: str

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0


def backend_env(
    servers: Servers, jwt_secret: str, backend: str, index_dir: Path, **overrides: str
) -> dict[str, str]:
    """`serve_env` with the search backend chosen and the index directory shared."""
    return serve_env(
        servers,
        jwt_secret,
        SEARCH_BACKEND=backend,
        SEARCH_INDEX_DIR=str(index_dir),
        **overrides,
    )


def reindex(servers: Servers, backend: str, index_dir: Path, workdir: Path, tenant: str) -> float:
    """`mailsvc search reindex --tenant T` as an operator runs it (one process; its
    progress bar goes to a log file); its wall time, process start-up included."""
    command = [sys.executable, "-m", "mailsvc", "search", "reindex", "--tenant", tenant]
    log_path = workdir / f"reindex-{backend}.log"
    env = backend_env(servers, secrets.token_urlsafe(48), backend, index_dir)
    started = time.perf_counter()
    process = start_process(command, env=env, cwd=workdir, log_path=log_path)
    returncode = wait_process(process, timeout=REINDEX_TIMEOUT_SECONDS)
    seconds = time.perf_counter() - started
    if returncode != 0:
        raise RuntimeError(
            f"SEARCH_BACKEND={backend} mailsvc search reindex --tenant {tenant} failed "
            f"({returncode}):\n{log_path.read_text(errors='replace')[-4000:]}"
        )
    return seconds


async def queue_left(database_url: str, tenants: Sequence[str]) -> int:
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        return int(
            await connection.fetchval(
                "SELECT count(*) FROM search_queue WHERE tenant_id = ANY($1::text[])",
                list(tenants),
            )
        )
    finally:
        await connection.close()


def build_index(
    servers: Servers,
    backend: str,
    index_dir: Path,
    workdir: Path,
    tenants: Sequence[str],
    messages: int,
) -> IndexBuild:
    """The tenants' index of `backend` built from PostgreSQL by `mailsvc search reindex`,
    one process per tenant."""
    seconds = sum(reindex(servers, backend, index_dir, workdir, tenant) for tenant in tenants)
    command = f"SEARCH_BACKEND={backend} mailsvc search reindex --tenant " + (
        tenants[0] if len(tenants) == 1 else f"T (x{len(tenants)})"
    )
    left = asyncio.run(queue_left(servers.database_url, tenants))
    if left:
        raise RuntimeError(f"{backend}: {left} rows still queued after the reindex")
    if backend == "tantivy":
        mib = directory_bytes(index_dir) / 2**20
    else:
        mib = asyncio.run(table_mib(servers.database_url, "message_search%"))
    return IndexBuild(backend, seconds, messages, mib, command)


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
class Way:
    """One backend's figures for one query."""

    api_seconds: list[float] = field(default_factory=list)
    page_seconds: list[float] = field(default_factory=list)
    search_seconds: list[float] = field(default_factory=list)
    join_seconds: list[float] = field(default_factory=list)
    excerpt_seconds: list[float] = field(default_factory=list)
    """The highlight excerpts of the page (`message.service._highlighted`)."""
    searches: int = 0
    """`backend.search` calls the page needed (more than one: the join dropped hits)."""
    ids: list[str] = field(default_factory=list)
    response_bytes: int = 0


@dataclass
class QueryOutcome:
    """Everything measured for one query."""

    query: Query
    ways: dict[str, Way] = field(default_factory=dict)
    notmuch_seconds: list[float] = field(default_factory=list)
    notmuch_threads_seconds: list[float] = field(default_factory=list)
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


class _ExcerptClock:
    """Times the page's highlight excerpts: wraps `mailsvc.message.service._highlighted`
    (a bench diagnostic reaching into the service, not an API), which the service runs
    in a worker thread once per page."""

    def __init__(self) -> None:
        self.seconds = 0.0
        highlighted = message_service._highlighted

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return highlighted(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started

        message_service._highlighted = timed


class TimedReads:
    """The service's read pool (kit/reads.py), its statements timed: the join of the
    hits against PostgreSQL (execute and fetch, as the service runs it)."""

    def __init__(self, inner: ReadPool) -> None:
        self._inner = inner
        self.seconds = 0.0

    async def fetch(self, tenant_id: str, sql: str, *args: object) -> Any:
        started = time.perf_counter()
        try:
            return await self._inner.fetch(tenant_id, sql, *args)
        finally:
            self.seconds += time.perf_counter() - started

    async def fetchrow(self, tenant_id: str, sql: str, *args: object) -> Any:
        rows = await self.fetch(tenant_id, sql, *args)
        return rows[0] if rows else None


class TimedBackend:
    """A search backend whose `search` calls are timed (the rest is passed through)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.seconds = 0.0
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def search(self, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return await self._inner.search(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - started
            self.calls += 1


@dataclass
class InProcess:
    """One backend opened in this process, as an api process opens it."""

    name: str
    backend: Any
    """The `SearchBackend`."""
    engine: AsyncEngine | None
    """The engine of its own statements (the PostgreSQL backend), for EXPLAIN."""
    clock: _SqlClock | None


async def open_backend(name: str, settings: Settings) -> tuple[Any, AsyncEngine | None]:
    """The backend `SEARCH_BACKEND=name` gives an api process, opened as the runtime
    opens it (`open_search_backend`), on an engine of its own, so that the join's SQL
    on the service's connection is timed apart from the backend's; and that engine,
    for EXPLAIN (None for Tantivy, which runs no SQL)."""

    async def no_rebuild(tenant_id: str) -> None:
        raise RuntimeError(f"{name}: the index of {tenant_id} is missing or unsound")

    engine = create_engine(settings.async_database_url, pool_size=1)
    backend = open_search_backend(
        settings.model_copy(update={"search_backend": name}),
        sessionmaker=create_sessionmaker(engine),
        request_rebuild=no_rebuild,
    )
    if name == "postgres":
        return backend, engine
    await engine.dispose()  # unused: Tantivy reads its files only
    return backend, None


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
    apis: dict[str, MailsvcServer],
    token: str,
    database_url: str,
    index_dir: Path,
    notmuch: Notmuch,
    outcomes: Sequence[QueryOutcome],
    rounds: int,
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """A warm-up pass of each way, then `rounds` rounds of: every query through each
    backend's API, in-process with each backend, and with notmuch. Interleaved so that
    a busy moment on the shared machine falls on all of them alike. Sequential: one
    request, call or process at a time. Returns notmuch's start-up baseline and the
    EXPLAIN output of the PostgreSQL backend's slowest queries (see `explain`).
    """
    settings = Settings(
        _env_file=None,
        database_url=database_url,
        search_index_dir=index_dir,
        log_level="WARNING",
    )
    # One connection, as a request's statements run one after the other.
    pool = await ReadPool.open(database_url, size=1)
    reads = TimedReads(pool)
    opened: list[InProcess] = []
    for name in apis:
        backend, backend_engine = await open_backend(name, settings)
        opened.append(
            InProcess(
                name,
                backend,
                backend_engine,
                _SqlClock(backend_engine) if backend_engine is not None else None,
            )
        )
    notmuch_search = _NotmuchSearch(notmuch)
    headers = {"Authorization": f"Bearer {token}"}
    excerpts = _ExcerptClock()

    def api_pass(name: str, client: httpx.Client, record: bool) -> None:
        for outcome in outcomes:
            if outcome.error:
                continue
            way = outcome.ways.setdefault(name, Way())
            params: dict[str, str | int] = {"q": outcome.query.q, "limit": PAGE}
            started = time.perf_counter()
            response = client.get("/api/messages", params=params)
            elapsed = time.perf_counter() - started
            if response.status_code != 200:
                problem = f"{name}: HTTP {response.status_code}: {response.text[:300]}"
                if record or response.status_code >= 500:  # it answered 200 in the warm-up
                    log = apis[name].log_path.read_text(errors="replace")[-3000:]
                    raise RuntimeError(f"{outcome.query.q!r}: {problem}\n{name} log:\n{log}")
                outcome.error = problem
            elif record:
                way.api_seconds.append(elapsed)
            else:
                way.ids = [item["id"] for item in response.json()["items"]]
                way.response_bytes = len(response.content)

    async def service_pass(opened: InProcess, record: bool) -> None:
        timed = TimedBackend(opened.backend)
        for outcome in outcomes:
            if outcome.error:
                continue
            service = MessageService(reads, TENANT, search=timed)  # type: ignore[arg-type]
            reads.seconds = timed.seconds = excerpts.seconds = 0.0
            timed.calls = 0
            started = time.perf_counter()
            await service.page_json(ListRequest(q=outcome.query.q, limit=PAGE))
            elapsed = time.perf_counter() - started
            if record:
                way = outcome.ways[opened.name]
                way.page_seconds.append(elapsed)
                way.search_seconds.append(timed.seconds)
                way.join_seconds.append(reads.seconds)
                way.excerpt_seconds.append(excerpts.seconds)
                way.searches = timed.calls

    def notmuch_pass(record: bool) -> None:
        for outcome in outcomes:
            if outcome.error:
                continue
            elapsed, found = notmuch_search(outcome.query.notmuch)
            if record:
                outcome.notmuch_seconds.append(elapsed)
            else:
                outcome.notmuch_ids = found

    clients = {
        name: httpx.Client(base_url=server.url, headers=headers, timeout=120)
        for name, server in apis.items()
    }
    try:
        for round_number in range(rounds + 1):  # the first is the warm-up
            record = round_number > 0
            print(
                f"  {'round ' + str(round_number) if record else 'warm-up'} "
                f"(load average {os.getloadavg()[0]:.2f}) ..."
            )
            for name, client in clients.items():
                api_pass(name, client, record)
            for backend in opened:
                await service_pass(backend, record)
            notmuch_pass(record)
    finally:
        for client in clients.values():
            client.close()
        await pool.close()

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
    startup = {
        "startup_median_s": statistics.median(baseline),
        "startup_p95_s": percentile(baseline, 0.95),
    }
    # Plans of the PostgreSQL backend's statements for the slowest query of its four
    # slowest kinds (in this event loop: the backend's pool belongs to it).
    plans: list[dict[str, Any]] = []
    postgres = next((o for o in opened if o.name == "postgres"), None)
    measured = [o for o in outcomes if not o.error]
    if postgres is not None and measured:
        kinds = per_kind_table(measured, list(apis), startup["startup_median_s"])
        by_query = {o.query.q: o for o in measured}
        for row in sorted(kinds, key=lambda row: -row["postgres_search_p95_ms"])[:4]:
            query = by_query[row["postgres_slowest"]].query
            plans.append(await explain(postgres, database_url, query))
    for backend in opened:
        await backend.backend.aclose()
        if backend.engine is not None:
            await backend.engine.dispose()
    return startup, plans


# -- explaining ---------------------------------------------------------------------------


async def explain(opened: InProcess, database_url: str, query: Query) -> dict[str, Any]:
    """EXPLAIN (ANALYZE, BUFFERS) of every statement the PostgreSQL backend runs for
    `query` (its own engine's statements, not the join)."""
    if opened.engine is None or opened.clock is None:
        return {"kind": query.kind, "q": query.q, "statements": []}
    reads = await ReadPool.open(database_url, size=1)
    clock = opened.clock
    try:
        clock.captured = []
        clock.capture = True
        service = MessageService(reads, TENANT, search=opened.backend)
        await service.page_json(ListRequest(q=query.q, limit=PAGE))
        clock.capture = False
        plans = []
        async with opened.engine.connect() as connection:
            for statement, parameters in clock.captured:
                result = await connection.exec_driver_sql(
                    "EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters
                )
                plans.append(
                    {
                        "statement": statement,
                        "parameters": [str(p)[:200] for p in parameters or ()],
                        "plan": "\n".join(row[0] for row in result.all()),
                    }
                )
            await connection.rollback()
    finally:
        await reads.close()
    return {"kind": query.kind, "q": query.q, "statements": plans}


# -- memory with many tenants' indexes -----------------------------------------------------


_STATUS_FIELDS = ("VmHWM", "VmRSS", "RssAnon", "RssFile", "RssShmem")


def process_memory(pid: int) -> dict[str, float]:
    """The memory lines of /proc/PID/status that matter here, in MiB."""
    found = dict.fromkeys(_STATUS_FIELDS, 0.0)
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in found:
                found[name] = int(value.split()[0]) / 1024
    return found


class MemorySampler(threading.Thread):
    """The largest VmRSS, RssAnon and RssFile of one process, sampled every 50 ms."""

    def __init__(self, pid: int) -> None:
        super().__init__(name=f"memory-{pid}", daemon=True)
        self.pid = pid
        self.peaks = dict.fromkeys(_STATUS_FIELDS, 0.0)
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            for name, value in process_memory(self.pid).items():
                self.peaks[name] = max(self.peaks[name], value)
            self.stop.wait(0.05)


def measure_rss(
    args: argparse.Namespace,
    servers: Servers,
    jwt_secret: str,
    index_dir: Path,
    workdir: Path,
    results: Results,
) -> dict[str, Any]:
    """Step 6 of the module docstring: one api process, `--rss-tenants` indexes."""
    count = args.rss_tenants
    per_tenant = max(args.messages // count, 1)
    tenants = [f"{RSS_TENANT_PREFIX}-{number:02d}" for number in range(count)]
    print(
        f"memory: {count} tenants of {per_tenant:,} messages (their own mailboxes), loaded "
        "and indexed (Tantivy) ..."
    )
    started = time.perf_counter()
    queries: dict[str, list[Query]] = {}
    copy_seconds = 0.0
    for number, tenant in enumerate(tenants):
        seed = args.seed + 1 + number
        mailbox = generate_mailbox(per_tenant, seed)
        for _ in rows_of(mailbox.messages):
            pass
        queries[tenant] = build_queries(mailbox, seed)
        load = asyncio.run(load_database(servers.database_url, mailbox, tenant=tenant, seed=seed))
        copy_seconds += load.copy_seconds
    prepared = time.perf_counter() - started
    build = build_index(servers, "tantivy", index_dir, workdir, tenants, per_tenant * count)
    asyncio.run(vacuum_analyze(servers.database_url))
    store = IndexStore(index_dir)
    tenant_mib = [directory_bytes(store.directory(tenant)) for tenant in tenants]
    print(
        f"    generated and loaded in {prepared:.0f} s (COPY {copy_seconds:.0f} s); indexed in "
        f"{build.seconds:.1f} s ({build.rate:,.0f} msg/s)"
    )

    steps, peaks = api_memory(servers, jwt_secret, workdir, index_dir, queries)
    peak = max(step["VmHWM"] for step in steps.values())
    last = list(steps.values())[-1]
    results.add(
        f"api process with {count} tenants' Tantivy indexes open ({per_tenant:,} messages "
        f"each), peak RSS (VmHWM)",
        f"{peak:.0f} MiB = {peak * 2**20 / 1e6:.0f} MB; at the end VmRSS {last['VmRSS']:.0f} = "
        f"anon {last['RssAnon']:.0f} + file {last['RssFile']:.0f} (+ shmem "
        f"{last['RssShmem']:.0f}) MiB; largest anon seen {peaks['RssAnon']:.0f} MiB",
        f"< {RSS_TARGET_MB:.0f} MB, read as VmHWM (file pages included)",
        peak * 2**20 / 1e6 < RSS_TARGET_MB,
    )
    for label, step in steps.items():
        results.add(
            f"  {label}",
            f"VmRSS {step['VmRSS']:.0f} MiB (anon {step['RssAnon']:.0f}, file "
            f"{step['RssFile']:.0f}), VmHWM {step['VmHWM']:.0f} MiB",
        )
    # Diagnostic: glibc gives each thread that allocates its own malloc arena and keeps
    # what it freed; Tantivy calls run in asyncio's default executor (several threads).
    arena_steps, arena_peaks = api_memory(
        servers, jwt_secret, workdir, index_dir, queries, MALLOC_ARENA_MAX="2"
    )
    arena_last = list(arena_steps.values())[-1]
    results.add(
        "  diagnostic: the same with MALLOC_ARENA_MAX=2",
        f"VmHWM {max(step['VmHWM'] for step in arena_steps.values()):.0f} MiB; at the end "
        f"anon {arena_last['RssAnon']:.0f} + file {arena_last['RssFile']:.0f} MiB (started: anon "
        f"{arena_steps['started']['RssAnon']:.0f})",
    )
    results.add(
        f"  {count} indexes on disk",
        f"{sum(tenant_mib) / 2**20:.0f} MiB ({min(tenant_mib) / 2**20:.1f}-"
        f"{max(tenant_mib) / 2**20:.1f} MiB each); built in {build.seconds:.1f} s "
        f"({build.rate:,.0f} msg/s)",
    )
    return {
        "tenants": count,
        "messages_per_tenant": per_tenant,
        "steps": steps,
        "sampled_peaks_mib": peaks,
        "malloc_arena_max_2": {"steps": arena_steps, "sampled_peaks_mib": arena_peaks},
        "index_mib": sum(tenant_mib) / 2**20,
        "build_seconds": build.seconds,
        "build_command": build.command,
    }


def api_memory(
    servers: Servers,
    jwt_secret: str,
    workdir: Path,
    index_dir: Path,
    queries: dict[str, list[Query]],
    **overrides: str,
) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """A fresh `mailsvc serve` (Tantivy) searching every tenant of `queries`: its
    memory after start, after one search per tenant, after all of each tenant's
    queries, and after them again; and the peaks sampled meanwhile."""
    server = start_mailsvc(
        servers,
        jwt_secret,
        workdir,
        name="mailsvc-rss",
        SEARCH_BACKEND="tantivy",
        SEARCH_INDEX_DIR=str(index_dir),
        workers=1,
        **overrides,
    )
    pid = server.process.pid
    sampler = MemorySampler(pid)
    sampler.start()
    steps: dict[str, dict[str, float]] = {"started": process_memory(pid)}
    clients = {
        tenant: httpx.Client(
            base_url=server.url,
            headers={"Authorization": f"Bearer {mint_token(jwt_secret, tenant)}"},
            timeout=120,
        )
        for tenant in queries
    }
    try:
        for tenant, client in clients.items():
            _get_ok(client, queries[tenant][0].q)
        steps["one search per tenant"] = process_memory(pid)
        for tenant, client in clients.items():
            for query in queries[tenant]:
                _get_ok(client, query.q)
        steps[f"{max(len(q) for q in queries.values())} queries per tenant"] = process_memory(pid)
        for tenant, client in clients.items():
            for query in queries[tenant]:
                _get_ok(client, query.q)
        steps["the same again"] = process_memory(pid)
    finally:
        for client in clients.values():
            client.close()
        sampler.stop.set()
        sampler.join()
        stop_process(server.process)
    return steps, sampler.peaks


def _get_ok(client: httpx.Client, q: str) -> None:
    response = client.get("/api/messages", params={"q": q, "limit": PAGE})
    if response.status_code != 200:
        raise RuntimeError(f"{q!r}: HTTP {response.status_code}: {response.text[:300]}")


# -- the run ------------------------------------------------------------------------------


def compare_backends(
    outcomes: Sequence[QueryOutcome], mailbox: Mailbox, names: Sequence[str]
) -> dict[str, Any]:
    """Whether the backends returned the same first page (ids, in order) for each query."""
    if len(names) < 2:
        return {"compared": 0, "identical": 0, "disagreements": []}
    first, second = names[0], names[1]
    by_id = {str(m.id): m for m in mailbox.messages}
    identical = same_set = 0
    disagreements: list[dict[str, Any]] = []
    for outcome in outcomes:
        a, b = outcome.ways[first].ids, outcome.ways[second].ids
        if a == b:
            identical += 1
            continue
        if set(a) == set(b):
            same_set += 1
        only_a = [i for i in a if i not in set(b)]
        only_b = [i for i in b if i not in set(a)]

        def described(ids: list[str]) -> list[str]:
            return [
                f"{by_id[i].internal_date:%Y-%m-%d %H:%M} {by_id[i].subject[:40]!r}"
                if i in by_id
                else i
                for i in ids[:2]
            ]

        disagreements.append(
            {
                "kind": outcome.query.kind,
                "q": outcome.query.q,
                first: len(a),
                second: len(b),
                "common": len(set(a) & set(b)),
                "same_set_other_order": set(a) == set(b),
                f"only_{first}": described(only_a),
                f"only_{second}": described(only_b),
            }
        )
    return {
        "compared": len(outcomes),
        "identical": identical,
        "same_set_other_order": same_set,
        "disagreements": disagreements,
    }


def compare_with_notmuch(
    outcomes: Sequence[QueryOutcome], mailbox: Mailbox, name: str
) -> dict[str, Any]:
    """Which queries found something on each side, and how much of the first page agrees."""
    message_ids = {str(m.id): m.message_id for m in mailbox.messages}
    both = mailsvc_only = notmuch_only = neither = 0
    overlaps: list[float] = []
    for outcome in outcomes:
        ours = {message_ids[i] for i in outcome.ways[name].ids}
        theirs = set(outcome.notmuch_ids)
        if ours and theirs:
            both += 1
            overlaps.append(len(ours & theirs) / max(len(ours), len(theirs)))
        elif ours:
            mailsvc_only += 1
        elif theirs:
            notmuch_only += 1
        else:
            neither += 1
    return {
        "both": both,
        "mailsvc_only": mailsvc_only,
        "notmuch_only": notmuch_only,
        "neither": neither,
        "identical_first_page": sum(1 for o in overlaps if o == 1.0),
        "median_overlap": statistics.median(overlaps) if overlaps else 0.0,
    }


def per_kind_table(
    outcomes: Sequence[QueryOutcome], names: Sequence[str], startup: float
) -> list[dict[str, Any]]:
    """Percentiles per query kind, slowest (first backend's API p95) first."""
    kinds: dict[str, list[QueryOutcome]] = defaultdict(list)
    for outcome in outcomes:
        kinds[outcome.query.kind].append(outcome)
    table: list[dict[str, Any]] = []
    for kind, group in kinds.items():
        row: dict[str, Any] = {"kind": kind, "queries": len(group)}
        for name in names:
            api = [s for o in group for s in o.ways[name].api_seconds]
            search = [s for o in group for s in o.ways[name].search_seconds]
            excerpt = [s for o in group for s in o.ways[name].excerpt_seconds]
            row[f"{name}_p50_ms"] = percentile(api, 0.5) * 1000
            row[f"{name}_p95_ms"] = percentile(api, 0.95) * 1000
            row[f"{name}_search_p95_ms"] = percentile(search, 0.95) * 1000
            row[f"{name}_excerpt_p95_ms"] = percentile(excerpt, 0.95) * 1000
            row[f"{name}_slowest"] = max(
                group, key=lambda o, n=name: statistics.median(o.ways[n].api_seconds)
            ).query.q
            row[f"{name}_with_hits"] = sum(1 for o in group if o.ways[name].ids)
        nm = [s for o in group for s in o.notmuch_seconds]
        row["notmuch_p50_ms"] = percentile(nm, 0.5) * 1000
        row["notmuch_p95_ms"] = percentile(nm, 0.95) * 1000
        row["notmuch_p95_no_start_ms"] = max(percentile(nm, 0.95) - startup, 0) * 1000
        table.append(row)
    table.sort(key=lambda row: -row[f"{names[0]}_p95_ms"])
    return table


def print_kinds(kinds: Sequence[dict[str, Any]], names: Sequence[str]) -> None:
    print()
    header = f"{'kind':<15} {'n':>3}"
    for name in names:
        short = name[:2]
        header += (
            f" {short + ' p50':>7} {short + ' p95':>7} {short + ' s95':>7} {short + ' x95':>7}"
        )
    header += f" {'nm p50':>7} {'nm p95':>7} {'hits':>5}  slowest query ({names[0]}, API median)"
    print(header)
    for row in kinds:
        line = f"{row['kind']:<15} {row['queries']:>3}"
        for name in names:
            line += (
                f" {row[f'{name}_p50_ms']:>7.1f} {row[f'{name}_p95_ms']:>7.1f}"
                f" {row[f'{name}_search_p95_ms']:>7.1f} {row[f'{name}_excerpt_p95_ms']:>7.1f}"
            )
        line += (
            f" {row['notmuch_p50_ms']:>7.1f} {row['notmuch_p95_ms']:>7.1f}"
            f" {row[f'{names[0]}_with_hits']:>5}  {row[f'{names[0]}_slowest']}"
        )
        print(line)
    print(
        "(milliseconds; ta/po p50, p95 = through the API with SEARCH_BACKEND=tantivy/postgres; "
        "s95 = p95 of the\n backend's search alone, in-process; x95 = p95 of the "
        "page's excerpts; nm = notmuch search --output=messages, process incl.)"
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--messages", type=int, default=100_000, help="mailbox size")
    parser.add_argument("--seed", type=int, default=1, help="corpus and query seed")
    parser.add_argument("--rounds", type=int, default=3, help="timed passes over the queries")
    parser.add_argument(
        "--backends", default=",".join(BACKENDS), help="search backends to measure, in order"
    )
    parser.add_argument(
        "--rss-tenants",
        type=int,
        default=20,
        help="tenants of --messages/N messages for the memory figure (0: skip it)",
    )
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    parser.add_argument(
        "--explain",
        action="store_true",
        help="print the PostgreSQL backend's plans even when its target is met",
    )


def run_bench(args: argparse.Namespace, stack: contextlib.ExitStack) -> Results:
    results = Results()
    results.data["command"] = " ".join([".venv/bin/python", "bench/search.py", *sys.argv[1:]])
    names = [name.strip() for name in args.backends.split(",") if name.strip()]
    if not names or any(name not in BACKENDS for name in names):
        raise SystemExit(f"--backends: a comma-separated list of {', '.join(BACKENDS)}")
    notmuch_version = subprocess.run(
        [NOTMUCH, "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    workdir = Path(tempfile.mkdtemp(prefix="mailsvc-bench-search-"))
    stack.callback(shutil.rmtree, workdir, ignore_errors=True)
    index_dir = workdir / "search-index"

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
        f"code {machine['code']}; load average {os.getloadavg()[0]:.2f}"
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
    print(
        f"PostgreSQL: COPY {load.copy_seconds:.1f} s; the triggers queued "
        f"{load.queued:,} of {len(mailbox.messages):,} messages for the indexer"
    )
    if load.queued != len(mailbox.messages):
        raise RuntimeError("the search_queue triggers did not queue every COPYed message")
    returncode = wait_process(indexer)
    notmuch_new_seconds = time.perf_counter() - started
    if returncode != 0:
        raise RuntimeError(f"notmuch new failed: {(workdir / 'notmuch.log').read_text()[-2000:]}")
    notmuch_count = int(notmuch.run("count", "*").stdout.strip())
    if notmuch_count != len(mailbox.messages):
        raise RuntimeError(f"notmuch indexed {notmuch_count} of {len(mailbox.messages)} messages")
    xapian_mb = directory_bytes(maildir / ".notmuch") / 2**20
    print(
        f"notmuch new (beside the COPY): {notmuch_new_seconds:.1f} s; Xapian database "
        f"{xapian_mb:,.0f} MiB"
    )

    # The indexes, one backend after the other, with nothing else running.
    builds: dict[str, IndexBuild] = {}
    for name in names:
        print(f"building the {name} index (load average {os.getloadavg()[0]:.2f}) ...")
        builds[name] = build_index(
            servers, name, index_dir, workdir, [TENANT], len(mailbox.messages)
        )
        print(
            f"    {builds[name].seconds:.1f} s = {builds[name].rate:,.0f} msg/s, "
            f"{builds[name].mib:,.0f} MiB"
        )
    vacuum_seconds = asyncio.run(vacuum_analyze(servers.database_url))
    messages_mib = asyncio.run(table_mib(servers.database_url, "messages"))
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
        "queued_by_copy": load.queued,
        "vacuum_analyze_seconds": vacuum_seconds,
        "messages_table_mib": messages_mib,
        "notmuch_new_seconds": notmuch_new_seconds,
        "xapian_mib": xapian_mb,
        "index_builds": {
            name: build.__dict__ | {"rate": build.rate} for name, build in builds.items()
        },
    }
    results.add(
        "mailbox",
        f"{len(mailbox.messages):,} messages, {raw_bytes / 1e6:,.0f} MB RFC 822; PostgreSQL "
        f"messages {messages_mib:,.0f} MiB (COPY {load.copy_seconds:.0f} s, "
        f"{load.queued:,} queued by the triggers); notmuch new {notmuch_new_seconds:.0f} s, "
        f"{xapian_mb:,.0f} MiB",
    )
    for name, build in builds.items():
        results.add(
            f"[{name}] index build ({build.command})",
            f"{build.seconds:.1f} s = {build.rate:,.0f} msg/s (process incl. start-up); "
            f"{build.mib:,.0f} MiB",
        )

    outcomes = [QueryOutcome(query) for query in queries]
    jwt_secret = secrets.token_urlsafe(48)
    apis: dict[str, MailsvcServer] = {}
    try:
        for name in names:
            apis[name] = start_mailsvc(
                servers,
                jwt_secret,
                workdir,
                name=f"mailsvc-{name}",
                SEARCH_BACKEND=name,
                SEARCH_INDEX_DIR=str(index_dir),
            )
        print(
            f"{len(queries)} queries: a warm-up pass, then {args.rounds} rounds of the API "
            f"({', '.join(names)}), in-process (each backend) and notmuch ..."
        )
        startup, plans = asyncio.run(
            measure(
                apis=apis,
                token=mint_token(jwt_secret, TENANT),
                database_url=servers.database_url,
                index_dir=index_dir,
                notmuch=notmuch,
                outcomes=outcomes,
                rounds=args.rounds,
            )
        )
    finally:
        for server in apis.values():
            stop_process(server.process)
    startup_s = startup["startup_median_s"]
    failed = [o for o in outcomes if o.error]
    for outcome in failed:
        print(f"  query refused: {outcome.query.q!r}: {outcome.error}")
    measured = [o for o in outcomes if not o.error]
    if not measured:
        raise RuntimeError("every query failed")

    nm = [s for o in measured for s in o.notmuch_seconds]
    nm_bare = [max(s - startup_s, 0.0) for s in nm]
    nm_threads = [s for o in measured for s in o.notmuch_threads_seconds]
    nm_p95 = percentile(nm, 0.95)
    full_size = args.messages >= 100_000
    samples = f"{len(measured)} queries x {args.rounds}"
    summaries: dict[str, dict[str, Any]] = {}
    for name in names:
        api = [s for o in measured for s in o.ways[name].api_seconds]
        page = [s for o in measured for s in o.ways[name].page_seconds]
        search = [s for o in measured for s in o.ways[name].search_seconds]
        join = [s for o in measured for s in o.ways[name].join_seconds]
        excerpt = [s for o in measured for s in o.ways[name].excerpt_seconds]
        p95, p99 = percentile(api, 0.95), percentile(api, 0.99)
        target = TARGET_P95_MS[name]
        results.add(
            f"[{name}] API GET /api/messages?q=...&limit={PAGE} ({samples})",
            describe_ms(api),
            f"p95 < {target:.0f} ms on 100,000 messages",
            p95 * 1000 < target if full_size else None,
        )
        if name == "tantivy":
            results.add(
                "  p99",
                f"{p99 * 1000:.1f} ms",
                f"< {TANTIVY_P99_MS:.0f} ms",
                p99 * 1000 < TANTIVY_P99_MS if full_size else None,
            )
            results.add(
                "  p95 vs notmuch p95 (process incl.)",
                f"{p95 * 1000:.1f} ms vs {nm_p95 * 1000:.1f} ms",
                "no slower",
                p95 <= nm_p95,
            )
            results.add(
                "  p95 vs notmuch p95 (start-up subtracted)",
                f"{p95 * 1000:.1f} ms vs {percentile(nm_bare, 0.95) * 1000:.1f} ms",
                "(for the record)",
                p95 <= percentile(nm_bare, 0.95),
            )
        results.add("  in-process MessageService.page_json", describe_ms(page))
        results.add(f"    of which {name} backend.search", describe_ms(search))
        results.add("    of which the join's SQL (execute + fetch)", describe_ms(join))
        results.add("    of which the highlight excerpts (search.excerpt)", describe_ms(excerpt))
        several = sum(1 for o in measured if o.ways[name].searches > 1)
        if several:
            results.add(
                "    pages that needed more than one backend.search",
                f"{several} (hits the join dropped)",
            )
        summaries[name] = {
            "api": summary_ms(api),
            "page": summary_ms(page),
            "search": summary_ms(search),
            "join": summary_ms(join),
            "excerpts": summary_ms(excerpt),
        }
    results.add(f"notmuch search --output=messages ({samples}), process incl.", describe_ms(nm))
    results.add(
        f"  notmuch start-up + open (median of {30 * args.rounds} empty searches)",
        f"{startup_s * 1000:.1f} ms (p95 {startup['startup_p95_s'] * 1000:.1f} ms)",
    )
    results.add("  notmuch search, start-up subtracted", describe_ms(nm_bare))
    results.add("notmuch search --output=threads (1 pass)", describe_ms(nm_threads))

    agreement = compare_backends(measured, mailbox, names)
    if len(names) > 1:
        results.add(
            f"agreement: same first page (ids in order) from {names[0]} and {names[1]}",
            f"{agreement['identical']} of {agreement['compared']} queries; "
            f"{len(agreement['disagreements'])} disagree ("
            f"{agreement['same_set_other_order']} of them in order only)",
            "all the same",
            not agreement["disagreements"],
        )
        for row in agreement["disagreements"][:8]:
            print(
                f"    {row['kind']}: {row['q']!r}: {names[0]} {row[names[0]]} hits, "
                f"{names[1]} {row[names[1]]}, common {row['common']}"
                + (" (same ids, other order)" if row["same_set_other_order"] else "")
                + f"; only {names[0]}: {row[f'only_{names[0]}']}; only {names[1]}: "
                f"{row[f'only_{names[1]}']}"
            )
    sanity = {name: compare_with_notmuch(measured, mailbox, name) for name in names}
    for name, comparison in sanity.items():
        results.add(
            f"[{name}] queries with results vs notmuch (sanity)",
            f"both {comparison['both']}, mailsvc only {comparison['mailsvc_only']}, notmuch "
            f"only {comparison['notmuch_only']}, neither {comparison['neither']}; first page "
            f"identical {comparison['identical_first_page']} of {comparison['both']}, median "
            f"overlap {comparison['median_overlap']:.0%}"
            + (f"; {len(failed)} refused by the API" if failed else ""),
        )

    kinds = per_kind_table(measured, names, startup_s)
    print_kinds(kinds, names)

    missed = "postgres" in summaries and (
        summaries["postgres"]["api"]["p95_ms"] >= TARGET_P95_MS["postgres"]
    )
    if plans and (args.explain or missed):
        for plan in plans:
            print(
                f"\n=== EXPLAIN (ANALYZE, BUFFERS), postgres backend: {plan['kind']}: {plan['q']}"
            )
            for statement in plan["statements"]:
                print(statement["plan"])

    rss: dict[str, Any] = {}
    if args.rss_tenants > 0:
        rss = measure_rss(args, servers, jwt_secret, index_dir, workdir, results)

    results.data.update(
        backends=names,
        summaries=summaries,
        notmuch=summary_ms(nm),
        notmuch_without_startup=summary_ms(nm_bare),
        notmuch_threads=summary_ms(nm_threads),
        notmuch_startup=startup,
        agreement=agreement,
        notmuch_comparison=sanity,
        kinds=kinds,
        plans=plans,
        rss=rss,
        refused=[{"q": o.query.q, "error": o.error} for o in failed],
        queries=[
            {
                "kind": o.query.kind,
                "q": o.query.q,
                "notmuch": o.query.notmuch,
                **{
                    name: {
                        "api_ms": [round(s * 1000, 2) for s in way.api_seconds],
                        "page_ms": [round(s * 1000, 2) for s in way.page_seconds],
                        "search_ms": [round(s * 1000, 2) for s in way.search_seconds],
                        "join_ms": [round(s * 1000, 2) for s in way.join_seconds],
                        "excerpt_ms": [round(s * 1000, 2) for s in way.excerpt_seconds],
                        "searches": way.searches,
                        "hits": len(way.ids),
                        "response_bytes": way.response_bytes,
                    }
                    for name, way in o.ways.items()
                },
                "notmuch_ms": [round(s * 1000, 2) for s in o.notmuch_seconds],
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
