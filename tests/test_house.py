"""The house: runner's layers hold, no module imports itself back through others, modules stay small,
and every import of runner inside a function says why it is there (docs/contributing.md)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import grimp

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src" / "runner"
MAX_LINES = 420  # "about 400": a module over it is usually two
WHY = ("start-up time", "optional dependency")  # the only reasons to import runner inside a function


def _graph():
    return grimp.build_graph("runner", include_external_packages=False, exclude_type_checking_imports=True)


def circles(graph) -> list[list[str]]:
    """Strongly connected components of more than one module, every import counted (function-level too)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.find_modules_directly_imported_by(v)):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return found


def test_there_are_no_import_circles():
    found = circles(_graph())
    print(f"import circles among runner's modules: {len(found)}")
    assert found == [], f"{len(found)} import circle(s): {found}"


def test_the_circle_count_sees_a_circle_hidden_in_a_function():
    """The check itself can fail: a two-module circle made of one top-level and one function-level
    import is found."""
    graph = grimp.ImportGraph()
    for m in ("pkg", "pkg.a", "pkg.b", "pkg.c"):
        graph.add_module(m)
    graph.add_import(importer="pkg.a", imported="pkg.b")
    graph.add_import(importer="pkg.b", imported="pkg.a")  # as `def f(): from pkg import a` would be
    graph.add_import(importer="pkg.c", imported="pkg.a")
    assert circles(graph) == [["pkg.a", "pkg.b"]]


def test_the_layers_contract_holds():
    """pyproject.toml's [tool.importlinter] contract, as `lint-imports` in .ci/run checks it."""
    proc = subprocess.run([sys.executable, "-c", "import sys; from importlinter.cli import lint_imports; "
                                                 "sys.exit(lint_imports(no_cache=True, no_logo=True))"],
                          cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout and "2 kept" in proc.stdout


def _modules():
    return sorted(p for p in SRC.rglob("*.py"))


def test_modules_stay_small():
    sizes = {p.relative_to(REPO).as_posix(): len(p.read_text(encoding="utf-8").splitlines()) for p in _modules()}
    big = {name: n for name, n in sizes.items() if n > MAX_LINES}
    assert not big, f"modules over {MAX_LINES} lines (split each by what it holds): {big}"


def unexplained_imports(source: str) -> list[int]:
    """Lines of `import runner...` / `from runner... import` statements inside a function that neither
    they nor the comment line just above their block name one of WHY."""
    tree = ast.parse(source)
    lines = source.splitlines()
    bad = []
    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(fn):
            if isinstance(node, ast.ImportFrom):
                ours = (node.module or "").split(".")[0] == "runner" or node.level > 0
            elif isinstance(node, ast.Import):
                ours = any(a.name.split(".")[0] == "runner" for a in node.names)
            else:
                continue
            if not ours:
                continue
            i = node.lineno - 1
            while i > 0 and lines[i - 1].lstrip().startswith(("from runner", "import runner")):
                i -= 1  # the first import of a block of them
            said = [lines[node.lineno - 1]]
            while i > 0 and lines[i - 1].lstrip().startswith("#"):
                i -= 1  # the comment lines just above the block
                said.append(lines[i])
            said = " ".join(said)
            if not any(why in said for why in WHY):
                bad.append(node.lineno)
    return bad


def test_an_import_inside_a_function_says_why():
    bad = {p.relative_to(REPO).as_posix(): lines for p in _modules()
           if (lines := unexplained_imports(p.read_text(encoding="utf-8")))}
    assert not bad, (f"runner imported inside a function without a comment saying why ({' or '.join(WHY)}); "
                     f"import it at the top of the module instead: {bad}")


def test_the_in_function_check_can_fail():
    assert unexplained_imports("def f():\n    from runner.store import Store\n") == [2]
    assert unexplained_imports("def f():\n    # start-up time: x\n    from runner.store import Store\n"
                               "    from runner.api import apply\n") == []
    assert unexplained_imports("def f():\n    from . import x\n") == [2]


def test_the_top_of_the_package_stays_small():
    """Subpackages by concept: the top of src/runner holds the layers, not loose modules."""
    entries = sorted(p.name for p in SRC.iterdir() if p.name != "__pycache__")
    assert len(entries) <= 23, entries  # 17 subpackages (one a layer or part of one) and 6 modules
    loose = [e for e in entries if e.endswith(".py") and e not in
             ("__init__.py", "__main__.py", "_moved.py", "errors.py", "version.py", "api.py", "hf.py")]
    assert loose == [], f"modules at the top of src/runner that belong in a subpackage: {loose}"
