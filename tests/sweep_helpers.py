"""A small sweep spec and the CLI, shared by tests/search/test_sweep.py and tests/run/test_repeats.py."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from runner.cli import app
from runner.store import Store

SPEC = """
name = "{name}"
seed = 3

[data]
source = "synthetic"
valid = 0.25
test = 0.25
max_length = 32

[data.options]
size = {size}

[train]
epochs = {epochs}
batch_size = 16
learning_rate = 1e-2
lr_scheduler = "constant"

[loss]
name = "focal"
gamma = 2.0

[ensemble]
weights = "fit"

[sweep]
{sweep}

[sweep.space]
{space}
{members}
"""

MEMBER = """
[[members]]
name = "{name}"
backbone = "scratch"
options = {{ architecture = "{arch}", hidden_size = 32, layers = 1, heads = 2, vocab_size = 600 }}
"""

# tells the test where training is (trial runs share member names, so the run id is in the name)
MARKER_PLUGIN = '''
import os
import time
from pathlib import Path
from runner import hookimpl

@hookimpl
def on_epoch_end(run_id, member, epoch, metrics):
    Path(os.environ["MARKER_DIR"], f"{run_id}-{member}-{epoch}").touch()
    time.sleep(float(os.environ.get("EPOCH_PAUSE_S", "0")))
'''


def write_spec(folder: Path, name="sw", size=300, epochs=2, members=("a",), sweep="trials = 4\nsampler = \"random\"",
               space='"loss.gamma" = { low = 0.5, high = 4.0 }\n"train.learning_rate" = '
                     '{ low = 3e-3, high = 3e-2, log = true }') -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    text = SPEC.format(name=name, size=size, epochs=epochs, sweep=sweep, space=space,
                       members="".join(MEMBER.format(name=m, arch="bert" if i % 2 == 0 else "roberta")
                                       for i, m in enumerate(members)))
    path = folder / "spec.toml"
    path.write_text(text)
    return path


def cli(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def rows(store: Path, sql: str, params=()):
    return Store(store).query(sql, list(params))[1]


