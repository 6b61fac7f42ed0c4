"""The shape of the code, checked: one namespace, imports that point one way (no cycles, only the
command line imports the commands), short functions and modules, no page markup in Python, and
the modules' doctests."""

from __future__ import annotations

import ast
import doctest
import importlib
import itertools
import pkgutil
import re
from pathlib import Path

import pytest

import harness

ROOT = Path(__file__).resolve().parents[1]
#: The four source folders and the package each installs as.
SOURCES = {"harness": "harness", "tasks": "harness.tasks", "retrievers": "harness.retrievers",
           "benchmarks": "harness.benchmarks"}
PLUGIN_PACKAGES = ("harness.tasks", "harness.retrievers")
#: ``harness bench`` targets: they may use the tasks and retrievers, and the core only dispatches to them.
BENCHMARKS = "harness.benchmarks"
MAX_FUNCTION_LINES = 100
MAX_MODULE_LINES = 600
#: The only nodes of the import graph that may import the command line (``harness.cli``, ``harness.commands``).
COMMAND_LINE = ("harness.cli", "harness.commands")


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
        if module.startswith((*PLUGIN_PACKAGES, BENCHMARKS)):
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


def test_no_module_is_longer_than_600_lines() -> None:
    long = [f"{path.relative_to(ROOT)} ({n} lines)" for path in _python_files()
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES]
    assert not long, f"split these into modules with one job each (at most {MAX_MODULE_LINES} lines): {long}"


# -- the import graph ---------------------------------------------------------------------------------------------
def _node(name: str) -> str | None:
    """The graph node of a module name: ``harness.<x>`` (a top-level module or a sub-package, the plug-in
    packages included); None outside ``harness`` and for the package ``harness`` itself."""
    parts = name.split(".")
    return ".".join(parts[:2]) if parts[0] == "harness" and len(parts) > 1 else None


def _import_graph() -> dict[tuple[str, str], list[str]]:
    """Every static import (at any level, inside functions too) between two nodes: (importer, imported)
    -> where (``file:line name``)."""
    edges: dict[tuple[str, str], list[str]] = {}
    for path in _python_files():
        module = _module_name(path)
        source = _node(module)
        if source is None:  # harness/__init__.py: the public names, imported by nothing inside
            continue
        for line, name in _imports(ast.parse(path.read_text(encoding="utf-8")), module):
            target = _node(name)
            if target is not None and target != source:
                edges.setdefault((source, target), []).append(f"{path.relative_to(ROOT)}:{line} {name}")
    return edges


def _find_cycle(edges: set[tuple[str, str]] | dict[tuple[str, str], list[str]]) -> list[str] | None:
    """One cycle of the directed graph (its nodes, the first repeated at the end), or None."""
    graph: dict[str, list[str]] = {}
    for a, b in sorted(edges):
        graph.setdefault(a, []).append(b)
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in graph.get(node, []):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_the_import_graph_has_no_cycle() -> None:
    edges = _import_graph()
    cycle = _find_cycle(edges)
    assert cycle is None, "import cycle " + " -> ".join(cycle) + "; the imports: " + "; ".join(
        f"{a} -> {b} ({', '.join(sorted({w.split(' ')[0] for w in edges[(a, b)]}))})"
        for a, b in itertools.pairwise(cycle))


def test_only_the_command_line_imports_the_commands() -> None:
    offenders = [f"{a} -> {b}: {', '.join(where)}" for (a, b), where in sorted(_import_graph().items())
                 if b in COMMAND_LINE and a not in COMMAND_LINE]
    assert not offenders, "harness.cli and harness.commands are the command line; call the library instead: " + "; ".join(offenders)


def test_the_cycle_check_can_fail() -> None:
    assert _find_cycle({("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")}) == ["a", "b", "c", "a"]
    assert _find_cycle({("a", "b"), ("b", "c"), ("a", "c")}) is None
    assert _node("harness.attention.masking.resolve_mask") == "harness.attention" and _node("harness") is None
    tree = ast.parse("def f():\n    from harness.generation.hf import x\n")
    assert [_node(n) for _, n in _imports(tree, "harness.attention.retrieval_heads")] == ["harness.generation"] * 2


# -- no page markup, CSS or JavaScript in Python ------------------------------------------------------------------
#: What gives away a page, a style sheet or a script written as Python strings. The page's fixed parts are package
#: data (harness/site_static/); the elements generated per row (``<tr>``, ``<td>``) are not caught on purpose.
PAGE_PATTERNS = {
    "an HTML page": re.compile(r"<!doctype|<html[\s>]|<head>|<body[\s>]", re.IGNORECASE),
    "a <style> or <script> element": re.compile(r"<(style|script)[\s>]", re.IGNORECASE),
    # ``sel{prop:value;`` or ``sel{hyphenated-prop:value}`` (a Python name has no hyphen, a format spec no ``;``)
    "a CSS rule": re.compile(r"[\w\])*-]\s*\{\s*(-{0,2}[a-z][a-z-]*\s*:[^{};\n]*;|-{0,2}[a-z]+-[a-z-]+\s*:[^{}\n]*\})"),
    "JavaScript": re.compile(r"\bfunction\s*\(|addEventListener|querySelector|document\.getElementById"),
}


def _page_code(text: str) -> list[str]:
    return [f"line {number}: {what}" for number, line in enumerate(text.splitlines(), 1)
            for what, pattern in PAGE_PATTERNS.items() if pattern.search(line)]


def test_no_page_markup_css_or_javascript_in_python() -> None:
    found = [f"{path.relative_to(ROOT)} {hit}" for path in _python_files()
             for hit in _page_code(path.read_text(encoding="utf-8"))]
    assert not found, "move it to a static file shipped as package data (harness/site_static/): " + ", ".join(found)


def test_the_page_check_can_fail() -> None:
    # lines as the old harness/site.py had them, before its page moved to harness/site_static/
    old_site = (ROOT / "tests" / "fixtures" / "old_site_lines.py.txt").read_text(encoding="utf-8").splitlines()
    assert {hit.split(": ")[1] for hit in _page_code("\n".join(old_site))} == set(PAGE_PATTERNS)
    assert not _page_code('cell = f"<td class=\\"num\\">{v:.1f}; {w: >3};</td>" + "<tr>" + {"a": "b"}["a"]')


def test_the_page_static_files_are_package_data() -> None:
    from harness import site

    page = site.static("page.html")
    assert page.startswith("<!DOCTYPE html>") and "${css}" in page and "${js}" in page
    assert ":root{" in site.static("page.css") and "addEventListener" in site.static("page.js")


def test_the_import_name_check_can_fail() -> None:
    tree = ast.parse("from harness.tasks.beir import BeirTask\nimport retrievers.bm25\nfrom ..x import y")
    names = [name for _, name in _imports(tree, "harness.a.b")]
    assert "harness.tasks.beir" in names and "retrievers.bm25" in names and "harness.x.y" in names


def _all_modules() -> list[str]:
    names = ["harness"]
    for info in pkgutil.walk_packages(harness.__path__, "harness."):
        names.append(info.name)
    for package in (*PLUGIN_PACKAGES, BENCHMARKS):
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
