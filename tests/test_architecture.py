"""Rules of ../shared/STYLE.md that a test can hold: where SQL and libraries live."""

import ast
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "src" / "mailsvc"
SQL_BUILDERS = {"select", "insert", "update", "delete", "text", "union", "exists"}

# Each library is imported by exactly one module of ours (or one adapter package, named
# with a trailing slash), so a swap touches one place.
LIBRARY_OWNERS = {
    "aioimaplib": "imap/",
    "aiosmtplib": "smtp/client.py",
    "jose": "auth/tokens.py",
    "prometheus_client": "ops/metrics.py",
    "email_validator": "kit/addresses.py",
    "nh3": "mime/sanitize.py",
    "mailparser_reply": "mime/reply.py",
    "httpx": "webhook/client.py",
}


def _modules() -> list[tuple[str, ast.Module]]:
    return [
        (path.relative_to(SOURCE).as_posix(), ast.parse(path.read_text()))
        for path in sorted(SOURCE.rglob("*.py"))
    ]


def _imports(tree: ast.Module) -> list[tuple[str, set[str]]]:
    found: list[tuple[str, set[str]]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.append((node.module, {alias.name for alias in node.names}))
        elif isinstance(node, ast.Import):
            found.extend((alias.name, set()) for alias in node.names)
    return found


def _may_hold_sql(module: str) -> bool:
    return module.endswith("repository.py") or module.startswith(("kit/", "models/"))


@pytest.mark.parametrize(("module", "tree"), _modules(), ids=lambda value: str(value)[:40])
def test_sql_lives_only_in_repositories_and_kit(module: str, tree: ast.Module) -> None:
    if _may_hold_sql(module):
        return
    for imported, names in _imports(tree):
        if imported.startswith("sqlalchemy"):
            assert not (names & SQL_BUILDERS), f"{module} builds SQL: {names & SQL_BUILDERS}"


def test_each_library_has_one_owner_module() -> None:
    for module, tree in _modules():
        for imported, _ in _imports(tree):
            top = imported.split(".")[0]
            owner = LIBRARY_OWNERS.get(top)
            allowed = owner is None or module == owner or (
                owner.endswith("/") and module.startswith(owner)
            )
            assert allowed, f"{module} imports {top}; only {owner} may"
