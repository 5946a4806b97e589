"""`runner gc` beside a running `runner apply` with `[adapt]`: the apply is a real process stopped at each
step of making its adaptation (runner.core.pause: RUNNER_PAUSE_AT), gc runs, the apply goes on; gc must
keep what the apply will use, and the apply must finish with the adaptation in place and recorded."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runner.store import Store

SPEC = """
name = "race"
seed = 3

[data]
source = "synthetic"
valid = 0.25
max_length = 24

[data.options]
size = 80

[train]
epochs = 1
batch_size = 16

[adapt]
epochs = 1
batch_size = 16

[[members]]
name = "a"
backbone = "scratch"
options = { hidden_size = 16, layers = 1, heads = 2, intermediate_size = 16, vocab_size = 200 }
"""
STEPS = ["adapt-trained", "adapt-renamed", "adapt-recorded", "adapt-released"]


def _state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")
@pytest.mark.parametrize("step", STEPS)
def test_gc_keeps_what_a_paused_apply_will_use(tmp_path, step):
    spec = tmp_path / "race.toml"
    spec.write_text(SPEC)
    store = tmp_path / "results.duckdb"
    env = dict(os.environ, RUNNER_PAUSE_AT=step, PYTHONUNBUFFERED="1")
    apply = subprocess.Popen([sys.executable, "-m", "runner.cli", "apply", str(spec), "--store", str(store)],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while _state(apply.pid) != "T":
            assert apply.poll() is None, f"apply ended before {step}: {apply.stderr.read()}"
            assert time.monotonic() < deadline, f"apply never reached {step}"
            time.sleep(0.05)
        gc = subprocess.run([sys.executable, "-m", "runner.cli", "gc", "--store", str(store)], capture_output=True,
                            text=True, timeout=120, env=dict(os.environ))
        assert gc.returncode == 0, gc.stderr
        assert "removed" not in gc.stdout.replace("would remove", ""), gc.stdout
        adapted = sorted(p.name for p in (tmp_path / "adapted").iterdir() if p.is_dir())
        assert adapted, "gc removed the adaptation the apply is making"
    finally:
        os.kill(apply.pid, signal.SIGCONT)
    _, err = apply.communicate(timeout=300)
    assert apply.returncode == 0, err
    st = Store(store)
    assert st.run("race").status == "finished"
    key = st.query("SELECT adapt_key FROM members")[1][0][0]
    assert (tmp_path / "adapted" / key / "adapt.json").is_file()
    # and now nothing runs: the store references it, so gc still keeps it
    gc = subprocess.run([sys.executable, "-m", "runner.cli", "gc", "--store", str(store)], capture_output=True,
                        text=True, timeout=120)
    assert gc.returncode == 0 and (tmp_path / "adapted" / key).is_dir(), gc.stderr
