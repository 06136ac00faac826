"""The layers of bridge/ (ARCHITECTURE.md), as a test: each rule names what a package may not
import. Imports are read from the source (ast), including those inside functions and under
TYPE_CHECKING, so a rule cannot be dodged by a late import."""

from __future__ import annotations

import ast
import re
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

BRIDGE = Path(__file__).resolve().parent.parent / "bridge"
PYPROJECT = BRIDGE.parent / "pyproject.toml"

#: Modules that do I/O, keep time or draw randomness: none of them in the sans-I/O core.
IO_MODULES = {"asyncio", "socket", "ssl", "selectors", "sqlite3", "asyncpg", "aiosmtpd", "spyne",
              "aiohttp", "aiohttp_spyne", "aiosmtplib", "smpplib", "zeep", "threading",
              "subprocess", "logging", "time", "random", "os", "multiprocessing"}

ADAPTERS = ("bridge.ingress.smtp", "bridge.ingress.soap", "bridge.ingress.http")

#: (package, what it must not import, why)
RULES: list[tuple[str, tuple[str, ...], str]] = [
    ("bridge.core", ("bridge.",), "the core is pure: it imports only itself"),
    ("bridge.store", ("bridge.ingress", "bridge.intake", "bridge.outbound", "bridge.runtime",
                      "bridge.bench", "bridge.simulator"),
     "the store only persists"),
    ("bridge.intake", ("bridge.ingress", "bridge.outbound", "bridge.runtime", "bridge.bench",
                       "bridge.simulator", "bridge.store.sqlite", "bridge.store.postgres"),
     "the intake knows the Store contract, no wire format and no implementation"),
    ("bridge.outbound", ("bridge.ingress", "bridge.intake", "bridge.runtime", "bridge.bench",
                         "bridge.simulator", "bridge.store.sqlite", "bridge.store.postgres"),
     "the outbound side works on the Store contract, after the intake"),
    ("bridge.simulator", ("bridge.ingress", "bridge.intake", "bridge.outbound", "bridge.runtime",
                          "bridge.store", "bridge.bench"),
     "the simulator is an SMSC of its own"),
    *[(adapter, tuple(other for other in ADAPTERS if other != adapter) +
       ("bridge.outbound", "bridge.runtime", "bridge.bench", "bridge.simulator",
        "bridge.store.sqlite", "bridge.store.postgres"),
       "an ingress adapter calls the intake; it imports no other adapter and no outbound side")
      for adapter in ADAPTERS],
    ("bridge.ingress.console", ADAPTERS + ("bridge.outbound", "bridge.runtime", "bridge.bench",
                                           "bridge.simulator", "bridge.store.sqlite",
                                           "bridge.store.postgres"),
     "the console reads the Store contract, the metrics and the status callable the "
     "composition root passes; it imports no adapter, no outbound side, no store"),
]


def module_name(path: Path, root: Path = BRIDGE.parent) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, root: Path = BRIDGE.parent) -> set[str]:
    """Absolute module names imported anywhere in the file (relative imports resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def sources(package: str, root: Path = BRIDGE.parent) -> list[Path]:
    folder = root.joinpath(*package.split("."))
    return sorted(folder.rglob("*.py")) if folder.is_dir() else []


def offences(package: str, forbidden: tuple[str, ...], root: Path = BRIDGE.parent) -> list[str]:
    found = []
    for path in sources(package, root):
        for module in sorted(imported_modules(path, root)):
            if module.startswith(package + ".") or module == package:
                continue
            if any(module == f.rstrip(".") or module.startswith(f if f.endswith(".") else f + ".")
                   for f in forbidden):
                found.append(f"{module_name(path, root)} imports {module}")
    return found


@pytest.mark.parametrize(("package", "forbidden", "why"), RULES, ids=[r[0] for r in RULES])
def test_layer(package: str, forbidden: tuple[str, ...], why: str) -> None:
    if package not in ADAPTERS or sources(package):
        assert sources(package), f"{package} has no sources: the rule would guard nothing"
    assert offences(package, forbidden) == [], why


def test_core_imports_no_io() -> None:
    bad = [f"{module_name(p)} imports {m}" for p in sources("bridge.core")
           for m in imported_modules(p) if m.split(".")[0] in IO_MODULES]
    assert bad == []


def test_bench_is_imported_only_by_the_cli_bench_command() -> None:
    users = [f"{module_name(p)} imports {m}" for p in sorted(BRIDGE.rglob("*.py"))
             if not module_name(p).startswith("bridge.bench")
             for m in imported_modules(p) if m == "bridge.bench" or m.startswith("bridge.bench.")]
    assert users == []  # the CLI runs benches as `python -m bridge.bench.X`, never imports them


def _bench_module_names(path: Path) -> list[ast.Constant]:
    """The string literals in the code (docstrings aside) that start with a bench module's
    name: what `importlib.import_module`, `runpy` or `python -m` would be given."""
    tree = ast.parse(path.read_text(), filename=str(path))
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                                       ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    return [node for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and id(node) not in docstrings and node.value.startswith("bridge.bench")]


def test_only_the_cli_names_a_bench_and_only_to_run_it_as_a_child_process() -> None:
    """No late import by name either: outside bridge/bench, a bench module is named only by
    bridge/cli.py, as the module of a `python -m` child process (`[sys.executable, "-m",
    f"bridge.bench.{name}", …]`)."""
    named = {module_name(p): _bench_module_names(p) for p in sorted(BRIDGE.rglob("*.py"))
             if not module_name(p).startswith("bridge.bench")}
    assert [m for m, found in named.items() if found and m != "bridge.cli"] == []
    cli = ast.parse((BRIDGE / "cli.py").read_text())
    as_child = set()
    for node in ast.walk(cli):
        if isinstance(node, ast.List):
            items = node.elts
            for flag, module in zip(items, items[1:]):
                if isinstance(flag, ast.Constant) and flag.value == "-m":
                    as_child.update((n.lineno, n.col_offset) for n in ast.walk(module)
                                    if isinstance(n, ast.Constant))
    assert named["bridge.cli"], "the CLI runs the benches: the rule would guard nothing"
    assert all((node.lineno, node.col_offset) in as_child for node in named["bridge.cli"])


def _distribution(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _third_party(package: str, *, inside: bool) -> set[str]:
    """The distributions whose modules `package` (inside=True) or the rest of bridge/ imports."""
    paths = [p for p in sorted(BRIDGE.rglob("*.py"))
             if module_name(p).startswith(package) == inside]
    top = {m.split(".")[0] for p in paths for m in imported_modules(p)}
    found = packages_distributions()
    return {_distribution(d) for m in top - {"bridge"} for d in found.get(m, ())}


def test_the_runtime_dependencies_are_what_the_product_imports() -> None:
    """pyproject's `dependencies` are what `serve` needs: each is imported by the product (not
    only by the benches), and the benches' own needs (httptools) are the `bench` extra, which
    `test` includes for the bench tests."""
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    runtime = {_distribution(r) for r in project["dependencies"]}
    extras = {name: {_distribution(r) for r in reqs}
              for name, reqs in project["optional-dependencies"].items()}
    assert "httptools" not in runtime
    assert "httptools" in extras["bench"] and extras["bench"] <= extras["test"]
    product = _third_party("bridge.bench", inside=False)
    assert runtime - product == set(), "a runtime dependency only the benches import"
    assert _third_party("bridge.bench", inside=True) <= runtime | extras["bench"]


def test_the_checker_catches_each_kind_of_import(tmp_path: Path) -> None:
    package = tmp_path / "bridge" / "ingress" / "soap"
    package.mkdir(parents=True)
    probe = package / "probe.py"
    probe.write_text("import asyncio\nfrom bridge.ingress.smtp import server\n"
                     "def late() -> None:\n    from ..smtp import text\n"
                     "from bridge.outbound.smpp import pool\n")
    assert imported_modules(probe, tmp_path) >= {
        "asyncio", "bridge.ingress.smtp.server", "bridge.ingress.smtp.text",
        "bridge.outbound.smpp.pool"}
    assert offences("bridge.ingress.soap", ("bridge.ingress.smtp", "bridge.outbound"),
                    tmp_path) == [
        "bridge.ingress.soap.probe imports bridge.ingress.smtp",
        "bridge.ingress.soap.probe imports bridge.ingress.smtp.server",
        "bridge.ingress.soap.probe imports bridge.ingress.smtp.text",
        "bridge.ingress.soap.probe imports bridge.outbound.smpp",
        "bridge.ingress.soap.probe imports bridge.outbound.smpp.pool"]
