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
