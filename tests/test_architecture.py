"""The layering rules of docs/architecture.md, checked on the source itself (AST, not grep).

Every import counts: at the top of a module, inside a function, under TYPE_CHECKING.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

PACKAGES = ("search", "db", "bot", "cli", "lookalike", "bench", "web", "feed", "migrations")
DOORS = ("bot", "cli", "web", "feed")
# What drives the engine from outside it: the doors, the roof and the benchmarks.
OUTSIDE = (*DOORS, "lookalike", "bench")
# The engine's subpackages, each with its facade (__init__.py): the only search modules that
# code outside the engine imports, besides `search` itself.
SEARCH_FACADES = ("search", "search.featurize", "search.index", "search.evaluation")
ROOF = "lookalike"  # settings and the composition root
TOOLING = "bench"
MAX_LINES = 500
MAX_PUBLIC_METHODS = 15
# The fake Telegram Bot API is a test double of a whole foreign server, not project code.
LONG_ON_PURPOSE = {Path("tests/fakebotapi/server.py")}


@dataclass(frozen=True, slots=True)
class Import:
    importer: str  # dotted module name, e.g. "search.catalog"
    imported: str  # dotted name as resolved, e.g. "db.repository"
    line: int


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_files(*roots: str) -> list[Path]:
    files: list[Path] = []
    for root in roots:
        folder = REPO_ROOT / root
        if folder.is_dir():
            files.extend(sorted(folder.rglob("*.py")))
    return files


def imports_of(path: Path) -> Iterator[Import]:
    """Every import statement in the file, wherever it stands, with relative ones resolved."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(name, alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                # `from search import images` imports a module; `from search import SearchEngine`
                # a name of the package: either way the edge goes to the module that runs.
                candidate = f"{base}.{alias.name}"
                yield Import(name, candidate if is_module(candidate) else base, node.lineno)


def is_module(dotted: str) -> bool:
    path = REPO_ROOT.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def top(dotted: str) -> str:
    return dotted.split(".")[0]


def project_imports() -> list[Import]:
    return [imp for path in source_files(*PACKAGES) for imp in imports_of(path)]


def test_the_engine_knows_no_door_no_roof_and_no_tooling() -> None:
    wrong = [
        f"{imp.importer}:{imp.line} imports {imp.imported}"
        for imp in project_imports()
        if top(imp.importer) in ("search", "db") and top(imp.imported) in (*DOORS, ROOF, TOOLING)
    ]
    assert wrong == []


def test_db_sits_below_search() -> None:
    wrong = [
        f"{imp.importer}:{imp.line} imports {imp.imported}"
        for imp in project_imports()
        if top(imp.importer) == "db" and top(imp.imported) == "search"
    ]
    assert wrong == []


def test_the_roof_imports_no_door() -> None:
    """Settings and wiring are imported by the doors, never the other way round."""
    wrong = [
        f"{imp.importer}:{imp.line} imports {imp.imported}"
        for imp in project_imports()
        if top(imp.importer) == ROOF and top(imp.imported) in DOORS
    ]
    assert wrong == []


def test_only_the_extractor_imports_tensorflow() -> None:
    wrong = [
        f"{imp.importer}:{imp.line} imports {imp.imported}"
        for imp in project_imports()
        if top(imp.imported) in ("tensorflow", "keras", "tf2onnx")
        and imp.importer != "search.featurize.runtimes.keras"
    ]
    assert wrong == []


def test_outside_the_engine_only_its_facades_are_imported() -> None:
    """Doors, the roof and the benchmarks import `search` and its subpackages' facades, never
    an engine module: what the engine offers is what the facades export."""
    wrong = [
        f"{imp.importer}:{imp.line} imports {imp.imported}"
        for imp in project_imports()
        if top(imp.importer) in OUTSIDE
        and top(imp.imported) == "search"
        and imp.imported not in SEARCH_FACADES
    ]
    assert wrong == []


def test_the_feed_is_a_service_reached_through_its_facade() -> None:
    """The bot, the web server, the command line and the benchmarks start syncs through `feed`
    (feed/__init__.py); the feed's own modules are its machinery."""
    wrong = [
        f"{imp.importer}:{imp.line} imports {imp.imported}"
        for imp in project_imports()
        if top(imp.importer) in OUTSIDE
        and top(imp.importer) != "feed"
        and top(imp.imported) == "feed"
        and imp.imported != "feed"
    ]
    assert wrong == []


def test_the_engines_subpackages_are_leaves() -> None:
    """search.featurize (pixels to vectors) and search.index (the vector indexes) know nothing of
    the engine around them but its errors: each can be read, tested and replaced alone."""
    wrong = [
        f"{imp.importer}:{imp.line} imports {imp.imported}"
        for imp in project_imports()
        for room in ("search.featurize", "search.index")
        if imp.importer.startswith(room)
        and top(imp.imported) == "search"
        and not imp.imported.startswith(room)
        and imp.imported != "search.errors"
    ]
    assert wrong == []


def test_every_error_of_the_engine_is_defined_in_one_module() -> None:
    """A door catches the engine's errors from one place: search/errors.py defines them all."""
    elsewhere = [
        f"{module_name(path)}.{node.name}"
        for path in source_files("search")
        if path != REPO_ROOT / "search" / "errors.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ClassDef)
        and any(
            (base.id if isinstance(base, ast.Name) else getattr(base, "attr", "")).endswith(
                ("Error", "Exception")
            )
            for base in node.bases
        )
    ]
    assert elsewhere == []


def test_no_import_cycles_between_modules() -> None:
    graph: dict[str, set[str]] = {}
    for imp in project_imports():
        if top(imp.imported) in PACKAGES and imp.imported != imp.importer:
            graph.setdefault(imp.importer, set()).add(imp.imported)
    cycles = find_cycles(graph)
    assert cycles == [], "\n".join(" -> ".join(cycle) for cycle in cycles)


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_find_cycles_finds_one_hidden_in_a_function() -> None:
    """The checker itself can fail: a cycle closed by a function-level import is found."""
    tree = ast.parse("def later():\n    from a import b\n")
    imported = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert imported == ["a"]
    assert find_cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]


@pytest.mark.parametrize("root", [*PACKAGES, "tests"])
def test_no_module_is_longer_than_a_screenful_of_screenfuls(root: str) -> None:
    long = {
        str(path.relative_to(REPO_ROOT)): lines
        for path in source_files(root)
        if path.relative_to(REPO_ROOT) not in LONG_ON_PURPOSE
        and (lines := path.read_text(encoding="utf-8").count("\n")) > MAX_LINES
    }
    assert long == {}


def test_no_class_has_more_than_fifteen_public_methods() -> None:
    crowded = {}
    for path in source_files(*PACKAGES):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                public = [
                    f.name
                    for f in node.body
                    if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)
                    and not f.name.startswith("_")
                ]
                if len(public) > MAX_PUBLIC_METHODS:
                    crowded[f"{module_name(path)}.{node.name}"] = len(public)
    assert crowded == {}


def function(path: Path, name: str) -> ast.AsyncFunctionDef | ast.FunctionDef:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name:
            return node
    raise AssertionError(f"no function {name} in {path}")


def attribute_calls(node: ast.AST) -> list[str]:
    """`x.y.z(...)` -> "y.z" for every call of an attribute inside `node`."""
    names = []
    for call in ast.walk(node):
        if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute):
            owner = call.func.value
            prefix = f"{owner.attr}." if isinstance(owner, ast.Attribute) else ""
            names.append(prefix + call.func.attr)
    return names


def test_the_customer_photo_handler_is_short_and_searches_with_one_engine_call() -> None:
    customer = REPO_ROOT / "bot" / "handlers" / "customer.py"
    handler = function(customer, "photo")
    assert handler.end_lineno is not None and handler.end_lineno - handler.lineno + 1 < 40
    # The handler downloads through the shared path and hands the bytes to search_bytes,
    # which makes the one engine call of the search.
    assert "search_bytes" in [
        n.func.id
        for n in ast.walk(handler)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
    ]
    assert attribute_calls(function(customer, "search_bytes")).count("engine.search_photo") == 1


def test_every_photo_taking_handler_uses_the_one_download_and_engine_pipeline() -> None:
    """Handlers never decode, featurise or download themselves: bot/files.py downloads, the
    engine's search_photo / add_photo do the rest."""
    for path in source_files("bot/handlers"):
        text = path.read_text(encoding="utf-8")
        for internal in (".prepare(", ".embed(", "models.", "get_file(", "MAX_DOWNLOAD_BYTES ="):
            assert internal not in text, f"{path.relative_to(REPO_ROOT)} uses {internal}"
    add = REPO_ROOT / "bot" / "handlers" / "admin_add.py"
    store = function(add, "_store")
    assert "engine.add_photo" in attribute_calls(store)
    assert "download" in [
        n.func.id
        for n in ast.walk(store)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
    ]


# ---- db's facade -------------------------------------------------------------------------------

# Everything above the engine: they reach db through its facade (db/__init__.py) only.
ABOVE_THE_ENGINE = ("bot", "web", "cli", "feed", "lookalike", "bench")


def test_above_the_engine_db_is_imported_through_its_facade_only() -> None:
    """Doors, the roof and the benchmarks import `db` (its stores and the database's own
    operations), never a db module: the catalogue's tables and the repository are the
    engine's."""
    wrong = [
        f"{imp.importer}:{imp.line} imports {imp.imported}"
        for path in source_files(*ABOVE_THE_ENGINE)
        for imp in imports_of(path)
        if top(imp.imported) == "db" and imp.imported != "db"
    ]
    assert wrong == []


def facade_exports(path: Path) -> dict[str, str]:
    """{name in the module's __all__: the module it is imported from ("" if defined there)}."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    origin = {
        alias.asname or alias.name: node.module or ""
        for node in tree.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    exported: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "__all__" for target in node.targets
        ):
            exported.extend(ast.literal_eval(node.value))
    return {name: origin.get(name, "") for name in exported}


def top_level_names(path: Path) -> set[str]:
    """The classes and functions a module defines at its top level."""
    return {
        node.name
        for node in ast.parse(path.read_text(encoding="utf-8")).body
        if isinstance(node, ast.ClassDef | ast.FunctionDef)
    }


def test_the_db_facade_exports_no_table_and_no_repository_function() -> None:
    exported = facade_exports(REPO_ROOT / "db" / "__init__.py")
    assert "ApiKeys" in exported  # the check reads the facade it means to
    catalogue = {"db.tables", "db.repository"}
    names = top_level_names(REPO_ROOT / "db" / "tables.py") | top_level_names(
        REPO_ROOT / "db" / "repository.py"
    )
    wrong = sorted(
        name for name, module in exported.items() if module in catalogue or name in names
    )
    assert wrong == []
