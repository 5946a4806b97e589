"""An interrupted `runner apply` (Ctrl-C's SIGINT, or SIGTERM from a scheduler or `kill`), with real
processes: the run is never left `running`. It becomes `failed` with the error `interrupted (SIG...)`,
the command exits 130 / 143 with one paragraph, and the command that paragraph names really resumes
the run: after `apply --force`, that command is the same apply without `--force` (which would start
yet another run).
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runner.store import Store

SPEC = """
name = "interrupted"
seed = 5

[data]
source = "synthetic"
valid = 0.2
test = 0.2
max_length = 32

[data.options]
size = 200

[train]
epochs = 2
batch_size = 16
learning_rate = 2e-3

[[members]]
name = "a"
backbone = "scratch"
options = { hidden_size = 16, layers = 1, heads = 2, vocab_size = 800 }
"""

# Tells the test where training is, and holds the first epoch's end long enough to be signalled there.
MARKER_PLUGIN = '''
import os
import time
from pathlib import Path
from runner import hookimpl

@hookimpl
def on_epoch_end(run_id, member, epoch, metrics):
    Path(os.environ["MARKER_DIR"], f"{member}-{epoch}").touch()
    if epoch == 1 and not os.environ.get("NO_PAUSE"):
        time.sleep(120)
'''


def setup(d: Path) -> tuple[Path, Path, dict]:
    (d / "plugins").mkdir(parents=True)
    (d / "plugins" / "markers.py").write_text(MARKER_PLUGIN)
    (d / "markers").mkdir()
    spec = d / "spec.toml"
    spec.write_text(SPEC)
    env = dict(os.environ, MARKER_DIR=str(d / "markers"), PYTHONUNBUFFERED="1")
    return spec, d / "results.duckdb", env


def runner_cmd(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "runner.cli", *args]


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupted_forced_apply_is_failed_and_its_message_resumes_it(tmp_path, sig, code):
    spec, store, env = setup(tmp_path)
    args = ["apply", str(spec), "--store", str(store), "--plugins", str(tmp_path / "plugins")]
    proc = subprocess.Popen(runner_cmd(args + ["--force"]), env=env, stderr=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    marker = tmp_path / "markers" / "a-1"
    deadline = time.monotonic() + 300
    while not marker.exists():
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "epoch 1 never ended"
        time.sleep(0.05)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert "Traceback" not in err

    s = Store(store)
    (run_id, status, error), = s.query("SELECT run_id, status, error FROM runs")[1]
    name = signal.Signals(sig).name
    assert (status, error) == ("failed", f"interrupted ({name})")
    assert s.query("SELECT member, status, error FROM members")[1] == [("a", "failed", f"interrupted ({name})")]
    assert s.stored_epochs(run_id, "a") == [1]
    assert f"run {run_id} is marked failed (interrupted)" in err
    resume = re.search(r"`([^`]+)` resumes it", err)
    assert resume is not None, err
    words = shlex.split(resume.group(1))
    assert words[0] == "runner" and "--force" not in words and words[1:] == args

    done = subprocess.run(runner_cmd(words[1:]), env=dict(env, NO_PAUSE="1"), capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    assert f"Continuing run {run_id}" in done.stderr
    assert s.query("SELECT run_id, status, error FROM runs")[1] == [(run_id, "finished", None)]
    assert s.stored_epochs(run_id, "a") == [1, 2]
