"""The `mailsvc` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from contextlib import AsyncExitStack
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from mailsvc.config import (
    Settings,
    SettingsError,
    generate_encryption_key,
    get_settings,
    settings_from_environment,
)

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from sqlalchemy.ext.asyncio import AsyncSession

    from mailsvc.models import ApiKey
    from mailsvc.ops.progress_line import ProgressLine

T = TypeVar("T")


def _out(line: str = "") -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _settings_or_exit() -> Settings:
    try:
        return get_settings()
    except SettingsError as exc:
        sys.stderr.write(f"mailsvc: {exc}\n")
        raise SystemExit(2) from exc


def _startable_settings_or_exit() -> Settings:
    """Settings a process can start with; otherwise one line naming the setting.

    Start-up would otherwise fail on an unusable MAIL_TLS_CA_FILE inside the app's
    lifespan, with a traceback instead of the reason.
    """
    from mailsvc.ops.checks import mail_tls_ca_problem

    settings = _settings_or_exit()
    problem = mail_tls_ca_problem(settings.mail_tls_ca_file)
    if problem is not None:
        sys.stderr.write(f"mailsvc: {problem}\n")
        raise SystemExit(2)
    return settings


def cmd_serve(args: argparse.Namespace) -> None:
    from mailsvc.ops.serve import serve

    settings = _startable_settings_or_exit()
    serve(
        settings,
        host=args.host or settings.host,
        port=args.port or settings.port,
        workers=args.workers,
        reload=args.reload,
    )


def cmd_worker(_: argparse.Namespace) -> None:
    from mailsvc.worker.run import run_worker
    from mailsvc.worker.settings import worker_settings

    run_worker(worker_settings(_startable_settings_or_exit()))


def cmd_migrate(_: argparse.Namespace) -> None:
    from mailsvc.ops.migrations import upgrade_to_head

    settings = _settings_or_exit()
    upgrade_to_head(settings.async_database_url)
    _out("migrations: at head")


def cmd_check(_: argparse.Namespace) -> None:
    from mailsvc.ops.checks import startup_checks

    results = asyncio.run(startup_checks())
    for result in results:
        _out(f"{'PASS' if result.ok else 'FAIL'} {result.name}: {result.detail}")
    if not all(result.ok for result in results):
        raise SystemExit(1)


async def _in_transaction(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """`work` in one transaction of its own, on a one-connection engine."""
    from mailsvc.kit.db import create_engine, create_sessionmaker

    engine = create_engine(settings.async_database_url, pool_size=1)
    try:
        async with create_sessionmaker(engine).begin() as session:
            return await work(session)
    finally:
        await engine.dispose()


def _run_or_exit(work: Coroutine[object, object, T]) -> T:
    """Run `work`; a refusal of ours (unknown key, bad scope) is one line and exit 2."""
    from mailsvc.errors import MailsvcError

    try:
        return asyncio.run(work)
    except MailsvcError as exc:
        sys.stderr.write(f"mailsvc: {exc.detail}\n")
        raise SystemExit(2) from exc


def _scopes(value: str | None) -> list[str] | None:
    return None if value is None else [s.strip() for s in value.split(",") if s.strip()]


def cmd_apikey_create(args: argparse.Namespace) -> None:
    from mailsvc.auth.service import create_api_key

    async def create(session: AsyncSession) -> str:
        created = await create_api_key(
            session, name=args.name, tenants=args.tenant, scopes=_scopes(args.scopes)
        )
        return created.key

    _out(_run_or_exit(_in_transaction(_settings_or_exit(), create)))


def _apikey_line(key: ApiKey) -> str:
    def when(moment: datetime | None) -> str:
        return "-" if moment is None else moment.isoformat(timespec="seconds")

    return "\t".join(
        [
            str(key.id),
            key.name,
            ",".join(key.tenants),
            ",".join(sorted(key.scopes)),
            when(key.created_at),
            when(key.last_used_at),
            when(key.revoked_at),
        ]
    )


_APIKEY_COLUMNS = "id\tname\ttenants\tscopes\tcreated_at\tlast_used_at\trevoked_at"


def cmd_apikey_list(args: argparse.Namespace) -> None:
    from mailsvc.auth.service import list_api_keys

    async def listed(session: AsyncSession) -> list[ApiKey]:
        return await list_api_keys(session, granting=args.tenant)

    keys = _run_or_exit(_in_transaction(_settings_or_exit(), listed))
    _out(_APIKEY_COLUMNS)
    for key in keys:
        _out(_apikey_line(key))


def cmd_apikey_revoke(args: argparse.Namespace) -> None:
    from mailsvc.auth.service import revoke_api_key

    async def revoke(session: AsyncSession) -> ApiKey:
        return await revoke_api_key(session, args.key_id)

    key = _run_or_exit(_in_transaction(_settings_or_exit(), revoke))
    _out(_APIKEY_COLUMNS)
    _out(_apikey_line(key))


def cmd_token_create(args: argparse.Namespace) -> None:
    from mailsvc.auth.scopes import ALL_SCOPES
    from mailsvc.auth.service import validate_scopes, validate_tenants
    from mailsvc.auth.tokens import TokenCodec
    from mailsvc.errors import MailsvcError

    settings = _settings_or_exit()
    try:
        tenants = validate_tenants(args.tenant)
        scopes = validate_scopes(_scopes(args.scopes) or list(ALL_SCOPES))
    except MailsvcError as exc:
        sys.stderr.write(f"mailsvc: {exc.detail}\n")
        raise SystemExit(2) from exc
    _out(
        TokenCodec(settings).issue(
            subject=args.subject, tenants=tenants, scopes=scopes, expires_in=args.expires_in
        )
    )


def cmd_keys_generate(_: argparse.Namespace) -> None:
    _out(generate_encryption_key())


async def _rotate(settings: Settings) -> int:
    from mailsvc.account.rotation import rotate_account_secrets
    from mailsvc.kit.crypto import SecretBox
    from mailsvc.kit.db import create_engine, create_sessionmaker
    from mailsvc.oauth.rotation import rotate_client_secrets
    from mailsvc.webhook.credentials import rotate_webhook_secrets

    engine = create_engine(settings.async_database_url, pool_size=1)
    box = SecretBox(*settings.encryption_keys())
    try:
        async with create_sessionmaker(engine).begin() as session:
            accounts = await rotate_account_secrets(session, box)
            apps = await rotate_client_secrets(session, box)
            return accounts + apps + await rotate_webhook_secrets(session, box)
    finally:
        await engine.dispose()


def cmd_keys_rotate(_: argparse.Namespace) -> None:
    settings = _settings_or_exit()
    count = asyncio.run(_rotate(settings))
    _out(f"re-sealed {count} secrets under the current ENCRYPTION_KEY")


async def _say_when_waiting(
    redis: Redis, *, tenant_id: str, owner_id: str, bar: ProgressLine
) -> None:
    """Tell the operator, once, that another process holds the tenant's writer lease
    (a worker indexing it): the rebuild waits until that process lets go."""
    from mailsvc.kit.lease import Leases
    from mailsvc.search.indexer import LEASE_TTL_SECONDS, search_lease_key

    leases = Leases(redis, owner_id=owner_id, ttl_seconds=LEASE_TTL_SECONDS)
    while True:
        holder_id = await leases.owner(search_lease_key(tenant_id))
        if holder_id is not None and holder_id != owner_id:
            bar.note(
                f"tenant {tenant_id}: waiting for {holder_id}, which holds its index "
                "writer lease (a worker indexing it, or another reindex)"
            )
            return
        await asyncio.sleep(1.0)


async def _reindex(
    settings: Settings, *, tenant_id: str | None, account_id: uuid.UUID | None
) -> int:
    """`mailsvc search reindex` (see `cmd_search_reindex`); the number of tenants."""
    from mailsvc.account.repository import AccountRepository
    from mailsvc.event.listener import ChangeListener, listen_dsn
    from mailsvc.kit.db import create_engine, create_sessionmaker
    from mailsvc.kit.redis import create_redis
    from mailsvc.kit.tasks import cancel_and_wait
    from mailsvc.ops.progress_line import ProgressLine
    from mailsvc.runtime import process_id
    from mailsvc.search.backends import open_search_backend
    from mailsvc.search.indexer import SearchIndexer
    from mailsvc.search.queue_repository import SearchQueueRepository, tenants_with_messages

    async with AsyncExitStack() as stack:
        engine = create_engine(settings.async_database_url, pool_size=2)
        stack.push_async_callback(engine.dispose)
        redis = create_redis(settings.required_redis_url)
        stack.push_async_callback(redis.aclose)
        sessionmaker = create_sessionmaker(engine)

        async def rebuild_in_place(_: str) -> None:
            # This command is the rebuild: a missing index found on the way is rebuilt
            # by `drain` right here, not handed to a worker.
            return None

        backend = open_search_backend(
            settings, sessionmaker=sessionmaker, request_rebuild=rebuild_in_place
        )
        stack.push_async_callback(backend.aclose)
        owner_id = process_id()
        indexer = SearchIndexer(
            sessionmaker=sessionmaker,
            redis=redis,
            backend=backend,
            # Never started: `drain` and `rebuild` run in this process, unprompted.
            listener=ChangeListener(listen_dsn(settings.async_database_url)),
            owner_id=owner_id,
        )
        async with sessionmaker() as session:
            if account_id is not None:
                assert tenant_id is not None
                if await AccountRepository(session, tenant_id).get(account_id) is None:
                    raise _UsageError(f"no account {account_id} in tenant {tenant_id}")
            tenants = [tenant_id] if tenant_id is not None else await tenants_with_messages(session)
        for tenant in tenants:
            scope = f"account {account_id}" if account_id is not None else f"tenant {tenant}"
            bar = ProgressLine(scope)
            waiting = asyncio.create_task(
                _say_when_waiting(redis, tenant_id=tenant, owner_id=owner_id, bar=bar)
            )
            started = time.monotonic()
            try:
                # The tenant's: emptied, marked rebuilding (503 to searches), all queued.
                # One account's: its messages queued again; the index stays searchable.
                await indexer.rebuild(tenant, account_id=account_id)
                async with sessionmaker() as session:
                    queued = await SearchQueueRepository(session, tenant).remaining()
                indexed = await indexer.drain(tenant, progress=bar)
            finally:
                await cancel_and_wait([waiting])
                bar.end()
            state = await backend.state(tenant)
            rest = " (the rest by a worker)" if indexed < queued else ""
            _out(
                f"{scope}: {indexed:,} of {queued:,} queued messages indexed here{rest} "
                f"in {time.monotonic() - started:.1f} s; index {state}"
            )
        return len(tenants)


class _UsageError(Exception):
    """What the operator asked for cannot be done; one line, exit 2."""


def cmd_search_reindex(args: argparse.Namespace) -> None:
    if args.account is not None and args.tenant is None:
        sys.stderr.write("mailsvc: --account needs --tenant (the account's tenant)\n")
        raise SystemExit(2)
    from mailsvc.logging import configure_logging

    settings = _settings_or_exit()
    # The bar and the summary are this command's output: the indexer's INFO lines
    # would break the bar, so only warnings and errors are logged (or less, when
    # LOG_LEVEL asks for it), on stderr, readable by a person.
    configure_logging(max(settings.log_level, "WARNING", key=logging.getLevelName), json=False)
    try:
        tenants = asyncio.run(_reindex(settings, tenant_id=args.tenant, account_id=args.account))
    except _UsageError as exc:
        sys.stderr.write(f"mailsvc: {exc}\n")
        raise SystemExit(2) from exc
    _out(f"reindexed {tenants} tenant{'' if tenants == 1 else 's'} ({settings.search_backend})")


def cmd_dev(args: argparse.Namespace) -> None:
    from mailsvc.dev import DevStartError, run_dev

    try:
        # DATA_DIR and PORT as everything else reads them (environment, then .env).
        configured = settings_from_environment()
        run_dev(
            data_dir=configured.data_dir if args.data_dir is None else args.data_dir,
            port=configured.port if args.port is None else args.port,
            with_worker=not args.no_worker,
        )
    except (DevStartError, SettingsError) as exc:
        sys.stderr.write(f"mailsvc dev: {exc}\n")
        raise SystemExit(2) from exc


def _non_negative(value: str) -> int:
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return number


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mailsvc", description="Self-hosted email API.")
    commands = parser.add_subparsers(dest="command", required=True)

    def add(
        name: str, handler: Callable[[argparse.Namespace], None], help_: str
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_, description=help_)
        sub.set_defaults(handler=handler)
        return sub

    serve = add("serve", cmd_serve, "Run the HTTP API (with IMAP IDLE and immediate sends).")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument(
        "--workers",
        type=_non_negative,
        metavar="N",
        help="API processes. Default: API_WORKERS (0: one per core).",
    )
    serve.add_argument(
        "--reload", action="store_true", help="Restart on code changes (one process)."
    )
    add("worker", cmd_worker, "Run the arq worker for scheduled and heavy jobs.")
    add("migrate", cmd_migrate, "Upgrade the database to the newest migration.")
    add("check", cmd_check, "Run the startup checks; exit 1 if any fails.")

    apikey = commands.add_parser("apikey", help="Manage API keys.").add_subparsers(
        dest="action", required=True
    )
    create_key = apikey.add_parser("create", help="Create an API key and print it (once).")
    create_key.set_defaults(handler=cmd_apikey_create)
    create_key.add_argument("--tenant", action="append", required=True, help="Repeatable.")
    create_key.add_argument("--scopes", help="Comma-separated; default all scopes.")
    create_key.add_argument("--name", default="cli")
    list_keys = apikey.add_parser(
        "list",
        help="List API keys, newest first, revoked ones too (never their values).",
        description="One tab-separated line per key, after a header: id, name, tenants, "
        "scopes, created_at, last_used_at, revoked_at ('-' for none).",
    )
    list_keys.set_defaults(handler=cmd_apikey_list)
    list_keys.add_argument("--tenant", help="Only keys granting this tenant (alone or not).")
    revoke_key = apikey.add_parser(
        "revoke",
        help="Revoke an API key (any tenant's); its tokens are refused within "
        "API_KEY_STATUS_CACHE_SECONDS.",
    )
    revoke_key.set_defaults(handler=cmd_apikey_revoke)
    revoke_key.add_argument("key_id", type=uuid.UUID, metavar="KEY_ID")

    token = commands.add_parser("token", help="Issue access tokens.").add_subparsers(
        dest="action", required=True
    )
    create_token = token.add_parser("create", help="Print a signed access token.")
    create_token.set_defaults(handler=cmd_token_create)
    create_token.add_argument("--tenant", action="append", required=True, help="Repeatable.")
    create_token.add_argument("--scopes", help="Comma-separated; default all scopes.")
    create_token.add_argument("--subject", default="operator")
    create_token.add_argument("--expires-in", type=int, default=3600, help="Seconds.")

    keys = commands.add_parser("keys", help="Encryption keys.").add_subparsers(
        dest="action", required=True
    )
    keys.add_parser("generate", help="Print a new ENCRYPTION_KEY.").set_defaults(
        handler=cmd_keys_generate
    )
    keys.add_parser(
        "rotate", help="Re-seal stored secrets under the current ENCRYPTION_KEY."
    ).set_defaults(handler=cmd_keys_rotate)

    search = commands.add_parser("search", help="The search index.").add_subparsers(
        dest="action", required=True
    )
    reindex = search.add_parser(
        "reindex",
        help="Rebuild search indexes from PostgreSQL, in this process, with progress.",
        description="Rebuild search indexes from PostgreSQL, in this process. Without "
        "options every tenant with messages; --tenant one tenant (searches answer 503 "
        "search_rebuilding until it is done); --account one account of --tenant (its "
        "messages are indexed again, the index stays searchable). Waits while a worker "
        "holds a tenant's index writer lease.",
    )
    reindex.set_defaults(handler=cmd_search_reindex)
    reindex.add_argument("--tenant", help="Only this tenant.")
    reindex.add_argument("--account", type=uuid.UUID, help="Only this account of --tenant.")

    dev = add("dev", cmd_dev, "Run everything locally, with embedded PostgreSQL and Redis.")
    dev.add_argument("--data-dir", type=Path, help="Default: DATA_DIR (.mailsvc).")
    dev.add_argument("--port", type=int, help="API port on 127.0.0.1. Default: PORT (5000).")
    dev.add_argument("--no-worker", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    args.handler(args)
