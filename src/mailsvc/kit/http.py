"""FastAPI dependencies that every domain shares: the process's objects and a session.

The composition root (`mailsvc.runtime`) registers each process-wide object under
its type; an endpoint asks for the type (`provided(OutboxDispatcher)`), so a domain
reaches what it needs without importing the module that builds it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping
from typing import Annotated, Any, TypeVar, cast

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from mailsvc.kit.db import discard_after_commit, run_after_commit
from mailsvc.kit.hot_route import with_fast_path
from mailsvc.kit.reads import ReadPool
from mailsvc.kit.resources import Resources

T = TypeVar("T")


def provided(kind: type[T]) -> Callable[[Request], Awaitable[T]]:
    """A dependency answering this process's one `kind` (from `app.state.components`)."""

    # A coroutine although it awaits nothing: FastAPI runs a plain function dependency
    # in a worker thread, a hand-off that costs more than the lookup on every request.
    async def get(request: Request) -> T:
        components: Mapping[type[Any], object] = request.app.state.components
        return cast(T, components[kind])

    get.__name__ = f"provided_{kind.__name__}"
    with_fast_path(get, get)
    return get


ResourcesDep = Annotated[Resources, Depends(provided(Resources))]
ReadsDep = Annotated[ReadPool, Depends(provided(ReadPool))]

# Headers a dependency wants on the response whatever the endpoint returns (a
# `Response` built by the endpoint does not get those set on the injected one); the
# request middleware adds them when the response starts.
RESPONSE_HEADERS_KEY = "mailsvc.response_headers"


def add_response_headers(scope: MutableMapping[str, Any], headers: Mapping[str, str]) -> None:
    """Have the request middleware add `headers` to this request's response."""
    pending: list[tuple[bytes, bytes]] = scope.setdefault(RESPONSE_HEADERS_KEY, [])
    pending.extend((name.lower().encode(), value.encode()) for name, value in headers.items())


async def get_session(resources: ResourcesDep) -> AsyncIterator[AsyncSession]:
    """A session per request, committed when the endpoint returns, rolled back on error.

    `scope="function"` (below) ends it before the response is sent, so a client never
    sees success for a transaction that then fails to commit.
    """
    async with resources.sessionmaker() as session:
        try:
            yield session
        except BaseException:
            discard_after_commit(session)
            await session.rollback()
            raise
        else:
            await session.commit()
            await run_after_commit(session)


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


async def get_read_session(resources: ResourcesDep) -> AsyncIterator[AsyncSession]:
    """A session without a transaction, for endpoints that only read.

    Each statement sees the latest committed data on its own; a list request's
    few statements do not need one snapshot, and skipping BEGIN and COMMIT saves two
    database round trips per request.
    """
    async with resources.read_sessionmaker() as session:
        yield session


ReadSessionDep = Annotated[AsyncSession, Depends(get_read_session, scope="function")]
