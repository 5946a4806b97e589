"""The docs show working code: docs/plugins.md quotes the files in plugins/ exactly, and every
hook in runner.hookspecs is documented there."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import runner.hookspecs as hookspecs

REPO = Path(__file__).resolve().parents[1]
DOC = (REPO / "docs" / "plugins.md").read_text()
BLOCKS = dict(re.findall(r'```python title="([^"]+)"\n(.*?)```', DOC, flags=re.S))


@pytest.mark.parametrize("path", sorted(p.relative_to(REPO).as_posix() for p in (REPO / "plugins").glob("*.py")))
def test_plugin_file_is_quoted_whole_in_the_docs(path):
    assert path in BLOCKS, f"docs/plugins.md does not show {path}"
    assert BLOCKS[path] == (REPO / path).read_text()


@pytest.mark.parametrize("hook", [n for n in dir(hookspecs) if n.startswith(("register_", "on_"))])
def test_every_hook_is_documented(hook):
    assert f"`{hook}(" in DOC


def test_readme_outputs_match_a_fresh_quickstart_run():
    """The README's quickstart, as a user runs it: `runner apply specs/quickstart.toml` in a fresh
    folder, then every command and query whose output the README shows (scripts/readme_outputs.py)."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "readme_outputs.py"), "--check"],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_contributor_map_names_real_modules_and_every_module_is_on_it():
    doc = (REPO / "docs" / "contributing.md").read_text()
    named = set(re.findall(r"`([a-z_/]+\.py)`", doc))
    src = REPO / "src" / "runner"
    for name in named:
        assert (src / name).exists() or (REPO / name).exists(), f"docs/contributing.md names {name}, which does not exist"
    modules = {p.relative_to(src).as_posix() for p in src.rglob("*.py") if p.name != "__init__.py"}
    missing = sorted(m for m in modules if m not in named and not m.startswith("builtins/"))
    assert not missing, f"modules missing from docs/contributing.md: {missing}"
    assert "`builtins/`" in doc
