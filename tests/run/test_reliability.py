"""What runner promises when things go wrong, proved with real processes:

- a `runner apply` killed with SIGKILL (mid-epoch, or mid-write inside a store transaction) is resumed
  by running it again: no row duplicated or lost, the run ends `finished`, and its numbers equal an
  uninterrupted run's;
- readers (`runner sql`, a DuckDB client) can read the store while training, a reader holding the file
  makes the writer wait rather than lose rows, and two applies of one run cannot both train it;
- a NaN loss fails only its member, with the epoch named, keeping what was stored;
- no code path unpickles a file.
"""

from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from runner.store import Store

REPO = Path(__file__).resolve().parents[2]

SPEC = """
name = "{name}"
seed = 21

[data]
source = "synthetic"
valid = 0.2
test = 0.2
max_length = 40

[data.options]
size = {size}

[train]
epochs = {epochs}
batch_size = 16
learning_rate = 2e-3
lr_scheduler = "constant"

[train.trainer_args]
full_determinism = true  # deterministic kernels, so a resumed run can be compared with an uninterrupted one

[loss]
name = "{loss}"

[selection]
metric = "eval_accuracy"

[swa]
k = 2

[[members]]
name = "a"
backbone = "scratch"
options = {{ hidden_size = 32, layers = 2, heads = 2, vocab_size = 1500 }}

[[members]]
name = "b"
backbone = "scratch"
options = {{ architecture = "roberta", hidden_size = 32, layers = 2, heads = 2, vocab_size = 1500 }}
"""

# An event-hook plugin that tells the test where training is, through marker files.
MARKER_PLUGIN = '''
import os
import time
from pathlib import Path
from runner import hookimpl

@hookimpl
def on_epoch_end(run_id, member, epoch, metrics):
    Path(os.environ["MARKER_DIR"], f"{member}-{epoch}").touch()
    # lets a test act while this apply is certainly still training, however fast the machine
    time.sleep(float(os.environ.get("EPOCH_PAUSE_S", "0")))
'''

# A loss that turns NaN in the second epoch (a learning rate gone wrong, condensed).
NAN_PLUGIN = '''
import torch.nn.functional as F
from runner import hookimpl

def build(ctx, options):
    calls = {"n": 0}
    def loss(logits, labels):
        calls["n"] += 1
        value = F.cross_entropy(logits.float(), labels)
        return value * float("nan") if calls["n"] > 20 else value
    return loss

@hookimpl
def register_losses(register):
    register("nan_after_20_steps", build)
'''

# Runs the real CLI, but pauses inside the second epoch's store transaction (after the deletes and
# the metrics insert, before the predictions insert) and announces it, so the test can kill it there.
PAUSING_CLI = '''
import os, sys, time
from pathlib import Path
import runner.store.rows as rows

real = rows.insert_predictions
seen = {"n": 0}

def slow_insert(con, batches):
    seen["n"] += 1
    if seen["n"] == int(os.environ["PAUSE_AT_INSERT"]):
        Path(os.environ["MARKER_DIR"], "in-write").touch()
        time.sleep(60)
    return real(con, batches)

rows.insert_predictions = slow_insert
from runner.cli import main
sys.argv = ["runner"] + sys.argv[1:]
main()
'''


KILL_SIZE = 1200  # an epoch of member b lasts well over the 0.2 s the mid-epoch kill waits


def write_case(d: Path, name="rel", size=KILL_SIZE, epochs=4, loss="cross_entropy", plugins=(MARKER_PLUGIN,)) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "plugins").mkdir(exist_ok=True)
    for i, code in enumerate(plugins):
        (d / "plugins" / f"p{i}.py").write_text(code)
    (d / "markers").mkdir(exist_ok=True)
    spec = d / "spec.toml"
    spec.write_text(SPEC.format(name=name, size=size, epochs=epochs, loss=loss))
    return spec


def env_for(d: Path, **extra) -> dict:
    env = dict(os.environ, MARKER_DIR=str(d / "markers"), PYTHONUNBUFFERED="1")
    env.update({k: str(v) for k, v in extra.items()})
    return env


def apply_cmd(spec: Path, store: Path, script: Path | None = None) -> list[str]:
    head = [sys.executable, str(script)] if script else [sys.executable, "-m", "runner.cli"]
    return head + ["apply", str(spec), "--store", str(store)]


def run(cmd, env, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def wait_for(path: Path, proc: subprocess.Popen, timeout=180) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"apply ended before {path.name}: {proc.stderr.read() if proc.stderr else ''}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"timed out waiting for {path}")
        time.sleep(0.05)


def epochs_table(store: Path) -> dict:
    rows = Store(store).query_dicts("SELECT * FROM epochs ORDER BY member, epoch")
    return {(r["member"], r["epoch"]): r for r in rows}


def assert_complete_and_unique(store: Path, members=("a", "b"), epochs=4) -> None:
    s = Store(store)
    run = s.query_dicts("SELECT status FROM runs")
    assert [r["status"] for r in run] == ["finished"]
    assert {(m["member"], m["status"]) for m in s.query_dicts("SELECT member, status FROM members")} == {
        (m, "finished") for m in members
    }
    n_valid = s.query("SELECT count(*) FROM examples WHERE split = 'valid'")[1][0][0]
    n_test = s.query("SELECT count(*) FROM examples WHERE split = 'test'")[1][0][0]
    for m in members:
        n = s.query("SELECT count(*) FROM predictions WHERE member = ? AND checkpoint LIKE 'epoch-%'", [m])[1][0][0]
        assert n == epochs * (n_valid + n_test), f"member {m}: {n} epoch prediction rows"
        n = s.query("SELECT count(*) FROM metrics WHERE member = ? AND checkpoint LIKE 'epoch-%'", [m])[1][0][0]
        assert n == epochs * (1 + 2 * 4)  # train loss; loss, accuracy, f1_macro, log_loss on valid and test
        n = s.query("SELECT count(*) FROM predictions WHERE member = ? AND checkpoint = 'swa'", [m])[1][0][0]
        assert n == n_valid + n_test
    dupes = s.query("SELECT count(*) FROM (SELECT member, checkpoint, split, idx FROM predictions "
                    "GROUP BY ALL HAVING count(*) > 1)")[1][0][0]
    assert dupes == 0


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run of the spec the kill tests interrupt."""
    d = tmp_path_factory.mktemp("reference")
    spec = write_case(d)
    result = run(apply_cmd(spec, d / "results.duckdb"), env_for(d))
    assert result.returncode == 0, result.stderr
    return epochs_table(d / "results.duckdb")


def assert_same_numbers(store: Path, reference: dict) -> None:
    got = epochs_table(store)
    assert set(got) == set(reference)
    for key, ref in reference.items():
        for col in ("train_loss", "eval_loss", "eval_accuracy", "test_accuracy", "test_f1_macro"):
            assert got[key][col] == pytest.approx(ref[col], abs=1e-4), (key, col)


def test_sigkill_mid_epoch_then_resume(tmp_path, reference):
    spec = write_case(tmp_path)
    store = tmp_path / "results.duckdb"
    proc = subprocess.Popen(apply_cmd(spec, store), env=env_for(tmp_path), stderr=subprocess.PIPE, text=True)
    wait_for(tmp_path / "markers" / "b-2", proc)  # member a finished, b has stored two epochs
    time.sleep(0.2)  # now inside b's third epoch
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    statuses = dict(Store(store).query("SELECT member, status FROM members")[1])
    assert statuses == {"a": "finished", "b": "running"}
    run_id = Store(store).run_ids()[0]
    assert Store(store).stored_epochs(run_id, "b") == [1, 2]  # killed inside epoch 3, before its write

    result = run(apply_cmd(spec, store), env_for(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "Continuing run" in result.stderr and "b: resuming after epoch" in result.stderr
    assert_complete_and_unique(store)
    assert_same_numbers(store, reference)
    assert not (store.parent / "runs" / Store(store).run_ids()[0] / "b" / "checkpoints").exists()


def test_sigkill_inside_a_store_write_then_resume(tmp_path, reference):
    spec = write_case(tmp_path)
    store = tmp_path / "results.duckdb"
    script = tmp_path / "pausing_cli.py"
    script.write_text(PAUSING_CLI)
    # member a: insert 1 is epoch 1 (valid and test in one batch), 2 epoch 2: pause before epoch 2's rows
    proc = subprocess.Popen(apply_cmd(spec, store, script), env=env_for(tmp_path, PAUSE_AT_INSERT=2),
                            stderr=subprocess.PIPE, text=True)
    wait_for(tmp_path / "markers" / "in-write", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # the interrupted transaction left nothing: epoch 1 is whole, epoch 2 absent
    assert Store(store).stored_epochs(Store(store).run_ids()[0], "a") == [1]

    result = run(apply_cmd(spec, store), env_for(tmp_path))
    assert result.returncode == 0, result.stderr
    assert_complete_and_unique(store)
    assert_same_numbers(store, reference)


def test_reapply_of_finished_run_does_nothing_and_force_keeps_the_old_run(tmp_path):
    spec = write_case(tmp_path, size=200, epochs=2)
    store = tmp_path / "results.duckdb"
    assert run(apply_cmd(spec, store), env_for(tmp_path)).returncode == 0
    again = run(apply_cmd(spec, store), env_for(tmp_path))
    assert again.returncode == 0 and "nothing to do" in again.stderr
    forced = run(apply_cmd(spec, store) + ["--force"], env_for(tmp_path))
    assert forced.returncode == 0, forced.stderr
    runs = Store(store).query_dicts("SELECT run_id, status FROM runs ORDER BY started_at")
    assert len(runs) == 2 and all(r["status"] == "finished" for r in runs)
    for r in runs:
        n = Store(store).query("SELECT count(*) FROM epochs WHERE run_id = ?", [r["run_id"]])[1][0][0]
        assert n == 2 * 2
        assert (store.parent / "runs" / r["run_id"] / "a" / "selected" / "model.safetensors").is_file()


def test_readers_while_training_and_a_reader_holding_the_file(tmp_path):
    spec = write_case(tmp_path, size=400, epochs=4)
    store = tmp_path / "results.duckdb"
    proc = subprocess.Popen(apply_cmd(spec, store), env=env_for(tmp_path, EPOCH_PAUSE_S=1.5),
                            stderr=subprocess.PIPE, text=True)
    wait_for(tmp_path / "markers" / "a-1", proc)
    # runner sql and a plain DuckDB client read while the run is training
    sql = run([sys.executable, "-m", "runner.cli", "sql", "SELECT status FROM runs", "--store", str(store),
               "--format", "csv"], env_for(tmp_path), timeout=120)
    assert sql.returncode == 0, sql.stderr
    assert "running" in sql.stdout
    for _ in range(100):
        try:
            con = duckdb.connect(str(store), read_only=True)
            break
        except duckdb.IOException:  # the writer holds the file for a moment while it commits
            time.sleep(0.05)
    else:
        raise AssertionError("a DuckDB client never got to read the store during training")
    # ... and keeps holding it across at least one epoch's write: the writer must wait, not drop rows
    epochs_seen = con.execute("SELECT count(*) FROM epochs").fetchall()[0][0]
    time.sleep(4)
    con.close()
    assert proc.wait(timeout=300) == 0, proc.stderr.read()
    assert epochs_seen >= 1
    assert_complete_and_unique(store)


def test_writer_gives_up_clearly_when_a_reader_never_lets_go_and_resume_recovers(tmp_path):
    spec = write_case(tmp_path, size=200, epochs=2)
    store = tmp_path / "results.duckdb"
    env = env_for(tmp_path, RUNNER_STORE_LOCK_TIMEOUT=2, EPOCH_PAUSE_S=1)
    proc = subprocess.Popen(apply_cmd(spec, store), env=env, stderr=subprocess.PIPE, text=True)
    wait_for(tmp_path / "markers" / "a-1", proc)
    con = None
    for _ in range(200):
        try:
            con = duckdb.connect(str(store), read_only=True)
            break
        except duckdb.IOException:
            time.sleep(0.02)
    assert con is not None
    code = proc.wait(timeout=300)
    err = proc.stderr.read()
    con.close()
    assert code == 1
    assert "held by" in err and "did not become free" in err
    assert "Traceback" not in err
    result = run(apply_cmd(spec, store), env_for(tmp_path))
    assert result.returncode == 0, result.stderr
    assert_complete_and_unique(store, epochs=2)


def test_second_apply_of_the_same_run_refuses_and_other_specs_share_the_store(tmp_path):
    spec = write_case(tmp_path, size=300, epochs=3)
    other = write_case(tmp_path / "other", name="other", size=200, epochs=2)
    store = tmp_path / "results.duckdb"
    first = subprocess.Popen(apply_cmd(spec, store), env=env_for(tmp_path, EPOCH_PAUSE_S=2),
                             stderr=subprocess.PIPE, text=True)
    wait_for(tmp_path / "markers" / "a-1", first)
    second = run(apply_cmd(spec, store), env_for(tmp_path))
    assert second.returncode == 1
    assert "in use by runner process" in second.stderr and "Traceback" not in second.stderr
    third = run(apply_cmd(other, store), env_for(tmp_path / "other"))  # another spec, same store: fine
    assert third.returncode == 0, third.stderr
    assert first.wait(timeout=300) == 0, first.stderr.read()
    runs = dict(Store(store).query("SELECT name, status FROM runs")[1])
    assert runs == {"rel": "finished", "other": "finished"}


def test_nan_loss_fails_its_member_only(tmp_path):
    spec = write_case(tmp_path, size=300, epochs=3, loss="cross_entropy", plugins=(MARKER_PLUGIN, NAN_PLUGIN))
    text = spec.read_text().replace(
        'name = "a"\n', 'name = "a"\nloss = { name = "nan_after_20_steps" }\n'
    )
    spec.write_text(text)
    store = tmp_path / "results.duckdb"
    result = run(apply_cmd(spec, store), env_for(tmp_path))
    assert result.returncode == 1
    assert "member a: the training loss became nan in epoch 2" in result.stderr
    assert "Traceback" not in result.stderr
    s = Store(store)
    members = dict(s.query("SELECT member, status FROM members")[1])
    assert members == {"a": "failed", "b": "finished"}
    assert s.stored_epochs(s.run_ids()[0], "a") == [1]  # what was stored before the NaN is kept
    assert s.query("SELECT status FROM runs")[1][0][0] == "failed"
    error = s.query("SELECT error FROM members WHERE member = 'a'")[1][0][0]
    assert "epoch 2" in error


UNSAFE_CALLS = {("pickle", "load"), ("pickle", "loads"), ("torch", "load"), ("dill", "load"), ("joblib", "load")}


@pytest.mark.parametrize("path", sorted([*(REPO / "src" / "runner").rglob("*.py"), *(REPO / "plugins").glob("*.py")]),
                         ids=lambda p: str(p.relative_to(REPO)))
def test_no_code_path_unpickles(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n and n.split(".")[0] in ("pickle", "dill", "joblib", "cloudpickle") for n in names), (
                f"{path}:{node.lineno} imports an unpickler"
            )
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            if isinstance(owner, ast.Name) and (owner.id, node.func.attr) in UNSAFE_CALLS:
                raise AssertionError(f"{path}:{node.lineno} calls {owner.id}.{node.func.attr}")
        if isinstance(node, ast.keyword) and node.arg in ("weights_only", "use_safetensors"):
            value = node.value
            if node.arg == "weights_only":
                assert not (isinstance(value, ast.Constant) and value.value is False), f"{path}:{node.lineno}"


def test_resume_keeps_the_early_stopping_count(tmp_path):
    """Killed after epoch 2 with one epoch of patience used; the resumed member must stop after epoch
    3 as an uninterrupted one does, not get a fresh patience of 2 and run to epoch 4."""
    def case(d: Path) -> Path:
        spec = write_case(d, size=200, epochs=5)
        text = spec.read_text().replace("learning_rate = 2e-3", "learning_rate = 1e-12")  # nothing improves
        text = text.replace('metric = "eval_accuracy"', 'metric = "eval_accuracy"\nearly_stopping_patience = 2')
        text = text[: text.index("[[members]]\nname = \"b\"")]  # one member is enough
        spec.write_text(text)
        return spec

    ref_spec = case(tmp_path / "ref")
    ref = run(apply_cmd(ref_spec, tmp_path / "ref" / "results.duckdb"), env_for(tmp_path / "ref"))
    assert ref.returncode == 0, ref.stderr
    ref_store = Store(tmp_path / "ref" / "results.duckdb")
    assert ref_store.stored_epochs(ref_store.run_ids()[0], "a") == [1, 2, 3]

    spec = case(tmp_path / "kill")
    store = tmp_path / "kill" / "results.duckdb"
    proc = subprocess.Popen(apply_cmd(spec, store), env=env_for(tmp_path / "kill", EPOCH_PAUSE_S=30),
                            stderr=subprocess.PIPE, text=True)
    wait_for(tmp_path / "kill" / "markers" / "a-2", proc)  # epoch 2 stored; the plugin now pauses
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    result = run(apply_cmd(spec, store), env_for(tmp_path / "kill"))
    assert result.returncode == 0, result.stderr
    s = Store(store)
    assert s.stored_epochs(s.run_ids()[0], "a") == [1, 2, 3]
