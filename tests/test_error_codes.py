"""Every stable `code` the API answers with is registered once and documented.

`mailsvc.errors.ERROR_CODES` is the registry; every literal code in the source must
be in it, and docs/api.md's table must list exactly the registry.
"""

import ast
from pathlib import Path

from mailsvc.errors import ERROR_CODES

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "src" / "mailsvc"
API_DOC = ROOT / "docs" / "api.md"
TABLE_START = "<!-- error-codes:start -->"
TABLE_END = "<!-- error-codes:end -->"


def _string(node: ast.AST | None) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def _codes_in(tree: ast.AST) -> set[str]:
    """`code="..."` arguments, `code = "..."` class attributes (also as the middle of
    `status, code, title = ...`) and the values of `{status: "code"}` maps."""
    codes: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "code":
            codes.add(_string(node.value) or "")
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name) and target.id == "code":
                    codes.add(_string(node.value) or "")
                elif isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
                    for name, value in zip(target.elts, node.value.elts, strict=False):
                        if isinstance(name, ast.Name) and name.id == "code":
                            codes.add(_string(value) or "")
        elif isinstance(node, ast.Dict) and all(
            isinstance(key, ast.Constant) and isinstance(key.value, int) for key in node.keys
        ):
            codes |= {_string(value) or "" for value in node.values}
    # A computed code (an f-string, a variable) is not a literal to check here.
    return codes - {""}


def _source_codes() -> dict[str, str]:
    found: dict[str, str] = {}
    for path in sorted(SOURCE.rglob("*.py")):
        for code in _codes_in(ast.parse(path.read_text(), str(path))):
            found.setdefault(code, str(path.relative_to(ROOT)))
    return found


def render_table() -> str:
    """The docs table, as docs/api.md must hold it between its markers."""
    rows = [
        f"| `{code}` | {entry.status} | {entry.when} |"
        for code, entry in sorted(ERROR_CODES.items(), key=lambda item: (item[1].status, item[0]))
    ]
    return "\n".join(["| code | status | when |", "|---|---|---|", *rows])


def test_the_scan_finds_codes_where_they_are_raised() -> None:
    tree = ast.parse(
        'class E:\n    status, code, title = 400, "a_code", "A"\n'
        'raise NotFoundError("x", code="b_code")\n'
        'CODES = {404: "c_code"}\n'
    )
    assert _codes_in(tree) == {"a_code", "b_code", "c_code"}


def test_every_code_in_the_source_is_registered() -> None:
    unregistered = {
        code: where for code, where in _source_codes().items() if code not in ERROR_CODES
    }
    assert not unregistered, f"add to mailsvc.errors.ERROR_CODES: {unregistered}"


def test_every_registered_code_has_an_error_status_and_a_meaning() -> None:
    for code, entry in ERROR_CODES.items():
        assert 400 <= entry.status <= 599, code
        assert entry.when.strip(), code


def test_the_api_docs_list_exactly_the_registered_codes() -> None:
    text = API_DOC.read_text()
    assert TABLE_START in text, f"docs/api.md lacks {TABLE_START}"
    documented = text.split(TABLE_START, 1)[1].split(TABLE_END, 1)[0].strip()
    assert documented == render_table(), (
        "docs/api.md's error-code table differs from mailsvc.errors.ERROR_CODES; "
        f"replace it with:\n{render_table()}"
    )
