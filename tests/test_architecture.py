"""Rules of ../shared/STYLE.md that a test can hold: where SQL and libraries live, and
which way imports run between packages."""

import ast
import itertools
from collections import defaultdict
from collections.abc import Iterable, Mapping
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
    "mailparser_reply": "mime/reply_text.py",
    "httpx": "kit/outbound_http.py",
    "fastapi_offline": "ops/docs.py",
    "jinja2": "console/rendering.py",
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
            allowed = (
                owner is None
                or module == owner
                or (owner.endswith("/") and module.startswith(owner))
            )
            assert allowed, f"{module} imports {top}; only {owner} may"


# The packages (and top-level modules) of src/mailsvc from the bottom up. A package
# may import its own layer and the ones below, never one above; docs/architecture.md
# draws the same picture. A new package has to be placed here.
LAYERS: list[set[str]] = [
    # Foundation: no domain knowledge, or pure mail formats.
    {
        "config",
        "error_codes",
        "errors",
        "logging",
        "kit",
        "models",
        "mime",
        "compose",
        "jobs",
        "embedded",
    },
    # Adapters to the outside and cross-cutting concerns every domain may use.
    {"imap", "smtp", "auth", "ops"},
    # Domains, each resting on the ones below it.
    {"event"},
    {"oauth"},
    {"account"},
    {"mirror", "search"},
    {"message"},
    {"thread", "outbox"},
    {"sync", "draft", "webhook"},
    # The operator console: pages over the domains' services, as the API's endpoints are.
    {"console"},
    # Entry points: the composition root and what runs the processes.
    {"middleware", "api", "runtime", "app", "worker", "cli", "dev", "__main__", "__init__"},
]


def _package(module: str) -> str:
    """`sync/engine.py` -> `sync`; `app.py` -> `app`."""
    return module.split("/")[0].removesuffix(".py")


def _is_module(name: str) -> bool:
    return (SOURCE / name).is_dir() or (SOURCE / f"{name}.py").is_file()


def package_imports(
    modules: Iterable[tuple[str, ast.Module]],
) -> dict[str, dict[str, set[str]]]:
    """importer package -> imported package -> the importing modules.

    Every import counts, also those under `if TYPE_CHECKING:` or inside a function: a
    cycle hidden that way is still a cycle in what a reader has to understand.
    """
    graph: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for module, tree in modules:
        importer = _package(module)
        for imported, names in _imports(tree):
            if imported == "mailsvc":  # `from mailsvc import x`: a module, or the package's own
                targets = {name if _is_module(name) else "__init__" for name in names}
            elif imported.startswith("mailsvc."):
                targets = {imported.split(".")[1]}
            else:
                continue
            for target in targets:
                if target != importer:
                    graph[importer][target].add(module)
    return graph


def find_cycle(graph: Mapping[str, Mapping[str, set[str]]]) -> list[str] | None:
    """One cycle of packages (first package repeated at the end), or None."""
    done: set[str] = set()
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return None
        path.append(node)
        for successor in sorted(graph.get(node, {})):
            cycle = visit(successor)
            if cycle is not None:
                return cycle
        path.pop()
        done.add(node)
        return None

    for start in sorted(graph):
        cycle = visit(start)
        if cycle is not None:
            return cycle
    return None


def layer_violations(graph: Mapping[str, Mapping[str, set[str]]]) -> list[str]:
    """Each import of a package from a higher layer, and each package not in LAYERS."""
    layer_of = {name: level for level, names in enumerate(LAYERS) for name in names}
    problems: list[str] = []
    for importer, targets in sorted(graph.items()):
        for target, modules in sorted(targets.items()):
            unplaced = [name for name in (importer, target) if name not in layer_of]
            if unplaced:
                problems.append(f"{', '.join(unplaced)} is in no layer of LAYERS")
            elif layer_of[target] > layer_of[importer]:
                problems.append(
                    f"{importer} imports {target}, a layer above it ({', '.join(sorted(modules))})"
                )
    return problems


def test_no_import_cycle_between_packages() -> None:
    graph = package_imports(_modules())
    cycle = find_cycle(graph)
    if cycle is not None:
        links = [
            f"{a} -> {b} ({', '.join(sorted(graph[a][b]))})" for a, b in itertools.pairwise(cycle)
        ]
        pytest.fail("import cycle between packages:\n" + "\n".join(links))


def test_packages_import_only_their_layer_and_below() -> None:
    problems = layer_violations(package_imports(_modules()))
    assert not problems, "\n".join(problems)


def test_the_rules_catch_a_cycle_and_an_upward_import() -> None:
    # The checks themselves, on a made-up tree: a domain below importing one above.
    tree = [
        ("kit/db.py", ast.parse("import sqlalchemy")),
        ("account/service.py", ast.parse("from mailsvc.sync.engine import SyncEngine")),
        ("sync/engine.py", ast.parse("from mailsvc.account import service")),
    ]
    graph = package_imports(tree)
    assert find_cycle(graph) == ["account", "sync", "account"]
    assert layer_violations(graph) == [
        "account imports sync, a layer above it (account/service.py)"
    ]
