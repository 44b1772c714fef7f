"""Every domain router, in the order they appear in the OpenAPI document."""

from __future__ import annotations

from fastapi import FastAPI

from mailsvc.account.endpoints import router as account_router
from mailsvc.account.oauth_endpoints import router as oauth_router
from mailsvc.auth.endpoints import keys_router
from mailsvc.auth.endpoints import router as auth_router
from mailsvc.draft.endpoints import router as draft_router
from mailsvc.event.endpoints import router as event_router
from mailsvc.message.endpoints import router as message_router
from mailsvc.oauth.endpoints import router as oauth_app_router
from mailsvc.ops.endpoints import router as ops_router
from mailsvc.outbox.endpoints import router as outbox_router
from mailsvc.sync.endpoints import router as sync_router
from mailsvc.thread.endpoints import router as thread_router
from mailsvc.webhook.endpoints import router as webhook_router


def include_routers(app: FastAPI) -> None:
    app.include_router(ops_router)
    app.include_router(auth_router)
    app.include_router(keys_router)
    app.include_router(account_router)
    app.include_router(oauth_app_router)
    app.include_router(oauth_router)
    app.include_router(sync_router)
    app.include_router(message_router)
    app.include_router(thread_router)
    app.include_router(draft_router)
    app.include_router(outbox_router)
    app.include_router(event_router)
    app.include_router(webhook_router)
