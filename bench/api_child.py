"""Child process of bench/api.py: the smallest FastAPI endpoints, served like mailsvc.

`GET /status` answers `{"status": "ok"}`: no middleware, no dependencies, no database.

With `--floor-dsn DSN --tenant T`, `GET /floor` is the floor of mailsvc's stack for
the message list: the statement `GET /api/messages?limit=50` runs
(`mailsvc.message.read_repository.list_statement(MessageFilter(), order="newest",
after=None, limit=51)`, with T as `$1`) on an asyncpg pool opened at start-up with the
server settings of the product's read pool (`mailsvc.kit.reads.SERVER_SETTINGS`:
`plan_cache_mode=force_custom_plan`, as kit/db.py's engine), and the body is
`read_repository.page_body(rows, limit=50, order="newest")`: the same bytes as
mailsvc's list, without authentication, rate limit, middleware, query parameters or
filters. The statement text is built once at start-up (what varies per request in
mailsvc does not here), and asyncpg prepares it once per connection, as it does for
mailsvc.

Both are served by `uvicorn.run` with the options `mailsvc serve` passes
(mailsvc/cli.py: `log_config=None`, `proxy_headers=True`, loop and HTTP
implementation left at `auto`, i.e. uvloop and httptools when installed), one
worker, and with uvicorn's access log at WARNING as mailsvc's logging configuration
leaves it, so the servers differ only in the application they run.

Run by bench/api.py as `api_child.py --port N [--floor-dsn DSN --tenant T
[--pool-size 10]]`; alone it only explains itself.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Response

PAGE = 50
"""Summaries per list page, as bench/api.py requests them (`limit=50`)."""


async def status() -> dict[str, str]:
    """A small fixed JSON object."""
    return {"status": "ok"}


def minimal_app() -> FastAPI:
    """`GET /status` only."""
    app = FastAPI()
    app.get("/status")(status)
    return app


def floor_app(dsn: str, tenant: str, *, pool_size: int) -> FastAPI:
    """`GET /status`, and `GET /floor`: mailsvc's list statement and body for `tenant`."""
    import asyncpg

    from mailsvc.kit.reads import SERVER_SETTINGS
    from mailsvc.message.read_repository import list_statement, page_body
    from mailsvc.search.filter import MessageFilter

    sql, arguments = list_statement(MessageFilter(), order="newest", after=None, limit=PAGE + 1)
    pools: list[asyncpg.Pool] = []

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        pool = await asyncpg.create_pool(
            dsn, min_size=1, max_size=pool_size, server_settings=SERVER_SETTINGS
        )
        pools.append(pool)
        try:
            yield
        finally:
            await pool.close()

    app = FastAPI(lifespan=lifespan)
    app.get("/status")(status)

    @app.get("/floor")
    async def floor() -> Response:
        """The tenant's newest 50 summaries, as mailsvc's list answers them."""
        rows = await pools[0].fetch(sql, tenant, *arguments)
        return Response(page_body(rows, limit=PAGE, order="newest"), media_type="application/json")

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int)
    parser.add_argument("--floor-dsn", help="asyncpg DSN of the bench's database")
    parser.add_argument("--tenant", help="the tenant whose list /floor serves")
    parser.add_argument("--pool-size", type=int, default=10, help="asyncpg pool size")
    args = parser.parse_args()
    if args.port is None:
        print(__doc__)
        return
    if args.floor_dsn and not args.tenant:
        parser.error("--floor-dsn needs --tenant")

    import uvicorn

    app = (
        floor_app(args.floor_dsn, args.tenant, pool_size=args.pool_size)
        if args.floor_dsn
        else minimal_app()
    )
    logging.basicConfig(level=logging.WARNING)
    # mailsvc.logging.configure_logging does the same: no access line per request.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    uvicorn.run(app, host=args.host, port=args.port, log_config=None, proxy_headers=True)


if __name__ == "__main__":
    main()
