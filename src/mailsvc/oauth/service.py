"""OAuth2 apps of one tenant: register (from a provider preset), read, change, delete."""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

from sqlalchemy.ext.asyncio import AsyncSession

from mailsvc.errors import ConflictError, FieldError, NotFoundError, UnprocessableError
from mailsvc.kit.hosts import HostNotAllowedError, ensure_public_host
from mailsvc.kit.ids import uuid7
from mailsvc.kit.mailserver import Security
from mailsvc.kit.pagination import encode_cursor, read_cursor
from mailsvc.kit.resources import Resources
from mailsvc.models import OAuthApp
from mailsvc.oauth import schemas
from mailsvc.oauth.presets import PRESETS
from mailsvc.oauth.repository import OAuthAppRepository
from mailsvc.oauth.secrets import seal_client_secret


def to_out(app: OAuthApp) -> schemas.OAuthAppOut:
    return schemas.OAuthAppOut(
        id=app.id,
        name=app.name,
        provider=app.provider,  # type: ignore[arg-type]  # guarded by a check constraint
        client_id=app.client_id,
        redirect_uri=app.redirect_uri,
        authorization_url=app.authorization_url,
        token_url=app.token_url,
        userinfo_url=app.userinfo_url,
        scopes=list(app.scopes),
        imap=schemas.ServerEndpointOut(
            host=app.imap_host, port=app.imap_port, security=Security(app.imap_security)
        ),
        smtp=schemas.ServerEndpointOut(
            host=app.smtp_host, port=app.smtp_port, security=Security(app.smtp_security)
        ),
        created_at=app.created_at,
        updated_at=app.updated_at,
    )


def _settings(body: schemas.OAuthAppIn) -> dict[str, object]:
    """The app's columns: the body's values over the provider's preset."""
    preset = PRESETS.get(body.provider)
    values: dict[str, object] = {
        "authorization_url": body.authorization_url or (preset and preset.authorization_url),
        "token_url": body.token_url or (preset and preset.token_url),
        "userinfo_url": body.userinfo_url or (preset and preset.userinfo_url),
        "scopes": body.scopes or (list(preset.scopes) if preset else None),
    }
    for kind in ("imap", "smtp"):
        given: schemas.ServerEndpoint | None = getattr(body, kind)
        default = getattr(preset, kind) if preset else None
        server = given or default
        values[f"{kind}_host"] = server.host if server else None
        values[f"{kind}_port"] = server.port if server else None
        values[f"{kind}_security"] = Security(server.security).value if server else None
    missing = [
        name
        for name in ("authorization_url", "token_url", "scopes", "imap", "smtp")
        if values.get(name, values.get(f"{name}_host")) is None
    ]
    if missing:
        raise UnprocessableError(
            f"a {body.provider} app needs {', '.join(missing)}",
            code="oauth_app_incomplete",
            errors=[FieldError(field=f"body.{name}", message="required") for name in missing],
        )
    return values


class OAuthAppService:
    """OAuth2 apps of one tenant. Never commits: the caller owns the transaction."""

    def __init__(self, session: AsyncSession, tenant_id: str, resources: Resources) -> None:
        self._session = session
        self._tenant_id = tenant_id
        self._resources = resources
        self._apps = OAuthAppRepository(session, tenant_id)

    async def get(self, app_id: uuid.UUID) -> OAuthApp:
        app = await self._apps.get(app_id)
        if app is None:
            raise NotFoundError("OAuth2 app not found", code="oauth_app_not_found")
        return app

    async def page(self, *, cursor: str | None, limit: int) -> schemas.OAuthAppPage:
        after = read_cursor(cursor, lambda position: uuid.UUID(str(position["after"])))
        rows = await self._apps.page(after=after, limit=limit + 1)
        next_cursor = (
            encode_cursor({"after": str(rows[limit - 1].id)}) if len(rows) > limit else None
        )
        return schemas.OAuthAppPage(
            items=[to_out(app) for app in rows[:limit]], next_cursor=next_cursor
        )

    async def create(self, body: schemas.OAuthAppIn) -> OAuthApp:
        values = _settings(body)
        await self._check_hosts(values)
        app_id = uuid7()
        assert body.client_secret is not None
        app = OAuthApp(
            id=app_id,
            name=body.name,
            provider=body.provider,
            client_id=body.client_id,
            client_secret=seal_client_secret(
                self._resources.secrets,
                tenant_id=self._tenant_id,
                app_id=app_id,
                secret=body.client_secret.get_secret_value(),
            ),
            redirect_uri=body.redirect_uri,
            **values,
        )
        await self._apps.add(app)
        await self._session.refresh(app)
        return app

    async def update(self, app_id: uuid.UUID, body: schemas.OAuthAppUpdate) -> OAuthApp:
        app = await self.get(app_id)
        values = _settings(body)
        await self._check_hosts(values)
        app.name = body.name
        app.provider = body.provider
        app.client_id = body.client_id
        app.redirect_uri = body.redirect_uri
        if body.client_secret is not None:
            app.client_secret = seal_client_secret(
                self._resources.secrets,
                tenant_id=self._tenant_id,
                app_id=app.id,
                secret=body.client_secret.get_secret_value(),
            )
        for column, value in values.items():
            setattr(app, column, value)
        await self._session.flush()
        await self._session.refresh(app)
        return app

    async def delete(self, app_id: uuid.UUID) -> None:
        """Delete the app; refused while accounts still refresh their tokens through it."""
        await self.get(app_id)
        in_use = await self._apps.accounts_using(app_id)
        if in_use:
            raise ConflictError(
                f"{in_use} account(s) use this app; delete or reconnect them first",
                code="oauth_app_in_use",
            )
        await self._apps.delete(app_id)

    async def _check_hosts(self, values: dict[str, object]) -> None:
        """The hosts mailsvc itself connects to must be public (unless allowed)."""
        allow_private = self._resources.settings.allow_private_hosts
        targets: list[tuple[str, str, int]] = []
        for field in ("token_url", "userinfo_url"):
            url = values.get(field)
            if not isinstance(url, str):
                continue
            parts = urlsplit(url)
            # The client secret and the user's tokens travel there.
            if parts.scheme != "https" and not allow_private:
                raise UnprocessableError(
                    f"{field} must be https",
                    code="oauth_url_not_allowed",
                    errors=[FieldError(field=f"body.{field}", message="must be https")],
                )
            port = parts.port or (443 if parts.scheme == "https" else 80)
            targets.append((field, parts.hostname or "", port))
        for kind in ("imap", "smtp"):
            targets.append((kind, str(values[f"{kind}_host"]), int(str(values[f"{kind}_port"]))))
        for field, host, port in targets:
            try:
                await ensure_public_host(host, port, allow_private=allow_private)
            except HostNotAllowedError as exc:
                raise UnprocessableError(
                    f"{field}: {exc}",
                    code="host_not_allowed",
                    errors=[FieldError(field=f"body.{field}", message=str(exc))],
                ) from exc
