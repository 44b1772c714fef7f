"""The Python SDK, generated from a live server's schema, does a user's whole journey.

A real `mailsvc serve` and `mailsvc worker` run on loopback with the run's
PostgreSQL and Redis; openapi-python-client (pinned in the dev extra, configured by
`sdk/openapi-python-client.yaml`) generates `mailsvc_client` from the server's own
`/openapi.json` into a temporary directory, with `--fail-on-warning`, so an
operation the generator cannot read fails here instead of silently vanishing from
the SDK. From then on every request goes through the generated package and nothing
else: log in, register an account on Dovecot and the SMTP relay, sync, list, search,
read a message, its source and its attachment, send with an `Idempotency-Key` (and
retry), follow the change feed, and get `Problem` errors whose `code` the SDK parsed.
docs/sdk.md shows the same journey.

Both generated clients are made with `raise_on_unexpected_status=True`: a status the
schema does not declare for an operation fails the test, which is how a contract
gap shows up to an SDK user.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import re
import secrets
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from mailsvc.config import Settings
from tests.fixtures.dovecot import DovecotServer, TestMailUser
from tests.fixtures.net import free_port
from tests.fixtures.processes import MAILSVC, run_mailsvc, service_env, wait_until_serving
from tests.fixtures.smtp_server import SmtpRelay
from tests.fixtures.waiting import eventually
from tests.sync.messages import make_message

GENERATOR = str(Path(sys.executable).parent / "openapi-python-client")
MYPY = str(Path(sys.executable).parent / "mypy")
ROOT = Path(__file__).resolve().parents[2]
GENERATOR_CONFIG = ROOT / "sdk" / "openapi-python-client.yaml"
DOCS_PAGE = ROOT / "docs" / "sdk.md"
DOCS_EXAMPLE = re.compile(r"```python\n(.*?)```", re.DOTALL)
PACKAGE = "mailsvc_client"
ATTACHMENT = b"\x00\x01sdk attachment bytes\xff" * 64

pytestmark = pytest.mark.timeout(120)


@asynccontextmanager
async def running_service(env: dict[str, str], *, cwd: Path) -> AsyncIterator[str]:
    """`mailsvc serve` and `mailsvc worker` (syncs run in the worker); yields the base URL."""
    port = free_port()
    commands = [("serve", "--host", "127.0.0.1", "--port", str(port)), ("worker",)]
    processes = [
        await asyncio.create_subprocess_exec(
            MAILSVC,
            *command,
            env=env,
            cwd=cwd,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        for command in commands
    ]
    base_url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base_url) as probe:
            await wait_until_serving(probe, within=30)
        yield base_url
    finally:
        for process in processes:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                await asyncio.wait_for(process.wait(), 30)
            except TimeoutError:
                process.kill()
                await process.wait()


async def generate_sdk(schema_url: str, output: Path) -> None:
    """Run the pinned generator on the live schema, exactly as docs/sdk.md says."""
    generator = await asyncio.create_subprocess_exec(
        GENERATOR,
        "generate",
        "--url",
        schema_url,
        "--config",
        str(GENERATOR_CONFIG),
        "--meta",
        "uv",
        "--output-path",
        str(output),
        "--fail-on-warning",
        # Its post hooks run `ruff` from PATH: this venv's.
        env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    report, _ = await asyncio.wait_for(generator.communicate(), 60)
    assert generator.returncode == 0, report.decode(errors="replace")
    assert (output / PACKAGE / "py.typed").is_file()
    # The package ships py.typed, so its users' type checkers read it: hold it to
    # the same bar as mailsvc itself, and check docs/sdk.md's example against it so
    # the page cannot drift from the schema.
    example = output / "docs_example.py"
    example.write_text(DOCS_EXAMPLE.findall(DOCS_PAGE.read_text())[0])
    checker = await asyncio.create_subprocess_exec(
        MYPY,
        "--strict",
        "--no-incremental",
        "--cache-dir",
        os.devnull,
        PACKAGE,
        example.name,
        cwd=output,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    report, _ = await asyncio.wait_for(checker.communicate(), 120)
    assert checker.returncode == 0, report.decode(errors="replace")


@contextmanager
def importable(project: Path) -> Iterator[None]:
    """The generated package importable for the duration; forgotten afterwards, so no
    other test can pick up a stale copy."""
    sys.path.insert(0, str(project))
    try:
        yield
    finally:
        sys.path.remove(str(project))
        for name in [n for n in sys.modules if n == PACKAGE or n.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]


class Sdk:
    """Short names for the generated modules (only attribute access, no HTTP here)."""

    def __init__(self) -> None:
        self.client: ModuleType = importlib.import_module(PACKAGE)
        self.models: ModuleType = importlib.import_module(f"{PACKAGE}.models")
        self.types: ModuleType = importlib.import_module(f"{PACKAGE}.types")

    def api(self, tag: str, operation_id: str) -> ModuleType:
        return importlib.import_module(f"{PACKAGE}.api.{tag}.{operation_id}")


def problem(sdk: Sdk, response: Any, *, status: int, code: str) -> Any:
    """The parsed `Problem` of an error response, checked for its status and code."""
    assert response.status_code == status, response.content
    assert response.headers["content-type"] == "application/problem+json"
    assert isinstance(response.parsed, sdk.models.Problem), response.parsed
    assert response.parsed.code == code, response.parsed
    assert response.parsed.status == status
    return response.parsed


def parsed(response: Any, model: type, *, status: int = 200) -> Any:
    assert response.status_code == status, response.content
    assert isinstance(response.parsed, model), response.parsed
    return response.parsed


async def test_the_generated_sdk_does_the_whole_journey(
    settings: Settings,
    isolated_database: str,
    isolated_redis: str,
    dovecot: DovecotServer,
    smtp_relay: SmtpRelay,
    mail_user: TestMailUser,
    tmp_path: Path,
) -> None:
    word = f"sdk{secrets.token_hex(4)}"
    with_attachment_id, with_attachment = make_message(
        1, subject=f"Quarterly report {word}", attachment=ATTACHMENT
    )
    _, plain = make_message(2, subject="Lunch on Friday")
    for message in (with_attachment, plain):
        await dovecot.adeliver(mail_user.username, message)

    env = service_env(
        settings,
        database_url=isolated_database,
        redis_url=isolated_redis,
        ca_file=dovecot.ca_cert_path,
        data_dir=tmp_path,
        # Without IDLE a sync runs only when the API queues one (registering an account,
        # request_sync), so the second sync the test waits for is its own request's.
        IDLE_ENABLED="false",
    )
    tenant = f"sdk-{secrets.token_hex(4)}"
    created_key = await run_mailsvc("apikey", "create", "--tenant", tenant, env=env)
    assert created_key.returncode == 0, created_key.stderr
    api_key = created_key.stdout.strip()

    async with running_service(env, cwd=tmp_path) as base_url:
        await generate_sdk(f"{base_url}/openapi.json", tmp_path / "sdk")
        with importable(tmp_path / "sdk"):
            await journey(
                Sdk(),
                base_url=base_url,
                api_key=api_key,
                dovecot=dovecot,
                relay=smtp_relay,
                user=mail_user,
                word=word,
                attachment_message_id=with_attachment_id,
            )


async def journey(
    sdk: Sdk,
    *,
    base_url: str,
    api_key: str,
    dovecot: DovecotServer,
    relay: SmtpRelay,
    user: TestMailUser,
    word: str,
    attachment_message_id: str,
) -> None:
    m = sdk.models
    login = sdk.api("auth", "login")
    async with sdk.client.Client(base_url=base_url, raise_on_unexpected_status=True) as anonymous:
        refused = await login.asyncio_detailed(
            client=anonymous, body=m.LoginRequest(api_key="msk_not-a-key")
        )
        problem(sdk, refused, status=401, code="invalid_api_key")
        token = parsed(
            await login.asyncio_detailed(client=anonymous, body=m.LoginRequest(api_key=api_key)),
            m.TokenResponse,
        )

    async with sdk.client.AuthenticatedClient(
        base_url=base_url, token=token.access_token, raise_on_unexpected_status=True
    ) as api:
        account = await register_account(sdk, api, dovecot, relay, user)
        await sync_and_wait(sdk, api, account.id, inbox_messages=2)
        await list_search_and_read(sdk, api, account.id, word, attachment_message_id)
        outbox_id, arrived_id = await send_twice_and_see_it_arrive(sdk, api, account.id, user)
        await read_the_change_feed(sdk, api, account.id, arrived_id, outbox_id)

    async with sdk.client.AuthenticatedClient(
        base_url=base_url, token="not-a-token", raise_on_unexpected_status=True
    ) as stranger:
        bogus = await sdk.api("accounts", "list_accounts").asyncio_detailed(client=stranger)
        problem(sdk, bogus, status=401, code="invalid_token")


async def register_account(
    sdk: Sdk, api: Any, dovecot: DovecotServer, relay: SmtpRelay, user: TestMailUser
) -> Any:
    m = sdk.models
    create_account = sdk.api("accounts", "create_account")

    def body(*, imap_port: int) -> Any:
        return m.AccountCreate(
            email=user.email,
            display_name="SDK User",
            imap=m.ServerIn(
                host=dovecot.host,
                port=imap_port,
                security=m.Security.TLS,
                username=user.username,
                password=user.password,
            ),
            smtp=m.ServerIn(
                host=relay.host,
                port=relay.tls_port,
                security=m.Security.TLS,
                username=user.username,
                password=user.password,
            ),
        )

    # The generated models validate nothing themselves: the server's 422 names the field.
    invalid = problem(
        sdk,
        await create_account.asyncio_detailed(client=api, body=body(imap_port=0)),
        status=422,
        code="validation_error",
    )
    assert [error.field for error in invalid.errors] == ["body.imap.port"]

    # `verify` defaults to true: the server logs in to Dovecot and the relay first.
    account = parsed(
        await create_account.asyncio_detailed(client=api, body=body(imap_port=dovecot.imaps_port)),
        m.AccountOut,
        status=201,
    )
    assert account.email == user.email
    assert not hasattr(account.imap, "password")
    again = await create_account.asyncio_detailed(
        client=api, body=body(imap_port=dovecot.imaps_port)
    )
    problem(sdk, again, status=409, code="account_exists")
    return account


async def sync_and_wait(sdk: Sdk, api: Any, account_id: uuid.UUID, *, inbox_messages: int) -> None:
    """Ask for a sync, then poll the sync status until INBOX holds the messages and
    search finds them all."""
    m = sdk.models
    requested = parsed(
        await sdk.api("sync", "request_sync").asyncio_detailed(account_id, client=api),
        m.SyncRequested,
        status=202,
    )
    assert requested.status_url == f"/api/sync/status/{account_id}"
    get_sync_status = sdk.api("sync", "get_sync_status")

    async def inbox_synced() -> bool:
        status = parsed(
            await get_sync_status.asyncio_detailed(account_id, client=api), m.SyncStatus
        )
        inbox = [box for box in status.mailboxes if box.name == "INBOX"]
        return (
            status.state == m.SyncStatusState.CONNECTED
            and len(inbox) == 1
            and inbox[0].sync_state == m.MailboxOutSyncState.SYNCED
            and inbox[0].messages_synced == inbox_messages
            # Listable first, searchable once the worker's indexer caught up.
            and status.messages_indexed == status.messages_synced
        )

    await eventually(inbox_synced, within=30, interval=0.2, what="INBOX synced and searchable")


async def list_search_and_read(
    sdk: Sdk, api: Any, account_id: uuid.UUID, word: str, attachment_message_id: str
) -> None:
    """List, search, read the message with the attachment and download that."""
    m = sdk.models
    page = parsed(
        await sdk.api("messages", "list_messages").asyncio_detailed(
            client=api, account_id=account_id, limit=1
        ),
        m.MessagePage,
    )
    assert len(page.items) == 1
    assert isinstance(page.next_cursor, str)
    rest = parsed(
        await sdk.api("messages", "list_messages").asyncio_detailed(
            client=api, account_id=account_id, cursor=page.next_cursor
        ),
        m.MessagePage,
    )
    listed = page.items + rest.items
    assert sorted(item.subject for item in listed) == [
        "Lunch on Friday",
        f"Quarterly report {word}",
    ]
    assert rest.next_cursor in (None, sdk.types.UNSET)

    search = sdk.api("messages", "search_messages")
    found = parsed(
        await search.asyncio_detailed(client=api, query=f"{word} has:attachment"), m.MessagePage
    )
    assert [item.subject for item in found.items] == [f"Quarterly report {word}"]
    summary = found.items[0]
    assert summary.has_attachments is True
    problem(
        sdk,
        await search.asyncio_detailed(client=api, query="from:"),
        status=422,
        code="invalid_query",
    )

    get_message = sdk.api("messages", "get_message")
    message = parsed(await get_message.asyncio_detailed(summary.id, client=api), m.MessageOut)
    # The API gives the Message-ID without its angle brackets.
    assert f"<{message.message_id}>" == attachment_message_id
    assert "Body of message 1." in message.text_body
    [attachment] = message.attachments
    assert attachment.filename == "a1.bin"
    assert attachment.size == len(ATTACHMENT)

    downloaded = await sdk.api("messages", "get_attachment").asyncio_detailed(
        message.id, attachment.id, client=api
    )
    assert isinstance(parsed(downloaded, sdk.types.File), sdk.types.File)
    assert downloaded.parsed.payload.read() == ATTACHMENT
    assert downloaded.headers["content-type"] == "application/octet-stream"

    # message/rfc822 is mapped to bytes by the generator config; without it this
    # operation would have no parsed 200 response at all.
    raw = parsed(
        await sdk.api("messages", "get_message_raw").asyncio_detailed(message.id, client=api),
        sdk.types.File,
    )
    assert f"Message-ID: {attachment_message_id}".encode() in raw.payload.read()

    missing = await get_message.asyncio_detailed(uuid.uuid4(), client=api)
    problem(sdk, missing, status=404, code="message_not_found")


async def send_twice_and_see_it_arrive(
    sdk: Sdk, api: Any, account_id: uuid.UUID, user: TestMailUser
) -> tuple[uuid.UUID, uuid.UUID]:
    """Send to the account's own address with an Idempotency-Key, retry, then find it.

    Returns the outbox entry's id and the id of the message that arrived in INBOX."""
    m = sdk.models
    send_message = sdk.api("sending", "send_message")
    subject = f"sdk send {secrets.token_hex(4)}"

    def body(text: str) -> Any:
        return m.SendRequest(
            account_id=account_id,
            to=[m.AddressIn(address=user.email, name="Myself")],
            subject=subject,
            text=text,
        )

    key = f"sdk-{uuid.uuid4()}"
    first = parsed(
        await send_message.asyncio_detailed(client=api, body=body("Hello."), idempotency_key=key),
        m.OutboxOut,
        status=202,
    )
    retry = await send_message.asyncio_detailed(
        client=api, body=body("Hello."), idempotency_key=key
    )
    assert parsed(retry, m.OutboxOut, status=202).id == first.id
    assert retry.headers["idempotent-replayed"] == "true"
    reused = await send_message.asyncio_detailed(
        client=api, body=body("Something else."), idempotency_key=key
    )
    problem(sdk, reused, status=409, code="idempotency_key_reused")

    get_outbox_entry = sdk.api("sending", "get_outbox_entry")

    async def sent() -> bool:
        entry = parsed(await get_outbox_entry.asyncio_detailed(first.id, client=api), m.OutboxOut)
        assert entry.status not in (m.OutboxOutStatus.FAILED, m.OutboxOutStatus.BOUNCED), entry
        return bool(entry.status == m.OutboxOutStatus.SENT)

    await eventually(sent, within=20, interval=0.2, what="outbox entry sent")

    # The relay delivered it into Dovecot; the next sync brings it into INBOX.
    await sync_and_wait(sdk, api, account_id, inbox_messages=3)
    list_messages = sdk.api("messages", "list_messages")
    found: list[Any] = []

    async def searchable() -> bool:
        # The worker indexes what the sync stored a moment after it is listable; until
        # it has made the tenant's first index, a search answers 503 search_rebuilding.
        response = await list_messages.asyncio_detailed(
            client=api, account_id=account_id, mailbox="inbox", q=f'subject:"{subject}"'
        )
        if response.status_code == 503:
            problem(sdk, response, status=503, code="search_rebuilding")
            return False
        page = parsed(response, m.MessagePage)
        found[:] = page.items
        return bool(page.items)

    await eventually(searchable, within=20, interval=0.1, what="the message searchable")
    assert [item.subject for item in found] == [subject]
    return first.id, found[0].id


async def read_the_change_feed(
    sdk: Sdk, api: Any, account_id: uuid.UUID, arrived_id: uuid.UUID, outbox_id: uuid.UUID
) -> None:
    """Page through the feed from the start; every event parses into its own model.

    Mail already in the mailbox at the first sync raises no `message.created` (the
    account's `events_for_existing` is false by default), only the first pass's
    `sync.completed`; the message that arrived later does."""
    m = sdk.models
    list_changes = sdk.api("events", "list_changes")
    events: list[Any] = []
    since = "0"
    while True:
        page = parsed(
            await list_changes.asyncio_detailed(client=api, since=since, account_id=account_id),
            m.ChangePage,
        )
        events += page.events
        since = page.next_cursor
        if not page.has_more:
            break

    # The generator tries the union's members in order; each checks its `type`
    # constant (or enum), so an event must land in the model named after it.
    model_of = {
        "message.created": m.MessageCreatedEvent,
        "message.updated": m.MessageUpdatedEvent,
        "message.deleted": m.MessageDeletedEvent,
        "sync.completed": m.SyncCompletedEvent,
        "account.state_changed": m.AccountStateEvent,
        "account.indexed": m.AccountIndexedEvent,
        **{str(kind): m.AccountEvent for kind in m.AccountEventType},
        **{str(kind): m.MailboxEvent for kind in m.MailboxEventType},
        **{str(kind): m.OutboxEvent for kind in m.OutboxEventType},
    }
    for event in events:
        assert type(event) is model_of[str(event.type_)], (event.type_, type(event).__name__)
        assert event.account_id == account_id

    kinds = [str(event.type_) for event in events]
    assert kinds[0] == "account.created"
    assert "sync.completed" in kinds
    created = [
        event.data.message_id for event in events if isinstance(event, m.MessageCreatedEvent)
    ]
    assert arrived_id in created
    outbox = [(str(e.type_), e.data.outbox_id) for e in events if isinstance(e, m.OutboxEvent)]
    assert ("outbox.queued", outbox_id) in outbox
    assert ("outbox.sent", outbox_id) in outbox
    assert [e.seq for e in events] == sorted(e.seq for e in events)

    problem(
        sdk,
        await list_changes.asyncio_detailed(client=api, since="not-a-cursor"),
        status=422,
        code="validation_error",
    )
