"""Base of every tenant-owned repository: tenancy by construction.

A filter on `tenant_id` written by hand into each statement is one forgotten line
away from answering with another tenant's mail. So a repository never writes it:
every statement on a tenant table (one with a `tenant_id` column) starts from
`self.scoped`, which returns it limited to the repository's tenant already, and
every row it inserts gets the tenant from there too. The filter stays a plain
`tenant_id = $1` in the WHERE clause, so the composite indexes that lead with
`tenant_id` serve it as before (DESIGN.md, "Data model").

Code that spans tenants on purpose (sweeps, the IDLE supervisor, key rotation,
API keys) is marked `@cross_tenant(reason=...)` instead, so it is easy to find and
to review. tests/test_tenant_scoping.py fails on SQL over a tenant table that is
neither built here nor so marked.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar, overload

import sqlalchemy as sa
from sqlalchemy import Delete, FromClause, Select, Update
from sqlalchemy.dialects.postgresql import Insert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.expression import ColumnElement

from mailsvc.kit.db import Base

TENANT_COLUMN = "tenant_id"

M = TypeVar("M", bound=Base)
Marked = TypeVar("Marked")

# A table as repositories name it: the mapped class, or (Core statements) its Table.
Target = type[Base] | sa.TableClause
# What a statement reads from: also an alias of a table.
TableRef = type[Base] | FromClause


def cross_tenant(*, reason: str) -> Callable[[Marked], Marked]:
    """Mark a function (or class) whose SQL spans tenants on purpose.

    Nothing changes at run time. The mark is for the reader and for
    tests/test_tenant_scoping.py, which lets the marked code query tenant tables
    without `TenantScope`. `reason` says why one tenant is not enough; such code
    should only find ids, and leave the work on each to its tenant's scope.
    """
    if not reason.strip():
        raise ValueError("cross_tenant needs a reason")

    def mark(target: Marked) -> Marked:
        return target

    return mark


def _table(target: TableRef) -> FromClause:
    return target if isinstance(target, FromClause) else target.__table__


def _tenant_tables(froms: Iterable[FromClause]) -> list[FromClause]:
    """The tables (or aliases of tables) among `froms` that hold tenant rows.

    Subqueries are left out: they are statements of their own, scoped where they
    are built, and a `tenant_id` column of theirs need not be a table's.
    """
    found: list[FromClause] = []
    for from_ in froms:
        base = from_.element if isinstance(from_, sa.Alias) else from_
        if isinstance(base, sa.TableClause) and TENANT_COLUMN in from_.c and from_ not in found:
            found.append(from_)
    return found


class TenantScope:
    """Statements limited to one tenant: how repositories build SQL on tenant tables.

    The counterpart of the base statement Polar's repositories start every query
    from (`get_base_statement()`), for each kind of statement.
    """

    def __init__(self, session: AsyncSession, tenant_id: str) -> None:
        self.session = session
        self.tenant_id = tenant_id

    def owns(self, table: TableRef) -> ColumnElement[bool]:
        """`table.tenant_id = <this tenant>`.

        For the ON clause of a tenant table that a statement joins but does not
        select from (`select` filters only the tables its columns read).
        """
        if isinstance(table, FromClause):
            column: ColumnElement[str] = table.c[TENANT_COLUMN]
        else:
            column = getattr(table, TENANT_COLUMN)
        return column == self.tenant_id

    @overload
    def select(self, entity: type[M], /) -> Select[M]: ...

    @overload
    def select(self, *columns: Any, from_: TableRef | None = None) -> Select[Any]: ...

    def select(self, *columns: Any, from_: TableRef | None = None) -> Select[Any]:
        """SELECT `columns`, limited to this tenant in every tenant table they read.

        Each such table gets its own `tenant_id` condition, not only the first: a
        join such as messages with their attachments stays inside the tenant even
        if its ON clause forgets the tenant. `from_` names the table when no
        column does (`SELECT count(*)`).

        Raises ValueError when the columns read no tenant table: scoping would
        then silently do nothing. A statement that reads nothing but scoped
        subqueries needs no scope of its own (use `sqlalchemy.select`).
        """
        statement = sa.select(*columns)
        froms = list(statement.columns_clause_froms)
        if from_ is not None:
            statement = statement.select_from(from_)
            froms.append(_table(from_))
        tables = _tenant_tables(froms)
        if not tables:
            raise ValueError("the columns read no tenant table; name it with from_=")
        return statement.where(*(self.owns(table) for table in tables))

    def update(self, table: Target) -> Update:
        """UPDATE of this tenant's rows of `table`; add the rest of the WHERE clause."""
        return sa.update(table).where(self.owns(table))

    def delete(self, table: Target) -> Delete:
        """DELETE of this tenant's rows of `table`; add the rest of the WHERE clause."""
        return sa.delete(table).where(self.owns(table))

    def insert(
        self, table: Target, values: Mapping[str, Any] | Sequence[Mapping[str, Any]]
    ) -> Insert:
        """INSERT of one row, or of several in one VALUES list, each this tenant's.

        A row's own `tenant_id`, if it has one, is overwritten. PostgreSQL's
        INSERT, so ON CONFLICT is at hand.
        """
        if isinstance(values, Mapping):
            return pg_insert(table).values(self._owned(values))
        return pg_insert(table).values([self._owned(row) for row in values])

    def insert_select(self, table: Target, columns: Mapping[str, ColumnElement[Any]]) -> Insert:
        """INSERT INTO `table` (tenant_id, *columns) SELECT <this tenant>, *columns.

        For rows PostgreSQL computes, e.g. from one JSON parameter unpacked with
        `jsonb_to_recordset`: the tenant is not one of the caller's columns.
        """
        tenant = sa.literal(self.tenant_id, sa.Text)
        rows = sa.select(tenant, *columns.values())
        return pg_insert(table).from_select([TENANT_COLUMN, *columns], rows)

    async def insert_many(self, table: Target, rows: Sequence[Mapping[str, Any]]) -> None:
        """INSERT `rows` as this tenant's, as one executemany of one statement.

        Unlike a multi-row VALUES, whose text changes with the number of rows, the
        statement is prepared once for any batch.
        """
        if rows:
            await self.session.execute(sa.insert(table), [self._owned(row) for row in rows])

    async def add(self, instance: M) -> M:
        """Add an ORM object as this tenant's, and flush it (ids and defaults are set)."""
        setattr(instance, TENANT_COLUMN, self.tenant_id)
        self.session.add(instance)
        await self.session.flush()
        return instance

    def _owned(self, row: Mapping[str, Any]) -> dict[str, Any]:
        return {**row, TENANT_COLUMN: self.tenant_id}


class TenantRepository:
    """A repository bound to one tenant; every statement it runs is built by `scoped`.

    The statement builders live on `scoped` rather than on the repository itself
    because repositories already use `add`, `update` and `delete` as names for
    their own operations.
    """

    def __init__(self, session: AsyncSession, tenant_id: str) -> None:
        self.session = session
        self.tenant_id = tenant_id
        self.scoped = TenantScope(session, tenant_id)
