"""bridge/core stays sans-I/O: it imports nothing that does I/O or belongs to an adapter."""

from __future__ import annotations

import ast
from pathlib import Path

FORBIDDEN = {"asyncio", "socket", "ssl", "selectors", "sqlite3", "aiosmtpd", "spyne", "aiohttp",
             "aiohttp_spyne", "smpplib", "zeep", "threading", "subprocess", "logging", "time",
             "random", "os"}
ALLOWED_BRIDGE = "bridge.core"

CORE = Path(__file__).resolve().parent.parent / "bridge" / "core"


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_core_imports_no_io_and_no_adapter() -> None:
    files = sorted(CORE.glob("*.py"))
    assert len(files) >= 8
    for path in files:
        for module in imported_modules(path):
            top = module.split(".")[0]
            assert top not in FORBIDDEN, f"{path.name} imports {module}"
            if top == "bridge":
                assert module.startswith(ALLOWED_BRIDGE), f"{path.name} imports {module}"


def test_the_checker_itself_catches_an_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import asyncio\nfrom bridge.smpp import client\n")
    assert imported_modules(bad) == {"asyncio", "bridge.smpp"}
