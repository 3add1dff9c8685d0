"""The package's layers (docs/architecture.md), checked on the source with the stdlib ``ast``.

Every ``import`` in every module of ``model_signing`` counts, those inside functions included: a lazy
import is still a dependency.  Three rules:

1. imports go down the layers (or stay in the same layer);
2. a private module (``_name``) is imported only from inside the package that contains it, and a private
   name (``from m import _name``) only from inside ``m``'s own package;
3. the import graph has no cycle.

Any exception is listed below with its reason; an exception that no longer occurs fails the test too,
so the list cannot rot.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "model_signing"

#: Layer of each module, by the longest matching prefix (see docs/architecture.md).
LAYERS: dict[str, int] = {
    "model_signing.errors": 0,
    "model_signing._internal": 1,
    "model_signing.manifest": 2,
    "model_signing.results": 2,
    "model_signing.hashing": 3,
    "model_signing.oms": 3,
    "model_signing.scan": 3,
    "model_signing.keymaterial": 4,
    "model_signing.methods": 5,
    "model_signing.signing": 6,
    "model_signing.verifying": 6,
    "model_signing.inspecting": 6,
    "model_signing.quarantine": 6,  # moves a model that failed verification (verifying, loading)
    "model_signing.keyless": 6,  # the compatibility re-export of methods.sigstore
    "model_signing.policy": 7,
    "model_signing.loading": 8,
    "model_signing.integrations": 8,
    "model_signing.hub": 8,  # the public name of integrations.hub (a re-export)
    "model_signing.cli": 9,
    "model_signing.__main__": 9,
    # The facade: lazily re-exports the public API of every layer.
    "model_signing": 10,
}
#: The local Sigstore instance is a test oracle beside the stack: it may use only these.
SIDE = "model_signing.sigstore_local"
SIDE_ALLOWED = ("model_signing.errors", "model_signing._internal", SIDE)

#: (importer, imported) pairs allowed to break a rule, with the reason.
EXCEPTIONS: dict[tuple[str, str], str] = {
    ("model_signing.errors", "model_signing.results"): (
        "type-only (TYPE_CHECKING): ModelMismatchError carries the VerifyResult of the failed verification"
    ),
    ("model_signing.errors", "model_signing._internal.text"): (
        "errors is L0 but words its messages with the L1 plural helper (stdlib only, imports nothing back)"
    ),
}


@dataclass(frozen=True)
class Import:
    importer: str
    target: str  # a module of the package
    name: str | None  # the name imported from it (``from target import name``), if not a module
    line: int
    type_only: bool


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_package(name: str, modules: dict[str, Path]) -> bool:
    return modules[name].name == "__init__.py"


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and (
            (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING")
            or (isinstance(node.test, ast.Attribute) and node.test.attr == "TYPE_CHECKING")
        ):
            for child in node.body:
                for sub in ast.walk(child):
                    if hasattr(sub, "lineno"):
                        lines.add(sub.lineno)
    return lines


def _imports(modules: dict[str, Path]) -> Iterator[Import]:
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        typing_only = _type_checking_lines(tree)
        package = name if _is_package(name, modules) else name.rpartition(".")[0]
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == "model_signing":
                        yield Import(name, alias.name, None, node.lineno, node.lineno in typing_only)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - node.level + 1]
                    source = ".".join([*base, *([node.module] if node.module else [])])
                else:
                    source = node.module or ""
                if source.split(".")[0] != "model_signing":
                    continue
                for alias in node.names:
                    sub = f"{source}.{alias.name}"
                    if sub in modules:
                        yield Import(name, sub, None, node.lineno, node.lineno in typing_only)
                    else:
                        yield Import(name, source, alias.name, node.lineno, node.lineno in typing_only)


def _layer(module: str) -> int | None:
    best = max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len, default=None)
    return LAYERS[best] if best is not None else None


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _privacy_owner(target: str) -> str | None:
    """The package a private module belongs to (its importers must be inside it), if it is private."""
    parts = target.split(".")
    for i, part in enumerate(parts):
        if part.startswith("_") and not part.startswith("__"):
            return ".".join(parts[:i])
    return None


def _excepted(imp: Import) -> bool:
    return any(
        _within(imp.importer, importer) and _within(imp.target, target) for importer, target in EXCEPTIONS
    )


def _used_exceptions(imports: list[Import]) -> set[tuple[str, str]]:
    return {
        (importer, target)
        for importer, target in EXCEPTIONS
        for imp in imports
        if _within(imp.importer, importer) and _within(imp.target, target)
    }


@pytest.fixture(scope="module")
def graph() -> tuple[dict[str, Path], list[Import]]:
    modules = _modules()
    return modules, list(_imports(modules))


def test_the_checker_sees_the_package(graph: tuple[dict[str, Path], list[Import]]) -> None:
    modules, imports = graph
    # Known modules and a known import edge: the checker is looking at the real tree.
    assert {"model_signing.methods.key", "model_signing.hashing.walk", "model_signing.oms.bundle"} <= set(modules)
    assert any(i.importer == "model_signing.methods.key" and i.target == "model_signing.methods.base" for i in imports)
    unplaced = sorted(m for m in modules if _layer(m) is None and not _within(m, SIDE))
    assert not unplaced, f"modules without a layer (add them to LAYERS): {unplaced}"


def test_imports_go_down_the_layers(graph: tuple[dict[str, Path], list[Import]]) -> None:
    _, imports = graph
    bad = []
    for imp in imports:
        if _excepted(imp):
            continue
        if _within(imp.importer, SIDE):
            if not any(_within(imp.target, ok) for ok in SIDE_ALLOWED):
                bad.append(f"{imp.importer}:{imp.line} (sigstore_local) imports {imp.target}")
            continue
        if _within(imp.target, SIDE):
            if not _within(imp.importer, "model_signing.cli"):  # the CLI's `local` commands run it
                bad.append(f"{imp.importer}:{imp.line} imports the test oracle {imp.target}")
            continue
        if imp.target == "model_signing":
            continue  # the root's metadata (__version__, __file__): see test_the_root_package_imports_nothing
        src, dst = _layer(imp.importer), _layer(imp.target)
        assert src is not None and dst is not None, imp
        if dst > src:
            bad.append(f"{imp.importer}:{imp.line} (L{src}) imports {imp.target} (L{dst})")
    assert not bad, "imports going up the layers:\n" + "\n".join(bad)


def test_the_root_package_imports_nothing(graph: tuple[dict[str, Path], list[Import]]) -> None:
    # Every module's import runs the root package first (it is their parent); importing it for
    # __version__ or __file__ is only harmless, and not an upward dependency, while its re-exports stay lazy.
    _, imports = graph
    eager = [i for i in imports if i.importer == "model_signing" and not i.type_only]
    assert not eager, f"model_signing/__init__.py imports eagerly: {eager}"


def test_private_modules_and_names_stay_in_their_package(graph: tuple[dict[str, Path], list[Import]]) -> None:
    modules, imports = graph
    bad = []
    for imp in imports:
        if _excepted(imp):
            continue
        owner = _privacy_owner(imp.target)
        if owner is not None and not _within(imp.importer, owner):
            bad.append(f"{imp.importer}:{imp.line} imports private module {imp.target}")
        if imp.name is not None and imp.name.startswith("_") and not imp.name.startswith("__"):
            home = imp.target if _is_package(imp.target, modules) else imp.target.rpartition(".")[0]
            if not _within(imp.importer, home):
                bad.append(f"{imp.importer}:{imp.line} imports private name {imp.target}.{imp.name}")
    assert not bad, "private modules or names used outside their package:\n" + "\n".join(bad)


def test_no_import_cycle(graph: tuple[dict[str, Path], list[Import]]) -> None:
    _, imports = graph
    edges: dict[str, set[str]] = {}
    for imp in imports:
        if not imp.type_only and imp.importer != imp.target:
            edges.setdefault(imp.importer, set()).add(imp.target)
    # Tarjan-free: depth-first search with colours, reporting the first cycle found.
    colour: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if colour.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in colour and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        colour[node] = 2
        return None

    for start in sorted(edges):
        if start not in colour and (cycle := visit(start)):
            pytest.fail("import cycle: " + " -> ".join(cycle))


def test_every_listed_exception_still_occurs(graph: tuple[dict[str, Path], list[Import]]) -> None:
    _, imports = graph
    stale = set(EXCEPTIONS) - _used_exceptions(imports)
    assert not stale, f"exceptions that no longer occur (remove them): {sorted(stale)}"


def test_the_checker_catches_what_it_forbids() -> None:
    # The rules themselves, on hand-written edges: an upward import, a private module used elsewhere.
    assert _layer("model_signing.hashing.walk") == 3 and _layer("model_signing.methods.sigstore._ops") == 5
    assert _privacy_owner("model_signing.methods.sigstore._ops") == "model_signing.methods.sigstore"
    assert _privacy_owner("model_signing._internal.files") == "model_signing"
    assert _privacy_owner("model_signing.methods.key") is None
    up = Import("model_signing.hashing.walk", "model_signing.signing", None, 1, False)
    src, dst = _layer(up.importer), _layer(up.target)
    assert src is not None and dst is not None and dst > src and not _excepted(up)


def _declared_distributions() -> set[str]:
    import re
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    specs = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        specs.extend(extra)
    return {re.split(r"[\s<>=!~;\[]", spec, maxsplit=1)[0].lower().replace("_", "-") for spec in specs}


def test_every_third_party_import_is_a_declared_dependency() -> None:
    import importlib.metadata
    import sys

    owners = importlib.metadata.packages_distributions()
    imported: dict[str, str] = {}
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                tops = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                tops = [node.module.split(".")[0]]
            else:
                continue
            for top in tops:
                if top != "model_signing" and top not in sys.stdlib_module_names:
                    imported.setdefault(top, name)
    declared = _declared_distributions()
    # The test sees the modules it must (sigstore, cryptography, asn1crypto and jwt are imported directly).
    assert {"sigstore", "cryptography", "asn1crypto", "jwt"} <= set(imported)
    undeclared = sorted(
        f"{top} (imported by {imported[top]}; distribution {', '.join(owners.get(top, ['?']))})"
        for top in imported
        if not {d.lower().replace("_", "-") for d in owners.get(top, [top])} & declared
    )
    assert not undeclared, "imported but not declared in pyproject.toml: " + "; ".join(undeclared)
