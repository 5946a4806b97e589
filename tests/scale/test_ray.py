"""`--backend ray` on a local Ray that the tests start (`ray.init(num_cpus=2)`).

- two members trained at once as Ray tasks store exactly the rows and numbers a sequential run
  stores (same thread count on both sides, so the float kernels agree to the bit);
- a worker process killed (SIGKILL) mid-epoch is retried by Ray and resumes from its last stored
  epoch: the run finishes with every row once and the numbers of an uninterrupted run;
- the driver is the only process that opens the store (no worker ever holds the DuckDB file).
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
from wandb_offline import read_runs

from runner.store import Store

ray = pytest.importorskip("ray", reason="the ray extra (pip install -e '.[ray]') is part of the dev set-up")
pytestmark = pytest.mark.ray

SPEC = """
name = "par"
seed = 5

[data]
source = "synthetic"
valid = 0.2
test = 0.2
max_length = 32

[data.options]
size = {size}

[train]
epochs = 3
batch_size = 16
learning_rate = 2e-3
lr_scheduler = "constant"

[train.trainer_args]
full_determinism = true

[loss]
name = "cross_entropy"

[swa]
k = 2

[ensemble]
weights = "fit"

[compute]
cpus_per_member = 1

[[members]]
name = "a"
backbone = "scratch"
{loss_a}options = {{ hidden_size = 32, layers = 2, heads = 2, vocab_size = 1200 }}

[[members]]
name = "b"
backbone = "scratch"
seed = 7
options = {{ hidden_size = 32, layers = 1, heads = 2, vocab_size = 1200 }}
"""

# A cross-entropy whose process kills itself (SIGKILL) once, inside member a's second epoch: a worker
# that dies mid-epoch, at a known step. Training steps only (the loss has a graph); the marker file
# makes the retried task train normally. The dry run in the driver takes one step, far below the count.
KILL_PLUGIN = '''
import os, signal
from pathlib import Path
import torch.nn.functional as F
from runner import hookimpl

def build(ctx, options):
    steps = {"n": 0}
    def loss(logits, labels):
        value = F.cross_entropy(logits.float(), labels)
        if value.requires_grad:
            steps["n"] += 1
            marker = Path(MARKER)
            if steps["n"] == KILL_AT_STEP and not marker.exists():
                marker.write_text(str(os.getpid()))
                os.kill(os.getpid(), signal.SIGKILL)
        return value
    return loss

@hookimpl
def register_losses(register):
    register("ce_killed_once", build)
'''

SIZE = 400  # 240 train examples: 15 steps an epoch at batch 16


@pytest.fixture(scope="module")
def local_ray():
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture
def one_thread():
    """The sequential reference trains with the thread count each Ray task gets (cpus_per_member = 1)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def write(d: Path, loss_a: str = "", plugin: str | None = None) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "plugins").mkdir(exist_ok=True)
    if plugin:  # Ray's workers started with the fixture, so what the plugin needs is in its text, not the env
        head = f"MARKER = {str(d / 'killed')!r}\nKILL_AT_STEP = {15 + 5}  # the 5th step of epoch 2\n"
        (d / "plugins" / "kill.py").write_text(head + plugin)
    spec = d / "spec.toml"
    spec.write_text(textwrap.dedent(SPEC.format(size=SIZE, loss_a=loss_a)))
    return spec


def rows(store: Path) -> dict[str, list]:
    """Everything a run stores about its members, in a fixed order (run ids are equal: same spec)."""
    s = Store(store)
    q = {
        "members": "SELECT member, status, selected_checkpoint, swa_epochs, seed FROM members ORDER BY member",
        "metrics": "SELECT kind, member, checkpoint, epoch, split, name, value FROM metrics "
                   "ORDER BY ALL",
        "predictions": "SELECT member, checkpoint, epoch, split, idx, pred, probs FROM predictions ORDER BY "
                       "member, checkpoint, split, idx",
        "selections": "SELECT member, strategy, checkpoint FROM selections ORDER BY ALL",
    }
    return {k: s.query(sql)[1] for k, sql in q.items()}


def test_two_members_at_once_store_exactly_what_a_sequential_run_stores(tmp_path, run_cli, local_ray, one_thread):
    seq = write(tmp_path / "seq")
    code, _, err = run_cli("apply", str(seq), "--store", str(tmp_path / "seq" / "results.duckdb"))
    assert code == 0, err
    par = write(tmp_path / "par")
    # [track] (not part of the spec hash): the driver logs each epoch a task stored (runner.track)
    par.write_text(par.read_text() + '\n[track]\nto = ["wandb"]\n\n[track.wandb]\nmode = "offline"\n')
    code, _, err = run_cli("apply", str(par), "--store", str(tmp_path / "par" / "results.duckdb"), "--backend", "ray")
    assert code == 0, err

    a, b = rows(tmp_path / "seq" / "results.duckdb"), rows(tmp_path / "par" / "results.duckdb")
    for table in a:
        assert len(a[table]) == len(b[table]) > 0, table
        assert a[table] == b[table], table
    # the two members trained at the same time, not one after the other
    spans = dict((m, (s0, s1)) for m, s0, s1 in Store(tmp_path / "par" / "results.duckdb").query(
        "SELECT member, started_at, finished_at FROM members")[1])
    assert spans["a"][0] < spans["b"][1] and spans["b"][0] < spans["a"][1], spans
    # checkpoints went where a sequential run puts them
    run_id = Store(tmp_path / "par" / "results.duckdb").run_ids()[0]
    assert run_id == Store(tmp_path / "seq" / "results.duckdb").run_ids()[0]
    # each member's W&B history is its stored epochs, number for number
    stored = {m: {e.epoch: dict(e.metrics) for e in Store(tmp_path / "par" / "results.duckdb").member_epochs(run_id, m)}
              for m in ("a", "b")}
    logged = {r.name: {step: {k: v for k, v in values.items() if not k.startswith("_")}
                       for step, values in r.history.items()}
              for r in read_runs(tmp_path / "par" / "tracking" / "wandb") if r.job_type == "member"}
    assert logged == stored
    for m in ("a", "b"):
        assert (tmp_path / "par" / "runs" / run_id / m / "selected" / "model.safetensors").is_file()
        assert (tmp_path / "par" / "runs" / run_id / m / "swa" / "model.safetensors").is_file()


def test_a_worker_killed_mid_epoch_is_retried_and_resumes_with_no_duplicates(tmp_path, run_cli, local_ray):
    loss_a = 'loss = { name = "ce_killed_once" }\n'
    # the uninterrupted reference: the marker exists, so nothing is killed
    ref = write(tmp_path / "ref", loss_a, KILL_PLUGIN)
    (tmp_path / "ref" / "killed").write_text("not this time")
    code, _, err = run_cli("apply", str(ref), "--store", str(tmp_path / "ref" / "results.duckdb"), "--backend", "ray")
    assert code == 0, err

    spec = write(tmp_path / "kill", loss_a, KILL_PLUGIN)
    marker = tmp_path / "kill" / "killed"
    store = tmp_path / "kill" / "results.duckdb"
    code, _, err = run_cli("apply", str(spec), "--store", str(store), "--backend", "ray")
    assert code == 0, err
    assert marker.exists(), "the worker was never killed"
    assert "a: resuming after epoch 1." in err

    s = Store(store)
    assert s.query("SELECT status FROM runs")[1] == [("finished",)]
    assert s.query("SELECT member, status FROM members ORDER BY member")[1] == [("a", "finished"), ("b", "finished")]
    run_id = s.run_ids()[0]
    assert s.stored_epochs(run_id, "a") == [1, 2, 3]
    dupes = s.query("SELECT count(*) FROM (SELECT member, checkpoint, split, idx FROM predictions "
                    "GROUP BY ALL HAVING count(*) > 1)")[1][0][0]
    assert dupes == 0
    dupes = s.query("SELECT count(*) FROM (SELECT kind, member, checkpoint, split, name FROM metrics "
                    "GROUP BY ALL HAVING count(*) > 1)")[1][0][0]
    assert dupes == 0
    n = {split: s.query("SELECT count(*) FROM examples WHERE split = ?", [split])[1][0][0] for split in ("valid", "test")}
    for m in ("a", "b"):
        got = s.query("SELECT count(*) FROM predictions WHERE member = ? AND checkpoint LIKE 'epoch-%'", [m])[1][0][0]
        assert got == 3 * (n["valid"] + n["test"]), m
    # the resumed member's numbers are those of the run nobody killed
    want = {(r["member"], r["epoch"]): r for r in Store(tmp_path / "ref" / "results.duckdb").query_dicts(
        "SELECT * FROM epochs")}
    got = {(r["member"], r["epoch"]): r for r in s.query_dicts("SELECT * FROM epochs")}
    assert set(got) == set(want)
    for key, row in want.items():
        for col in ("train_loss", "eval_loss", "eval_accuracy", "test_accuracy"):
            assert got[key][col] == pytest.approx(row[col], abs=1e-4), (key, col)
    assert not (tmp_path / "kill" / "runs" / run_id / "a" / "checkpoints").exists()


def test_without_ray_installed_the_ray_backend_is_exit_2_before_anything_is_written(tmp_path, run_cli,
                                                                                     monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    spec = write(tmp_path)
    store = tmp_path / "results.duckdb"
    code, _, err = run_cli("apply", str(spec), "--store", str(store), "--backend", "ray")
    assert code == 2
    assert "--backend" in err and 'pip install -e ".[ray]"' in err
    assert not store.exists() and not (tmp_path / "runs").exists()


def test_a_member_no_node_can_hold_is_exit_2_naming_the_key(tmp_path, run_cli, local_ray):
    spec = write(tmp_path)
    spec.write_text(spec.read_text().replace("cpus_per_member = 1", 'backend = "ray"\ncpus_per_member = 64'))
    store = tmp_path / "results.duckdb"
    code, _, err = run_cli("apply", str(spec), "--store", str(store))
    assert code == 2
    assert "cpus_per_member" in err and "64" in err
    assert not store.exists() and not (tmp_path / "runs").exists()


def test_a_member_over_two_processes_trains_with_torchrun_inside_its_task(tmp_path, run_cli, local_ray):
    """`processes_per_member = 2` (what `gpus_per_member = 2` does on a GPU node): the task runs torchrun,
    rank 0 writes through the run's mailbox; the rows are those of the same torchrun run started by hand."""
    import os
    import subprocess

    def spec_in(d: Path, compute: str) -> Path:
        d.mkdir()
        text = textwrap.dedent(SPEC.format(size=300, loss_a=""))
        text = text.replace("[compute]\ncpus_per_member = 1", "[compute]\n" + compute)
        text = text[:text.index("[[members]]\nname = \"b\"")]  # member a only
        (d / "spec.toml").write_text(text.replace("epochs = 3", "epochs = 2"))
        return d / "spec.toml"

    ray_spec = spec_in(tmp_path / "ray", 'backend = "ray"\ncpus_per_member = 2\nprocesses_per_member = 2')
    code, _, err = run_cli("apply", str(ray_spec), "--store", str(tmp_path / "ray" / "results.duckdb"))
    assert code == 0, err
    by_hand = spec_in(tmp_path / "torchrun", "")
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "runner", "apply", str(by_hand), "--store", str(tmp_path / "torchrun" / "results.duckdb")],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    a, b = rows(tmp_path / "ray" / "results.duckdb"), rows(tmp_path / "torchrun" / "results.duckdb")
    for table in ("members", "predictions", "selections"):
        assert a[table] == b[table], table
    assert a["metrics"] == b["metrics"]
    n = Store(tmp_path / "ray" / "results.duckdb").query(
        "SELECT count(*), count(DISTINCT (checkpoint, split, idx)) FROM predictions")[1][0]
    assert n[0] == n[1] > 0


SWEEP = """
[sweep]
trials = 4
sampler = "random"
pruner = "none"

[sweep.space]
"train.learning_rate" = { low = 1e-3, high = 5e-3, log = true }
"""


def test_sweep_trials_train_at_once_and_the_driver_stores_each_once(tmp_path, run_cli, local_ray):
    """--workers 2 under Ray: two threads of the driver ask the study for trials, each trial's member a
    Ray task; four trials, each an ordinary run with every row once."""
    d = tmp_path / "sweep"
    spec = write(d)
    text = spec.read_text()
    spec.write_text(text[:text.index('[[members]]\nname = "b"')].replace("epochs = 3", "epochs = 2") + SWEEP)
    store = d / "results.duckdb"
    code, out, err = run_cli("apply", str(spec), "--store", str(store), "--backend", "ray", "--workers", "2")
    assert code == 0, err
    s = Store(store)
    trials = s.query("SELECT number, status, run_id FROM trials ORDER BY number")[1]
    assert [(n, st) for n, st, _ in trials] == [(i, "finished") for i in range(4)]
    spans = s.query("SELECT run_id, started_at, finished_at FROM members ORDER BY started_at")[1]
    assert len(spans) == 4 and {r for r, *_ in spans} == {r for *_, r in trials}
    assert any(a[1] < b[2] and b[1] < a[2] for a in spans for b in spans if a is not b), "no two trials overlapped"
    dupes = s.query("SELECT count(*) FROM (SELECT run_id, member, checkpoint, split, idx FROM predictions "
                    "GROUP BY ALL HAVING count(*) > 1)")[1][0][0]
    assert dupes == 0
    n = s.query("SELECT count(*) FROM examples WHERE split IN ('valid', 'test')")[1][0][0]
    per_run = dict(s.query("SELECT run_id, count(*) FROM predictions WHERE checkpoint LIKE 'epoch-%' GROUP BY ALL")[1])
    assert per_run == {r: 2 * n for *_, r in trials}


def test_a_pruned_trial_stops_its_ray_task_at_the_epoch_the_driver_decides(tmp_path, local_ray):
    """The pruner runs in the driver: each epoch of a watched member goes there before training goes on,
    and its verdict (TrialPruned) stops the task with the epochs stored so far."""
    from runner.errors import TrialPruned
    from runner.run.apply import apply_plan
    from runner.run.plan import plan
    from runner.scale.ray_backend import RayBackend

    spec = write(tmp_path)
    p = plan(spec)
    seen = []

    def on_epoch(member, record):
        seen.append((member, record.epoch))
        if member == "a" and record.epoch == 2:
            raise TrialPruned("pruned after epoch 2 of a")

    backend = RayBackend(p.resolved.spec.compute, "test").connect()
    store = Store(tmp_path / "results.duckdb")
    result = apply_plan(p, store, say=lambda text: None, on_epoch=on_epoch, backend=backend)
    assert result.status == "pruned"
    assert ("a", 1) in seen and ("a", 2) in seen and ("a", 3) not in seen
    statuses = dict(store.query("SELECT member, status FROM members")[1])
    assert statuses["a"] == "pruned" and statuses["b"] in ("finished", "pruned")  # b: done before, or stopped
    assert store.stored_epochs(result.run_id, "a") == [1, 2]
    assert store.query("SELECT status FROM runs")[1] == [("pruned",)]
