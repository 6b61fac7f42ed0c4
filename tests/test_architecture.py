"""The shape of the code, checked: one namespace, imports that point one way, short functions,
and the modules' doctests."""

from __future__ import annotations

import ast
import doctest
import importlib
import pkgutil
from pathlib import Path

import pytest

import harness

ROOT = Path(__file__).resolve().parents[1]
#: The three source folders and the package each installs as.
SOURCES = {"harness": "harness", "tasks": "harness.tasks", "retrievers": "harness.retrievers"}
PLUGIN_PACKAGES = ("harness.tasks", "harness.retrievers")
MAX_FUNCTION_LINES = 100


def _python_files() -> list[Path]:
    return sorted(p for folder in SOURCES for p in (ROOT / folder).rglob("*.py"))


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = [SOURCES[rel.parts[0]], *rel.parts[1:]]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(tree: ast.AST, module: str) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: resolve against the module's package
                base = module.rsplit(".", node.level)[0]
                name = f"{base}.{node.module}" if node.module else base
            else:
                name = node.module or ""
            found.append((node.lineno, name))
            found += [(node.lineno, f"{name}.{alias.name}") for alias in node.names]
    return found


def test_no_module_imports_the_old_top_level_names() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: {name}"
        for path in _python_files()
        for line, name in _imports(ast.parse(path.read_text(encoding="utf-8")), _module_name(path))
        if name.split(".")[0] in ("tasks", "retrievers")
    ]
    assert not offenders, offenders


def test_the_core_never_imports_a_concrete_task_or_retriever() -> None:
    offenders = []
    for path in _python_files():
        module = _module_name(path)
        if module.startswith(PLUGIN_PACKAGES):
            continue
        for line, name in _imports(ast.parse(path.read_text(encoding="utf-8")), module):
            if name.startswith(tuple(f"{p}." for p in PLUGIN_PACKAGES)) or name in PLUGIN_PACKAGES:
                offenders.append(f"{path.relative_to(ROOT)}:{line}: {name}")
    assert not offenders, "core -> plug-in imports (name them in the registry instead): " + ", ".join(offenders)


def test_no_function_is_longer_than_100_lines() -> None:
    long = []
    for path in _python_files():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1  # type: ignore[operator]
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, long


def test_the_import_name_check_can_fail() -> None:
    tree = ast.parse("from harness.tasks.beir import BeirTask\nimport retrievers.bm25\nfrom ..x import y")
    names = [name for _, name in _imports(tree, "harness.a.b")]
    assert "harness.tasks.beir" in names and "retrievers.bm25" in names and "harness.x.y" in names


def _all_modules() -> list[str]:
    names = ["harness"]
    for info in pkgutil.walk_packages(harness.__path__, "harness."):
        names.append(info.name)
    for package in PLUGIN_PACKAGES:
        pkg = importlib.import_module(package)
        names += [package] + [i.name for i in pkgutil.walk_packages(pkg.__path__, f"{package}.")]
    return sorted(set(names))


def test_every_source_file_is_an_installed_module() -> None:
    assert {_module_name(p) for p in _python_files()} <= set(_all_modules())


@pytest.mark.parametrize("name", _all_modules())
def test_doctests(name: str) -> None:
    if name.endswith("vllm_backend"):
        pytest.importorskip("vllm")
    module = importlib.import_module(name)
    failures, _ = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, report=True)
    assert failures == 0
