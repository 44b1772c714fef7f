"""The composition root: what one process shares, built in one place for the api and the worker.

`open_runtime(settings, role=...)` builds the database engine, Redis, the secret box,
the parser pool and the long-lived services, starts those that run in the
background, and on exit, or when a later step fails, releases everything it built
in reverse order. The api's lifespan and the worker's startup both call it; nothing
else constructs these objects.

    api     Resources + tokens, API key revocations, change listener (SSE), search
            backend (readers), outbox dispatcher (immediate sends), and with
            IDLE_ENABLED the parser pool, sync engine and IDLE supervisor
    worker  Resources + tokens, change listener (webhook fan-out), search backend and
            the search indexer with its own listener, parser pool, sync engine,
            outbox sender, webhook client, fan-out and deliverer, and with
            WORKER_METRICS_PORT its `GET /metrics` server
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from arq.connections import ArqRedis

from mailsvc.account.logins import AccountLogins
from mailsvc.auth.revocations import ApiKeyRevocations
from mailsvc.auth.tokens import TokenCodec
from mailsvc.config import Settings
from mailsvc.event.listener import ChangeListener, listen_dsn
from mailsvc.kit.crypto import SecretBox
from mailsvc.kit.db import create_engine, create_sessionmaker
from mailsvc.kit.mailserver import tls_context
from mailsvc.kit.ratelimit import account_send_limiter, tenant_request_limiter
from mailsvc.kit.reads import ReadPool
from mailsvc.kit.redis import create_redis
from mailsvc.kit.resources import Resources
from mailsvc.ops.capacity import database_pool_sizes
from mailsvc.ops.worker_metrics import serve_worker_metrics
from mailsvc.outbox.dispatch import OutboxDispatcher
from mailsvc.outbox.sender import OutboxSender
from mailsvc.search.backend import SearchBackend
from mailsvc.search.backends import open_search_backend
from mailsvc.search.indexer import SearchIndexer
from mailsvc.search.queue_repository import SEARCH_CHANNEL
from mailsvc.search.rebuild import request_rebuild
from mailsvc.sync.engine import SyncEngine
from mailsvc.sync.idle import IdleSupervisor
from mailsvc.sync.parser import ParserPool
from mailsvc.webhook.client import WebhookClient
from mailsvc.webhook.deliverer import WebhookDeliverer
from mailsvc.webhook.fanout import WebhookFanout


class Role(StrEnum):
    API = "api"
    WORKER = "worker"


@dataclass(kw_only=True)
class Runtime(Resources):
    """Everything one process shares; the fields of one role are None in the other."""

    tokens: TokenCodec
    outbox_sender: OutboxSender
    # Wakes SSE streams (api) and the webhook fan-out (worker) when changes commit.
    changes: ChangeListener
    # Searches (api) and index writes (worker's indexer); see mailsvc.search.backend.
    search: SearchBackend
    # The worker's, and the api's when it runs IDLE watchers.
    sync_engine: SyncEngine | None = None
    # api only.
    outbox: OutboxDispatcher | None = None
    # api with IDLE_ENABLED only.
    idle: IdleSupervisor | None = None
    # worker only.
    webhooks: WebhookDeliverer | None = None
    search_indexer: SearchIndexer | None = None

    def components(self) -> Mapping[type[Any], object]:
        """What endpoints may ask for by type (`mailsvc.kit.http.provided`)."""
        return {
            Resources: self,
            ReadPool: self.reads,
            TokenCodec: self.tokens,
            ChangeListener: self.changes,
            OutboxDispatcher: self.outbox,
            SearchBackend: self.search,
            **self.services,
        }


def process_id() -> str:
    """Unique per process, also across `--workers N` and a restart reusing a pid."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


@asynccontextmanager
async def open_runtime(settings: Settings, *, role: Role) -> AsyncIterator[Runtime]:
    """Build and start what a process of `role` shares; release it all on exit."""
    async with AsyncExitStack() as stack:
        # Sized so that every api and worker process fits max_connections (ops/capacity.py).
        sizes = await database_pool_sizes(settings)
        engine = create_engine(
            settings.async_database_url, pool_size=sizes.engine, max_overflow=sizes.overflow
        )
        stack.push_async_callback(engine.dispose)
        reads = await ReadPool.open(settings.async_database_url, size=sizes.reads)
        stack.push_async_callback(reads.close)
        redis = create_redis(settings.required_redis_url)
        stack.push_async_callback(redis.aclose)
        # Every API request's one Redis command, on a connection of its own: no pool
        # checkout and check per request (kit/redis.py).
        limiter_redis = create_redis(settings.required_redis_url, single_connection=True)
        stack.push_async_callback(limiter_redis.aclose)
        # On our pool, not arq's create_pool: that one blocks startup while Redis is
        # down, and a service must come up and say so on /ready instead.
        arq = ArqRedis(connection_pool=redis.connection_pool)
        sessionmaker = create_sessionmaker(engine)
        secret_box = SecretBox(*settings.encryption_keys())
        changes = ChangeListener(listen_dsn(settings.async_database_url))
        changes.start()
        stack.push_async_callback(changes.stop)

        async def rebuild(tenant_id: str) -> None:
            await request_rebuild(arq, tenant_id)

        logins = AccountLogins(
            sessionmaker=sessionmaker, redis=redis, secrets=secret_box, settings=settings
        )
        stack.push_async_callback(logins.aclose)
        search = open_search_backend(settings, sessionmaker=sessionmaker, request_rebuild=rebuild)
        stack.push_async_callback(search.aclose)
        runtime = Runtime(
            settings=settings,
            engine=engine,
            sessionmaker=sessionmaker,
            read_sessionmaker=create_sessionmaker(
                engine.execution_options(isolation_level="AUTOCOMMIT")
            ),
            reads=reads,
            redis=redis,
            arq=arq,
            secrets=secret_box,
            rate_limiter=tenant_request_limiter(
                limiter_redis,
                per_minute=settings.rate_limit_requests_per_minute,
                per_hour=settings.rate_limit_requests_per_hour,
            ),
            send_limiter=account_send_limiter(
                redis,
                per_minute=settings.send_rate_limit_per_minute,
                per_hour=settings.send_rate_limit_per_hour,
            ),
            tokens=TokenCodec(settings),
            outbox_sender=OutboxSender(
                sessionmaker=sessionmaker, logins=logins, settings=settings, arq=arq
            ),
            changes=changes,
            search=search,
            services={AccountLogins: logins},
        )
        if role is Role.WORKER or settings.idle_enabled:
            parser = ParserPool(
                processes=settings.sync_parse_processes or None,
                timeout_seconds=settings.sync_parse_timeout_seconds,
            )
            stack.callback(parser.close)
            runtime.sync_engine = SyncEngine(
                sessionmaker=sessionmaker, logins=logins, settings=settings, parser=parser
            )
        if role is Role.API:
            _start_api_services(runtime, stack)
        else:
            _start_worker_services(runtime, stack)
            await stack.enter_async_context(serve_worker_metrics(settings))
        # Built once and cached; building reads the system CA bundle from disk, which
        # the first account check, download or mail change would otherwise do on the
        # event loop. Last, so that a bad MAIL_TLS_CA_FILE also unwinds everything above.
        await asyncio.to_thread(tls_context, settings.mail_tls_ca_file)
        yield runtime


def _start_api_services(runtime: Runtime, stack: AsyncExitStack) -> None:
    # Asked by every request with an API key's token (auth/dependencies.py).
    runtime.services[ApiKeyRevocations] = ApiKeyRevocations(
        runtime.read_sessionmaker, lifetime_seconds=runtime.settings.api_key_status_cache_seconds
    )
    runtime.outbox = OutboxDispatcher(runtime.outbox_sender)
    stack.push_async_callback(runtime.outbox.close)
    if runtime.sync_engine is not None:
        idle = IdleSupervisor(
            sessionmaker=runtime.sessionmaker,
            redis=runtime.redis,
            engine=runtime.sync_engine,
            logins=runtime.component(AccountLogins),
            settings=runtime.settings,
            owner_id=process_id(),
        )
        idle.start()
        stack.push_async_callback(idle.stop)
        runtime.idle = idle


def _start_worker_services(runtime: Runtime, stack: AsyncExitStack) -> None:
    settings = runtime.settings
    client = WebhookClient(timeout_seconds=settings.webhook_timeout_seconds)
    stack.push_async_callback(client.aclose)
    fanout = WebhookFanout(
        sessionmaker=runtime.sessionmaker, arq=runtime.arq, listener=runtime.changes
    )
    fanout.start()
    stack.push_async_callback(fanout.stop)
    # The indexer listens on its own channel (one more connection per worker), and
    # stops before the backend it writes to is closed.
    search_listener = ChangeListener(
        listen_dsn(settings.async_database_url), channel=SEARCH_CHANNEL
    )
    search_listener.start()
    stack.push_async_callback(search_listener.stop)
    indexer = SearchIndexer(
        sessionmaker=runtime.sessionmaker,
        redis=runtime.redis,
        backend=runtime.search,
        listener=search_listener,
        owner_id=process_id(),
    )
    indexer.start()
    stack.push_async_callback(indexer.stop)
    runtime.search_indexer = indexer
    runtime.webhooks = WebhookDeliverer(
        sessionmaker=runtime.sessionmaker,
        secrets=runtime.secrets,
        settings=settings,
        arq=runtime.arq,
        client=client,
    )
