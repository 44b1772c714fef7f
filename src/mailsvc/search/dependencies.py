"""The FastAPI dependency that hands an endpoint this process's search backend."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, cast

from fastapi import Depends, Request

from mailsvc.kit.hot_route import with_fast_path
from mailsvc.search.backend import SearchBackend


async def _search_backend(request: Request) -> SearchBackend:
    # A Protocol cannot be `kit.http.provided`'s type argument (mypy wants a concrete
    # class there), so the runtime's component is looked up under it here.
    components: Mapping[type[Any], object] = request.app.state.components
    return cast(SearchBackend, components[SearchBackend])


with_fast_path(_search_backend, _search_backend)

SearchDep = Annotated[SearchBackend, Depends(_search_backend)]
