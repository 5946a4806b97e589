"""Nothing under $HOME: every command, run as a real process whose HOME is an empty folder nobody may
write in (mode 555, or `chattr +i` for root), does its work without a warning about it and leaves the
folder empty (runner.core.dirs sends matplotlib's and Triton's caches to runner's own temporary folder)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from store_kinds import make_read_only, undo_read_only

SPEC = """
name = "{name}"
seed = 1

[data]
source = "synthetic"
valid = 0.25
test = 0.25
max_length = 24

[data.options]
size = 80

[train]
epochs = 1
batch_size = 16
{sweep}
[[members]]
name = "a"
backbone = "scratch"
options = {{ hidden_size = 16, layers = 1, heads = 2, intermediate_size = 16, vocab_size = 120 }}

[[members]]
name = "b"
backbone = "scratch"
seed = 2
options = {{ hidden_size = 16, layers = 1, heads = 2, intermediate_size = 16, vocab_size = 120 }}
"""
SWEEP = """
[sweep]
trials = 1
sampler = "random"
pruner = "none"

[sweep.space]
"train.learning_rate" = { low = 1e-3, high = 1e-2 }
"""
COMMANDS = [
    ["runs"], ["compare"], ["ensemble", "--weights", "1,2"], ["sql", "SELECT count(*) FROM runs"],
    ["plot", "--out", "p.png"], ["plot", "sw", "--sweep", "--out", "s.png"], ["report", "--out", "r.html"],
    ["report", "sw", "--sweep", "--out", "s.html"], ["schema", "--out", "s.json"], ["plugins"],
    ["validate", "mine.toml"], ["export", "mine", "ex"], ["predict", "mine", "in.csv", "-o", "p.csv"],
    ["predict", "ex", "in.csv"], ["calibrate", "mine"], ["refit", "mine"], ["sweep"], ["gc", "--dry-run"], ["gc"],
]


def _run(folder: Path, home: Path, args: list[str]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if k not in ("MPLCONFIGDIR", "TRITON_CACHE_DIR", "XDG_CACHE_HOME", "XDG_CONFIG_HOME")}
    env.update(HOME=str(home), HF_HUB_OFFLINE="1", PYTHONWARNINGS="default")
    store = [] if args[0] in ("schema", "plugins") or args[:2] == ["predict", "ex"] else [
        "--store", str(folder / "results.duckdb")]
    return subprocess.run([sys.executable, "-m", "runner.cli", *args, *store], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A store with a run and a sweep, made by `runner apply` with the read-only HOME."""
    folder = tmp_path_factory.mktemp("home-world")
    home = folder / "home"
    home.mkdir()
    make_read_only(home)
    (folder / "mine.toml").write_text(SPEC.format(name="mine", sweep=""))
    (folder / "sw.toml").write_text(SPEC.format(name="sw", sweep=SWEEP))
    (folder / "in.csv").write_text("text\na superb film\nan awful one\n")
    for spec in ("mine.toml", "sw.toml"):
        r = _run(folder, home, ["apply", spec])
        assert r.returncode == 0, r.stderr
        assert not list(home.iterdir())
    yield folder, home
    undo_read_only()


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_a_command_with_a_read_only_home_works_and_writes_nothing_there(world, args):
    folder, home = world
    r = _run(folder, home, args)
    assert r.returncode == 0, r.stderr
    for word in ("Matplotlib created a temporary", "mkdir -p failed", "Permission denied", "Operation not permitted",
                 str(home)):
        assert word not in r.stderr + r.stdout, r.stderr
    assert not list(home.iterdir())
