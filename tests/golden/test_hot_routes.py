"""The hot read routes answer exactly as recorded: same status, content type and JSON.

The answers in `tests/golden/data/` were recorded from the code before the hot reads
left SQLAlchemy (issue 14), over the fixed mailbox of `tests.golden.mailbox`: message
lists and searches (on each search backend), thread lists and threads, single
messages, the mailbox list and the sync status, and the problem+json answers to bad
input and missing credentials (`tests.golden.cases`). A rewrite must answer the same.

JSON bodies compare parsed: key order is free, list order is not. Successful answers
must carry the RateLimit headers (their values vary, so only their presence and form
is held). `UPDATE_GOLDEN=1` records the answers instead of comparing them; without it
a missing golden file fails, never gets written.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from mailsvc.auth.scopes import ALL_SCOPES, Scope
from mailsvc.config import Settings
from mailsvc.kit.crypto import SecretBox
from mailsvc.kit.redis import create_redis
from mailsvc.message.schemas import MessageOut, MessagePage
from mailsvc.sync.schemas import MailboxList, SyncStatus
from mailsvc.thread.schemas import ThreadOut, ThreadPage
from tests.fixtures.app import TokenFactory
from tests.fixtures.search import app_with_backend, indexer_of
from tests.golden import mailbox, rows
from tests.golden.cases import BACKENDS, PLAIN, SEARCHES, Auth, Call

GOLDEN_DIR = Path(__file__).parent / "data"
UPDATING = os.environ.get("UPDATE_GOLDEN") == "1"

RATE_LIMIT_HEADERS = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")
# Headers whose values are part of the contract; request ids and rate-limit counts vary.
RECORDED_HEADERS = ("content-type", "www-authenticate", "retry-after", "allow")
# Problem fields that may legitimately differ between two identical requests.
VARYING_PROBLEM_FIELDS = ("instance", "request_id")

Headers = dict[str, str]
Answers = dict[str, Any]


def golden_path(call: Call) -> Path:
    """The file holding `call`'s answers."""
    return GOLDEN_DIR / f"{call.name}.json"


def _canonical(document: Answers) -> str:
    """The file form: sorted keys, so a diff shows what changed and nothing else."""
    return json.dumps(document, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


@pytest.fixture(scope="module")
async def serving(app: FastAPI, settings: Settings) -> AsyncIterator[dict[str, FastAPI]]:
    """An api app per search backend (the run's own `app` for its backend)."""
    async with AsyncExitStack() as stack:
        yield {
            backend: await stack.enter_async_context(app_with_backend(app, settings, backend))
            for backend in BACKENDS
        }


@pytest.fixture(scope="module")
async def golden_mailbox(serving: dict[str, FastAPI], settings: Settings) -> AsyncIterator[None]:
    """Both tenants' rows stored, and indexed into every backend; removed at the end."""
    engine = create_async_engine(settings.async_database_url)
    sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
    redis = create_redis(settings.required_redis_url)
    try:
        async with engine.connect() as connection:
            zone = await connection.scalar(text("SHOW TimeZone"))
        # PostgreSQL writes the list's times in the session's zone; the answers were
        # recorded against a UTC server.
        assert zone in {"UTC", "Etc/UTC"}, f"the golden answers need a UTC server, not {zone}"
        await rows.store(sessionmaker, SecretBox(*settings.encryption_keys()), redis)
        for served in serving.values():
            indexer = indexer_of(served, owner_id="golden-tests")
            for tenant_id in (mailbox.TENANT, mailbox.OTHER_TENANT):
                # Queue every message again, so each backend gets the whole mailbox.
                await indexer.rebuild(tenant_id)
                await indexer.drain(tenant_id)
        yield
    finally:
        await rows.remove(sessionmaker, redis)
        await redis.aclose()
        await engine.dispose()


@pytest.fixture(scope="module")
def credentials(make_token: TokenFactory) -> dict[Auth, Headers]:
    """The Authorization header of each kind of caller in `cases.Auth`."""

    def bearer(*tenants: str, scopes: list[str] | None = None, expires_in: int = 3600) -> Headers:
        token = make_token(*tenants, scopes=scopes, expires_in=expires_in)
        return {"Authorization": f"Bearer {token}"}

    def without(scope: Scope) -> list[str]:
        return [s for s in ALL_SCOPES if s != scope.value]

    return {
        "reader": bearer(mailbox.TENANT),
        "no-mail-read": bearer(mailbox.TENANT, scopes=without(Scope.MAIL_READ)),
        "no-accounts-read": bearer(mailbox.TENANT, scopes=without(Scope.ACCOUNTS_READ)),
        "other-tenant": bearer(mailbox.OTHER_TENANT),
        "two-tenants": bearer(mailbox.TENANT, mailbox.OTHER_TENANT),
        "expired": bearer(mailbox.TENANT, expires_in=-60),
        "garbage": {"Authorization": "Bearer not.a.token"},
        "basic": {"Authorization": "Basic Z29sZGVuOnRlc3Q="},
        "none": {},
    }


def _recorded(url: str, response: httpx.Response) -> Answers:
    """What a golden file holds of one answer."""
    body = response.json()
    if response.is_error and isinstance(body, dict):
        body = {k: v for k, v in body.items() if k not in VARYING_PROBLEM_FIELDS}
    return {
        "url": url,
        "status": response.status_code,
        "headers": {h: response.headers[h] for h in RECORDED_HEADERS if h in response.headers},
        "body": body,
    }


# Each hot route's documented response model, by the path of the request.
_MODELS: list[tuple[re.Pattern[str], type[BaseModel]]] = [
    (re.compile(r"/api/messages/[^/?]+"), MessageOut),
    (re.compile(r"/api/(messages|sync/search)"), MessagePage),
    (re.compile(r"/api/threads/[^/?]+"), ThreadOut),
    (re.compile(r"/api/threads"), ThreadPage),
    (re.compile(r"/api/accounts/[^/]+/mailboxes"), MailboxList),
    (re.compile(r"/api/sync/status/[^/?]+"), SyncStatus),
]


def _check_schema(url: str, response: httpx.Response) -> None:
    """A success holds to the route's documented model, as JSON (strings, not objects)."""
    path = url.split("?", 1)[0]
    model = next((model for pattern, model in _MODELS if pattern.fullmatch(path)), None)
    assert model is not None, f"{url}: no model to check it against"
    model.model_validate_json(response.content)


def _check_rate_limit_headers(url: str, response: httpx.Response) -> None:
    for name in RATE_LIMIT_HEADERS:
        value = response.headers.get(name)
        assert value is not None, f"{url}: no {name} header"
        assert value.isdigit(), f"{url}: {name}: {value!r}"


async def _answers(client: httpx.AsyncClient, call: Call, credentials: Headers) -> Answers:
    """The call's answers, following `next_cursor` for `call.pages` pages."""
    headers = dict(credentials)
    if call.tenant_header is not None:
        headers["X-Tenant-ID"] = call.tenant_header
    url = call.url
    pages: list[Answers] = []
    for page in range(call.pages):
        response = await client.get(url, headers=headers)
        pages.append(_recorded(url, response))
        if response.is_success:
            _check_rate_limit_headers(url, response)
            _check_schema(url, response)
        if page + 1 < call.pages:
            next_cursor = response.json().get("next_cursor")
            assert next_cursor, f"{url}: page {page + 1} of {call.pages} has no next_cursor"
            url = f"{call.url}{'&' if call.params else '?'}cursor={next_cursor}"
    request = {"url": call.url, "auth": call.auth, "tenant_header": call.tenant_header}
    return {"request": request, "pages": pages}


def _recorded_answers(path: Path, answers: Answers) -> Answers | None:
    """The answers recorded in `path`, or None after recording `answers` there
    (UPDATE_GOLDEN=1). A missing file fails the test."""
    if UPDATING:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_canonical(answers), encoding="utf-8")
        return None
    if not path.exists():
        pytest.fail(f"{path.name} is missing: record it with UPDATE_GOLDEN=1 on the old code")
    recorded: Answers = json.loads(path.read_text(encoding="utf-8"))
    return recorded


def _assert_same(path: Path, expected: Answers, answers: Answers, *, backend: str = "") -> None:
    if answers == expected:
        return
    diff = difflib.unified_diff(
        _canonical(expected).splitlines(),
        _canonical(answers).splitlines(),
        fromfile=f"{path.name} (recorded)",
        tofile=f"answered now{f' by {backend}' if backend else ''}",
        lineterm="",
    )
    pytest.fail("the answers differ from the recorded ones:\n" + "\n".join(diff))


def _one_record(by_backend: dict[str, Answers]) -> Answers:
    """One file for every backend: their common answers, or (when they answered
    differently: relevance orders) each backend's pages."""
    first = next(iter(by_backend.values()))
    if all(answers == first for answers in by_backend.values()):
        return first
    pages = {backend: answers["pages"] for backend, answers in by_backend.items()}
    return {"request": first["request"], "pages_by_backend": pages}


def _for_backend(recorded: Answers, backend: str) -> Answers:
    if "pages_by_backend" not in recorded:
        return recorded
    return {"request": recorded["request"], "pages": recorded["pages_by_backend"].get(backend)}


@pytest.mark.usefixtures("golden_mailbox")
@pytest.mark.parametrize("call", PLAIN, ids=lambda call: call.name)
async def test_route_answers_as_recorded(
    call: Call, client: httpx.AsyncClient, credentials: dict[Auth, Headers]
) -> None:
    answers = await _answers(client, call, credentials[call.auth])
    path = golden_path(call)
    recorded = _recorded_answers(path, answers)
    if recorded is not None:
        _assert_same(path, recorded, answers)


@pytest.mark.usefixtures("golden_mailbox")
@pytest.mark.parametrize("call", SEARCHES, ids=lambda call: call.name)
async def test_search_answers_as_recorded_on_every_backend(
    call: Call, serving: dict[str, FastAPI], credentials: dict[Auth, Headers]
) -> None:
    by_backend: dict[str, Answers] = {}
    for backend, served in serving.items():
        transport = httpx.ASGITransport(app=served)
        async with httpx.AsyncClient(transport=transport, base_url="http://mailsvc.test") as client:
            by_backend[backend] = await _answers(client, call, credentials[call.auth])
    path = golden_path(call)
    recorded = _recorded_answers(path, _one_record(by_backend))
    if recorded is not None:
        for backend, answers in by_backend.items():
            _assert_same(path, _for_backend(recorded, backend), answers, backend=backend)


def test_every_golden_file_belongs_to_a_call() -> None:
    """No recorded answer outlives its call (recording removes the orphans)."""
    names = [call.name for call in (*PLAIN, *SEARCHES)]
    assert len(names) == len(set(names)), "call names must be unique"
    expected = {golden_path(call) for call in (*PLAIN, *SEARCHES)}
    orphans = sorted(set(GOLDEN_DIR.glob("*.json")) - expected)
    if UPDATING:
        for orphan in orphans:
            orphan.unlink()
        return
    assert not orphans, f"golden files without a call: {[p.name for p in orphans]}"
