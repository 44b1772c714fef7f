"""Who is using the console: the signed-in key's principal for the tenant in the path."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import cache
from typing import Annotated

from fastapi import Path, Request
from starlette.datastructures import FormData

from mailsvc.auth.dependencies import Principal, TokensDep, authorized
from mailsvc.auth.scopes import Scope
from mailsvc.console.session import CSRF_FIELD, ConsoleSession, check_csrf, read_session

# Small forms only: a password, a name, a few buttons.
_MAX_FORM_FIELDS = 20
_MAX_FORM_PART_BYTES = 64 * 1024

TenantPath = Annotated[str, Path(min_length=1, max_length=64)]


@dataclass(frozen=True, slots=True)
class Operator:
    """A signed-in operator acting for the tenant of the page."""

    principal: Principal
    signin: ConsoleSession
    tenants: tuple[str, ...]

    @property
    def tenant_id(self) -> str:
        return self.principal.tenant_id

    @property
    def csrf_token(self) -> str:
        return self.signin.csrf_token

    def page_context(self, section: str) -> dict[str, object]:
        """What every signed-in page shows: the tenant switcher, the nav, the token."""
        return {
            "tenant": self.tenant_id,
            "tenants": self.tenants,
            "section": section,
            "csrf_token": self.csrf_token,
            "scopes": self.principal.scopes,
        }


@dataclass(frozen=True, slots=True)
class Action:
    """A form post from a console page, its CSRF token checked."""

    operator: Operator
    form: FormData


async def _operator(request: Request, tokens: TokensDep, tenant: str, scope: Scope) -> Operator:
    signin = read_session(request, tokens)
    # The path's tenant is resolved as the API resolves X-Tenant-ID: it selects among
    # the token's tenants and never grants one; scope and rate limit apply as well.
    principal = await authorized(request, signin.claims, tenant, scope)
    return Operator(
        principal=principal, signin=signin, tenants=tuple(sorted(signin.claims.tenants))
    )


@cache
def viewing(scope: Scope) -> Callable[..., Awaitable[Operator]]:
    """The dependency of a page that needs `scope`."""

    async def view(request: Request, tokens: TokensDep, tenant: TenantPath) -> Operator:
        return await _operator(request, tokens, tenant, scope)

    view.__name__ = f"view_{scope.name.lower()}"
    return view


@cache
def acting(scope: Scope) -> Callable[..., Awaitable[Action]]:
    """The dependency of a form post that needs `scope`: session, CSRF token, origin."""

    async def act(request: Request, tokens: TokensDep, tenant: TenantPath) -> Action:
        operator = await _operator(request, tokens, tenant, scope)
        form = await request.form(max_fields=_MAX_FORM_FIELDS, max_part_size=_MAX_FORM_PART_BYTES)
        check_csrf(request, operator.signin, form.get(CSRF_FIELD))
        return Action(operator=operator, form=form)

    act.__name__ = f"act_{scope.name.lower()}"
    return act
