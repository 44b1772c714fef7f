"""Tenancy by construction (../shared/STYLE.md rule 2), held by reading the source.

SQL on a tenant table (a model with a `tenant_id` column) is built by the tenant
scope of kit/repository.py (`self.scoped.select(...)`, `.update`, `.delete`,
`.insert`, ...), which adds the tenant itself, or lives in a function or class
marked `@cross_tenant(reason=...)`. Anywhere else in src/mailsvc this fails on:

- a SQLAlchemy builder (`select`, `update`, `delete`, `insert`, `text`, `exists`,
  `join`, ...), or a table's own `.select()` and the like, whose statement names a
  tenant model or its table (for `text`, the table's name in the SQL);
- a hand-written `Model.tenant_id == ...` (or `.in_`, ...): the scope writes it;
- a tenant model joined into a statement that does not select from it, without
  `self.scoped.owns(Model)` in the ON clause (the scope filters the tables its
  columns read, so a table only joined would go unfiltered);
- `session.get(Model, id)`, which loads by primary key alone.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mailsvc.kit.repository import TENANT_COLUMN
from mailsvc.models import Base

SOURCE = Path(__file__).resolve().parents[1] / "src" / "mailsvc"
# The one module that writes the tenant filter.
SCOPE_MODULE = "kit/repository.py"
BUILDERS = {"select", "update", "delete", "insert", "text", "exists", "join", "outerjoin"}
# Methods of a Table that build a statement on it.
TABLE_BUILDERS = {"select", "update", "delete", "insert"}
JOINS = {"join", "outerjoin", "join_from", "select_from"}

# Every place that spans tenants on purpose, as "module:function". A new one is a
# decision to review: add it here in the same change.
CROSS_TENANT = {
    "account/repository.py:tenants_with_accounts",
    "account/repository.py:accounts_to_watch",
    "oauth/repository.py:tenants_with_oauth_apps",
    "auth/repository.py:ApiKeyRepository",
    "event/repository.py:trim_changes",
    "outbox/repository.py:copies_to_file",
    "outbox/repository.py:due_entries",
    "outbox/repository.py:count_in_flight",
    "mirror/repository.py:refresh_statistics",
    "search/queue_repository.py:tenants_with_queued_messages",
    "search/queue_repository.py:tenants_with_messages",
    "webhook/repository.py:tenants_with_active_webhooks",
    "webhook/repository.py:due_deliveries",
    "webhook/repository.py:tenants_with_webhooks",
}


def _tenant_models() -> dict[str, str]:
    """Class name -> table name of every mapped model with a `tenant_id` column."""
    return {
        mapper.class_.__name__: str(mapper.class_.__tablename__)
        for mapper in Base.registry.mappers
        if TENANT_COLUMN in mapper.local_table.c
    }


TENANT_MODELS = _tenant_models()
TABLE_NAMES = re.compile(r"\b(" + "|".join(sorted(TENANT_MODELS.values())) + r")\b")
MODEL_OF_TABLE = {table: model for model, table in TENANT_MODELS.items()}


def _is_scoped(node: ast.AST) -> bool:
    """Whether `node` is a statement chain that starts at `self.scoped.<builder>(...)`."""
    while isinstance(node, ast.Call | ast.Attribute | ast.Subscript):
        inner = node.func if isinstance(node, ast.Call) else node.value
        if (
            isinstance(inner, ast.Attribute)
            and inner.attr == "scoped"
            and isinstance(inner.value, ast.Name)
            and inner.value.id == "self"
        ):
            return True
        node = inner
    return False


def _is_owns(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "owns"
        and _is_scoped(node.func)
    )


@dataclass
class Module:
    """One source file, with what the rules need to know about its names."""

    path: str
    tree: ast.Module
    # Local name -> builder it is (`insert as pg_insert` -> "insert").
    builders: dict[str, str] = field(default_factory=dict)
    # Names bound to a SQLAlchemy module (`import sqlalchemy as sa`, `postgresql`).
    sql_modules: set[str] = field(default_factory=set)
    # Names bound to a tenant table or an alias of one -> its model.
    tables: dict[str, str] = field(default_factory=dict)
    parents: dict[ast.AST, ast.AST] = field(default_factory=dict)
    # Definitions marked @cross_tenant -> the reason they give.
    cross_tenant: dict[ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef, str] = field(
        default_factory=dict
    )

    def __post_init__(self) -> None:
        for node in ast.walk(self.tree):
            for child in ast.iter_child_nodes(node):
                self.parents[child] = node
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sqlalchemy"):
                for alias in node.names:
                    local = alias.asname or alias.name
                    if alias.name in BUILDERS:
                        self.builders[local] = alias.name
                    elif alias.name.islower():
                        self.sql_modules.add(local)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("sqlalchemy"):
                        self.sql_modules.add(alias.asname or alias.name.split(".")[0])
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                for decorator in node.decorator_list:
                    if _decorator_name(decorator) == "cross_tenant":
                        self.cross_tenant[node] = _reason(decorator)
        self._find_table_names()

    def _find_table_names(self) -> None:
        """Names assigned a tenant table (`Message.__table__`) or an alias of one."""
        assignments = [
            (node.targets[0] if isinstance(node, ast.Assign) else node.target, node.value)
            for node in ast.walk(self.tree)
            if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None
        ]
        changed = True
        while changed:
            changed = False
            for target, value in assignments:
                model = self.table_model(value)
                if isinstance(target, ast.Name) and model and target.id not in self.tables:
                    self.tables[target.id] = model
                    changed = True

    def table_model(self, node: ast.AST) -> str | None:
        """The tenant model that `node` is, as a table: `Message`, `Message.__table__`,
        `aliased(Message)`, `Message.__table__.alias("m")` or a name bound to one."""
        if isinstance(node, ast.Name):
            if node.id in TENANT_MODELS:
                return node.id
            return self.tables.get(node.id)
        if isinstance(node, ast.Attribute) and node.attr == "__table__":
            return self.table_model(node.value)
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr == "alias":
                return self.table_model(func.value)
            if isinstance(func, ast.Name) and func.id == "aliased" and node.args:
                return self.table_model(node.args[0])
        return None

    def named_model(self, node: ast.AST, *, in_text: bool = False) -> str | None:
        """The first tenant model that `node` names, not counting scoped statements."""
        if _is_scoped(node) and isinstance(node, ast.Call):
            return None
        if in_text and isinstance(node, ast.Constant) and isinstance(node.value, str):
            found = TABLE_NAMES.search(node.value)
            return MODEL_OF_TABLE[found.group(1)] if found else None
        model = None if in_text else self.table_model(node)
        if model:
            return model
        for child in ast.iter_child_nodes(node):
            model = self.named_model(child, in_text=in_text)
            if model:
                return model
        return None

    def exempt(self, node: ast.AST) -> bool:
        while node in self.parents:
            node = self.parents[node]
            if node in self.cross_tenant:
                return True
        return False

    def chain(self, call: ast.Call) -> list[ast.Call]:
        """`call` and the method calls chained on it (`select(...).where(...)...`)."""
        calls = [call]
        node: ast.AST = call
        while True:
            attribute = self.parents.get(node)
            outer = self.parents.get(attribute) if attribute else None
            if not (
                isinstance(attribute, ast.Attribute)
                and isinstance(outer, ast.Call)
                and outer.func is attribute
            ):
                return calls
            calls.append(outer)
            node = outer

    def builder(self, call: ast.Call) -> str | None:
        """Which SQLAlchemy statement builder `call` is, if any."""
        func = call.func
        if isinstance(func, ast.Name):
            return self.builders.get(func.id)
        if isinstance(func, ast.Attribute):
            if isinstance(func.value, ast.Name) and func.value.id in self.sql_modules:
                return func.attr if func.attr in BUILDERS else None
            if func.attr in TABLE_BUILDERS and self.table_model(func.value):
                return func.attr
        return None


def _decorator_name(decorator: ast.expr) -> str | None:
    func = decorator.func if isinstance(decorator, ast.Call) else decorator
    if isinstance(func, ast.Name):
        return func.id
    return func.attr if isinstance(func, ast.Attribute) else None


def _reason(decorator: ast.expr) -> str:
    if isinstance(decorator, ast.Call):
        for keyword in decorator.keywords:
            if keyword.arg == "reason" and isinstance(keyword.value, ast.Constant):
                return str(keyword.value.value).strip()
    return ""


def _arguments(call: ast.Call) -> list[ast.expr]:
    return [*call.args, *(keyword.value for keyword in call.keywords)]


def _violations(module: Module) -> Iterator[str]:
    for node in ast.walk(module.tree):
        if node in module.cross_tenant and not module.cross_tenant[node]:
            yield f"{module.path}:{node.lineno}: @cross_tenant needs a literal, non-empty reason"
        if module.exempt(node):
            continue
        if isinstance(node, ast.Call):
            yield from _unscoped_statement(module, node)
            yield from _unscoped_join(module, node)
            yield from _load_by_key(module, node)
        yield from _tenant_filter(module, node)


def _unscoped_statement(module: Module, call: ast.Call) -> Iterator[str]:
    builder = module.builder(call)
    if builder is None:
        return
    parts: list[ast.AST] = [part for link in module.chain(call) for part in _arguments(link)]
    if isinstance(call.func, ast.Attribute) and builder in TABLE_BUILDERS:
        parts.append(call.func.value)
    for part in parts:
        model = module.named_model(part, in_text=builder == "text")
        if model:
            yield (
                f"{module.path}:{call.lineno}: {builder}() on tenant model {model} outside "
                f"the tenant scope: build it with self.scoped.{builder}(...), or mark the "
                "function @cross_tenant(reason=...)"
            )
            return


def _unscoped_join(module: Module, call: ast.Call) -> Iterator[str]:
    func = call.func
    if isinstance(func, ast.Attribute) and func.attr in JOINS:
        name, left = func.attr, func.value
        first = 1 if name == "join_from" else 0
        targets = call.args[first:] if name == "select_from" else call.args[first : first + 1]
    elif module.builder(call) in {"join", "outerjoin"}:
        name, left, targets = "join", call, call.args[:2]
    else:
        return
    owned = {
        module.table_model(node.args[0])
        for node in ast.walk(call)
        if isinstance(node, ast.Call) and _is_owns(node) and node.args
    }
    selected = _selected_models(module, left)
    for target in targets:
        model = module.table_model(target)
        if model and model not in owned and model not in selected:
            yield (
                f"{module.path}:{call.lineno}: {name}() of tenant model {model}, which the "
                f"statement does not select from: put self.scoped.owns({model}) in the ON clause"
            )


def _selected_models(module: Module, chain: ast.AST) -> set[str]:
    """The models a scoped select's own call names (its columns and `from_`)."""
    while isinstance(chain, ast.Call | ast.Attribute):
        if isinstance(chain, ast.Call) and isinstance(chain.func, ast.Attribute):
            if chain.func.attr == "select" and _is_scoped(chain):
                return {
                    model
                    for part in _arguments(chain)
                    for node in ast.walk(part)
                    if (model := module.table_model(node))
                }
        chain = chain.func if isinstance(chain, ast.Call) else chain.value
    return set()


def _load_by_key(module: Module, call: ast.Call) -> Iterator[str]:
    func = call.func
    if isinstance(func, ast.Attribute) and func.attr == "get" and call.args:
        model = module.table_model(call.args[0])
        if model:
            yield (
                f"{module.path}:{call.lineno}: get({model}, ...) loads a tenant row by its "
                "key alone: select it with self.scoped.select"
            )


def _tenant_filter(module: Module, node: ast.AST) -> Iterator[str]:
    """`Model.tenant_id == ...`, `table.c.tenant_id.in_(...)` and the like."""
    if isinstance(node, ast.Compare):
        operands = [node.left, *node.comparators]
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        operands = [node.func.value]
    else:
        return
    for operand in operands:
        if not (isinstance(operand, ast.Attribute) and operand.attr == TENANT_COLUMN):
            continue
        owner = operand.value
        if isinstance(owner, ast.Attribute) and owner.attr == "c":
            owner = owner.value
        model = module.table_model(owner)
        if model:
            yield (
                f"{module.path}:{node.lineno}: hand-written filter on {model}.tenant_id: "
                "start the statement from self.scoped, which adds it"
            )
            return


# Raw SQL (the hot reads on kit/reads.py's pool, written with upper-case keywords):
# every tenant table a statement reads is filtered on its alias's `tenant_id = $1`,
# the tenant `ReadPool.fetch` binds.
_RAW_TABLE = re.compile(
    r"\b(?:FROM|JOIN)\s+("
    + "|".join(sorted(TENANT_MODELS.values()))
    + r")\b(?:\s+(?:AS\s+)?(\w+))?",
)
_NOT_ALIASES = {"WHERE", "JOIN", "ON", "ORDER", "LIMIT", "GROUP", "USING", "SET", "LEFT", "INNER"}


def _strings(node: ast.AST) -> str:
    """The text of the string literals in `node` (f-strings' literal parts too),
    docstrings left out."""
    docstrings = {
        id(body[0].value)
        for scope in ast.walk(node)
        if isinstance(scope, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        and (body := scope.body)
        and isinstance(body[0], ast.Expr)
        and isinstance(body[0].value, ast.Constant)
    }
    return "\n".join(
        part.value
        for part in ast.walk(node)
        if isinstance(part, ast.Constant)
        and isinstance(part.value, str)
        and id(part) not in docstrings
    )


def _raw_sql_violations(module: Module) -> Iterator[str]:
    spanning = {id(inner) for marked in module.cross_tenant for inner in ast.walk(marked)}
    scopes: list[ast.AST] = [
        node
        for node in ast.walk(module.tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and id(node) not in spanning
    ]
    top = ast.Module(
        body=[
            statement
            for statement in module.tree.body
            if not isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        ],
        type_ignores=[],
    )
    for scope in [top, *scopes]:
        text = _strings(scope)
        for match in _RAW_TABLE.finditer(text):
            table, alias = match.group(1), match.group(2)
            if alias is None or alias in _NOT_ALIASES:
                alias = table
            where = f"{module.path}:{getattr(scope, 'name', '<module>')}"
            if not module.path.endswith("repository.py"):
                yield f"{where}: raw SQL on {table} outside a repository module"
            elif not re.search(rf"\b{alias}\.tenant_id = \$1\b", text):
                yield f"{where}: raw SQL on {table} without `{alias}.tenant_id = $1`"


def _modules() -> list[Module]:
    return [
        Module(path.relative_to(SOURCE).as_posix(), ast.parse(path.read_text()))
        for path in sorted(SOURCE.rglob("*.py"))
        if path.relative_to(SOURCE).as_posix() != SCOPE_MODULE
    ]


def _check(path: str, source: str) -> list[str]:
    return list(_violations(Module(path, ast.parse(source))))


def test_tenant_tables_are_queried_only_through_the_tenant_scope() -> None:
    found = [violation for module in _modules() for violation in _violations(module)]
    assert not found, "\n".join(found)


def test_raw_sql_filters_every_tenant_table_on_the_bound_tenant() -> None:
    found = [violation for module in _modules() for violation in _raw_sql_violations(module)]
    assert not found, "\n".join(found)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('def f(): return "SELECT 1 FROM messages m WHERE m.id = $2"',
         "without `m.tenant_id = $1`"),
        ('def f(): return "SELECT 1 FROM threads t JOIN messages m ON m.id = t.id "'
         '"WHERE t.tenant_id = $1"', "without `m.tenant_id = $1`"),
        ('Q = "SELECT 1 FROM mailboxes WHERE tenant_id = $2"',
         "without `mailboxes.tenant_id = $1`"),
    ],
)  # fmt: skip
def test_the_raw_sql_check_finds(source: str, expected: str) -> None:
    found = list(_raw_sql_violations(Module("x_repository.py", ast.parse(source))))
    assert any(expected in violation for violation in found), found
    elsewhere = list(_raw_sql_violations(Module("x/service.py", ast.parse(source))))
    assert any("outside a repository module" in violation for violation in elsewhere)


def test_the_raw_sql_check_lets_pass() -> None:
    source = (
        'def f(w): return f"SELECT 1 FROM messages m JOIN threads t ON t.id = m.thread_id "'
        ' + "WHERE m.tenant_id = $1 AND t.tenant_id = $1"'
    )
    assert list(_raw_sql_violations(Module("x_repository.py", ast.parse(source)))) == []


def test_every_cross_tenant_place_is_listed_here() -> None:
    marked = {
        f"{module.path}:{getattr(node, 'name', '?')}"
        for module in _modules()
        for node in module.cross_tenant
    }
    assert marked == CROSS_TENANT, (
        f"new: {sorted(marked - CROSS_TENANT)}, gone: {sorted(CROSS_TENANT - marked)}"
    )


def test_the_tenant_tables_come_from_the_models() -> None:
    assert {"Account", "Message", "Mailbox", "Change"} <= set(TENANT_MODELS)
    assert "ApiKey" not in TENANT_MODELS


_IMPORTS = """
from sqlalchemy import select, text, update
from sqlalchemy.orm import aliased
from mailsvc.kit.repository import cross_tenant
from mailsvc.models import Account, Mailbox, Message
"""


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("def f(s): return select(Account).where(Account.id == 1)", "select() on tenant model"),
        ("def f(s): return select(func.count()).where(Account.id == 1)", "tenant model Account"),
        ("def f(s): return update(Message.__table__)", "update() on tenant model Message"),
        ("T = Message.__table__\ndef f(s): return T.delete()", "delete() on tenant model Message"),
        ("def f(s): return text('DELETE FROM mailboxes')", "text() on tenant model Mailbox"),
        ("def f(self): return self.scoped.select(Account).where(Account.tenant_id == 'x')",
         "hand-written filter on Account.tenant_id"),
        ("A = aliased(Account)\ndef f(self): return A.tenant_id.in_(['x'])",
         "hand-written filter on Account.tenant_id"),
        ("def f(self): return self.scoped.select(Message.id).join(Mailbox, Mailbox.id == 1)",
         "join() of tenant model Mailbox"),
        ("def f(self): return self.session.get(Account, 1)", "get(Account, ...)"),
        ("@cross_tenant(reason='')\ndef f(s): return select(Account)", "needs a literal"),
    ],
)  # fmt: skip
def test_the_check_finds(source: str, expected: str) -> None:
    found = _check("example.py", _IMPORTS + source)
    assert any(expected in violation for violation in found), found
    assert all(violation.startswith("example.py:") for violation in found)


@pytest.mark.parametrize(
    "source",
    [
        "def f(self): return self.scoped.select(Account).where(Account.id == 1)",
        "def f(self): return self.scoped.select(Message, Mailbox).join(Mailbox, Mailbox.id == 1)",
        "def f(self): return select(self.scoped.select(Mailbox.id).exists())",
        "def f(self, q): return q.join(Mailbox, self.scoped.owns(Mailbox))",
        "@cross_tenant(reason='a sweep')\ndef f(s): return select(Account.tenant_id)",
        "def f(watch, tenant_id): return watch.tenant_id == tenant_id",
    ],
)  # fmt: skip
def test_the_check_lets_pass(source: str) -> None:
    assert _check("example.py", _IMPORTS + source) == []
