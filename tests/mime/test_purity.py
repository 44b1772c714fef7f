"""STYLE.md rule 7: the MIME layer is pure, so it can run anywhere (a process pool)."""

from __future__ import annotations

import ast
from pathlib import Path

import mailsvc.mime

PACKAGE = Path(mailsvc.mime.__file__).parent
# I/O and framework libraries; the mime layer gets bytes and returns plain data.
FORBIDDEN = {"sqlalchemy", "aioimaplib", "aiosmtplib", "asyncio", "fastapi", "redis", "arq"}


def test_mime_imports_only_the_standard_library_and_itself() -> None:
    for path in sorted(PACKAGE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                assert top not in FORBIDDEN, f"{path.name} imports {name}"
                assert top != "mailsvc" or name.startswith("mailsvc.mime"), (
                    f"{path.name} imports {name}"
                )
