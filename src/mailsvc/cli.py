"""The `mailsvc` command."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from mailsvc.config import (
    Settings,
    SettingsError,
    generate_encryption_key,
    get_settings,
    settings_from_environment,
)


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
    import uvicorn

    settings = _startable_settings_or_exit()
    uvicorn.run(
        "mailsvc.app:app",
        host=args.host or settings.host,
        port=args.port or settings.port,
        reload=args.reload,
        log_config=None,  # our JSON logging, configured by create_app
        proxy_headers=True,
    )


def cmd_worker(_: argparse.Namespace) -> None:
    from arq import run_worker

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


async def _create_api_key(
    settings: Settings, *, name: str, tenants: list[str], scopes: list[str] | None
) -> str:
    from mailsvc.auth.service import create_api_key
    from mailsvc.kit.db import create_engine, create_sessionmaker

    engine = create_engine(settings.async_database_url, pool_size=1)
    try:
        async with create_sessionmaker(engine).begin() as session:
            created = await create_api_key(session, name=name, tenants=tenants, scopes=scopes)
    finally:
        await engine.dispose()
    return created.key


def _scopes(value: str | None) -> list[str] | None:
    return None if value is None else [s.strip() for s in value.split(",") if s.strip()]


def cmd_apikey_create(args: argparse.Namespace) -> None:
    from mailsvc.errors import MailsvcError

    try:
        key = asyncio.run(
            _create_api_key(
                _settings_or_exit(),
                name=args.name,
                tenants=args.tenant,
                scopes=_scopes(args.scopes),
            )
        )
    except MailsvcError as exc:
        sys.stderr.write(f"mailsvc: {exc.detail}\n")
        raise SystemExit(2) from exc
    _out(key)


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
    from mailsvc.webhook.credentials import rotate_webhook_secrets

    engine = create_engine(settings.async_database_url, pool_size=1)
    box = SecretBox(*settings.encryption_keys())
    try:
        async with create_sessionmaker(engine).begin() as session:
            accounts = await rotate_account_secrets(session, box)
            return accounts + await rotate_webhook_secrets(session, box)
    finally:
        await engine.dispose()


def cmd_keys_rotate(_: argparse.Namespace) -> None:
    settings = _settings_or_exit()
    count = asyncio.run(_rotate(settings))
    _out(f"re-sealed {count} secrets under the current ENCRYPTION_KEY")


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
    serve.add_argument("--reload", action="store_true", help="Restart on code changes.")
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

    dev = add("dev", cmd_dev, "Run everything locally, with embedded PostgreSQL and Redis.")
    dev.add_argument("--data-dir", type=Path, help="Default: DATA_DIR (.mailsvc).")
    dev.add_argument("--port", type=int, help="API port on 127.0.0.1. Default: PORT (5000).")
    dev.add_argument("--no-worker", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    args.handler(args)
