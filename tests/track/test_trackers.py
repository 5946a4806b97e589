"""[track]: one tiny run logged to a real MLflow tracking server (started here on 127.0.0.1 with a SQLite
backend) and to W&B in offline mode, read back through `MlflowClient` and from the files W&B wrote,
and checked number for number against the store; then what a re-run adds (nothing), the trackers that
cannot be used (exit 2 before anything is written), and a server that dies mid-run (a warning, the
training finishes). The numbers are compared exactly: both trackers keep a float64, as the store does.
"""

from __future__ import annotations

import math
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest
from wandb_offline import read_runs

import runner

mlflow = pytest.importorskip("mlflow")
pytest.importorskip("wandb")
# a tracking server's start (10-15 s) and two tiny trainings: about a minute on a 2-core CPU
pytestmark = pytest.mark.slow

SPEC = """
name = "tracked"
seed = 3

[data]
source = "synthetic"
valid = 0.25
test = 0.25
max_length = 24

[data.options]
size = {size}

[train]
epochs = 2
batch_size = 16
learning_rate = 1e-3

[swa]
k = {swa}

[track]
to = {to}

[track.mlflow]
tracking_uri = "{uri}"

[track.wandb]
mode = "offline"
{members}
"""
MEMBER = """
[[members]]
name = "{name}"
backbone = "scratch"
options = {{ hidden_size = 16, layers = 1, heads = 2, intermediate_size = 16, vocab_size = 120 }}
"""
# The tracker clients read these: the runs here must not see a developer's own settings
CLEAN = ("MLFLOW_", "WANDB_")


def spec_text(uri: str, members=("a", "b"), to='["mlflow", "wandb"]', swa: int = 2, size: int = 80) -> str:
    return SPEC.format(uri=uri, to=to, swa=swa, size=size,
                       members="".join(MEMBER.format(name=m) for m in members))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(**extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(CLEAN)}
    return {**env, **extra}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`mlflow server` on a free loopback port, its runs in SQLite; stopped (its process group) afterwards."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    log = (root / "server.log").open("w")
    # the server is not what is tested: no telemetry, no job runner (eight more processes), a HOME of its own
    env = clean_env(HOME=str(root), MLFLOW_DISABLE_TELEMETRY="true", MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--artifacts-destination", str(root / "artifacts"),
         "--workers", "1"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                os.killpg(proc.pid, signal.SIGKILL) if proc.poll() is None else None
                pytest.fail(f"mlflow server did not start: {(root / 'server.log').read_text()[-2000:]}")
            time.sleep(0.25)
    yield uri, proc
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    log.close()


@pytest.fixture(scope="module")
def tracked(server, tmp_path_factory):
    """`runner apply` of a two-member spec logged to both trackers, as a real process with an empty HOME."""
    uri, _ = server
    root = tmp_path_factory.mktemp("tracked")
    home = root / "home"
    home.mkdir()
    spec = root / "spec.toml"
    spec.write_text(spec_text(uri), encoding="utf-8")
    (root / "store").mkdir()
    store = root / "store" / "results.duckdb"
    done = subprocess.run([sys.executable, "-m", "runner", "apply", str(spec), "--store", str(store)],
                          env=clean_env(HOME=str(home)), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "warning: track" not in done.stderr + done.stdout
    view = runner.open(store)
    return {"uri": uri, "spec": spec, "store": store, "home": home, "view": view, "run_id": view.run_id(None)}


def mlflow_runs(uri: str, experiment: str = "tracked") -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id]) if exp is not None else []


def stored_epochs(view, run_id: str) -> dict[str, dict[int, dict[str, float]]]:
    """member -> epoch -> every number the `epochs` view has for it."""
    out: dict = {}
    for row in view.epochs(run_id).to_dict("records"):
        values = {k: float(v) for k, v in row.items() if k not in ("run_id", "member", "epoch")
                  and isinstance(v, (int, float)) and not math.isnan(v)}
        out.setdefault(row["member"], {})[int(row["epoch"])] = values
    return out


def stored_table(view, run_id: str) -> dict[str, float]:
    """`runner compare --format csv`'s numbers (every strategy) and the ensembles' weights, by tracker name."""
    out = {}
    for row in view.compare(run_id, all=True).to_dict("records"):
        if row["kind"] not in ("member", "ensemble"):
            continue
        for k, v in row.items():
            if k not in ("strategy", "kind", "member", "checkpoint") and not k.startswith("true_share_") \
                    and isinstance(v, (int, float)) and not math.isnan(v):
                out[f"{row['strategy']}/{row['member']}/{k}"] = float(v)
    for w in view.store.ensemble_weights(run_id):
        out[f"weights/{w['ensemble']}/{w['strategy']}/{w['member']}"] = float(w["weight"])
    return out


def test_every_number_logged_to_mlflow_is_the_stores(tracked, tmp_path):
    from mlflow.tracking import MlflowClient

    client, run_id, view = MlflowClient(tracked["uri"]), tracked["run_id"], tracked["view"]
    runs = mlflow_runs(tracked["uri"])
    parents = [r for r in runs if r.data.tags.get("runner.role") == "run"]
    children = {r.data.tags["runner.member"]: r for r in runs if r.data.tags.get("runner.role") == "member"}
    assert len(parents) == 1 and sorted(children) == ["a", "b"] and len(runs) == 3
    parent = parents[0]
    record = view.store.run(run_id)
    for r in runs:  # each leads back to the store
        assert r.info.status == "FINISHED"
        assert r.data.tags["runner.run_id"] == run_id and r.data.tags["runner.spec_hash"] == record.spec_hash
        assert r.data.tags["runner.dataset_id"] == record.dataset_id
        assert r.data.tags["runner.store"] == str(tracked["store"].resolve())
    assert all(c.data.tags["mlflow.parentRunId"] == parent.info.run_id for c in children.values())

    epochs = stored_epochs(view, run_id)
    for member, child in children.items():
        assert set(child.data.metrics) == {k for e in epochs[member].values() for k in e}
        for key in child.data.metrics:
            logged = {m.step: m.value for m in client.get_metric_history(child.info.run_id, key)}
            assert logged == {e: values[key] for e, values in epochs[member].items() if key in values}, key
        assert child.data.params["seed"] == str(record.member(member).seed)
        assert child.data.params["backbone"] == "scratch" and child.data.params["options.hidden_size"] == "16"

    table = stored_table(view, run_id)
    assert any(k.startswith("swa/") for k in table) and any("/ensemble/" in k for k in table)
    assert any(k.startswith("weights/") for k in table)
    assert parent.data.metrics == table
    assert parent.data.params["train.epochs"] == "2" and parent.data.params["swa.k"] == "2"
    assert parent.data.params["members.b.seed"] == str(record.member("b").seed)

    assert sorted(a.path for a in client.list_artifacts(parent.info.run_id)) == ["compare.csv", "report.html"]
    page = Path(client.download_artifacts(parent.info.run_id, "report.html", str(tmp_path)))
    assert '<meta name="generator" content="runner report">' in page.read_text(encoding="utf-8")
    csv_text = Path(client.download_artifacts(parent.info.run_id, "compare.csv", str(tmp_path))).read_text()
    assert len(csv_text.strip().splitlines()) == 1 + len(view.compare(run_id, all=True))


def test_every_number_written_for_wandb_is_the_stores(tracked):
    run_id, view = tracked["run_id"], tracked["view"]
    runs = read_runs(tracked["store"].parent / "tracking" / "wandb")
    assert {r.group for r in runs} == {run_id} and sorted(r.job_type for r in runs) == ["member", "member", "run"]
    epochs = stored_epochs(view, run_id)
    for r in runs:
        assert r.config["runner.run_id"] == run_id and r.config["runner.store"] == str(tracked["store"].resolve())
        if r.job_type == "member":
            logged = {step: {k: v for k, v in values.items() if not k.startswith("_")}
                      for step, values in r.history.items()}
            assert logged == epochs[r.name]
            assert r.config["seed"] == str(view.store.run(run_id).member(r.name).seed)
        else:
            assert {k: v for k, v in r.summary.items() if not k.startswith("_")} == stored_table(view, run_id)
            assert r.artifacts == [["compare.csv", "report.html"]]
            assert r.config["train.epochs"] == "2"


def test_nothing_is_written_under_home(tracked):
    assert list(tracked["home"].iterdir()) == []


def test_a_rerun_adds_no_tracker_runs(tracked):
    before = {r.info.run_id: {k: len(mlflow.tracking.MlflowClient(tracked["uri"]).get_metric_history(r.info.run_id, k))
                              for k in r.data.metrics} for r in mlflow_runs(tracked["uri"])}
    wandb_dir = tracked["store"].parent / "tracking" / "wandb" / "wandb"
    folders = sorted(p.name for p in wandb_dir.glob("offline-run-*"))
    said = []
    again = runner.apply(tracked["spec"], store=tracked["store"], say=said.append)
    assert again.status == "up-to-date" and not [s for s in said if "warning" in s]
    after = {r.info.run_id: {k: len(mlflow.tracking.MlflowClient(tracked["uri"]).get_metric_history(r.info.run_id, k))
                             for k in r.data.metrics} for r in mlflow_runs(tracked["uri"])}
    assert after == before  # the same runs, each metric logged as often as before
    assert sorted(p.name for p in wandb_dir.glob("offline-run-*")) == folders

    # a tracker named after the run finished (here: another experiment) gets it from the store, once
    later = {"track.to": ["mlflow"], "track.mlflow.experiment": "later"}
    for _ in range(2):
        assert runner.apply(tracked["spec"], store=tracked["store"], set=later, say=said.append).status == "up-to-date"
    runs = mlflow_runs(tracked["uri"], "later")
    client = mlflow.tracking.MlflowClient(tracked["uri"])
    parent = next(r for r in runs if r.data.tags["runner.role"] == "run")
    assert len(runs) == 3 and parent.data.metrics == stored_table(tracked["view"], tracked["run_id"])
    epochs = stored_epochs(tracked["view"], tracked["run_id"])
    for child in (r for r in runs if r.data.tags["runner.role"] == "member"):
        member = child.data.tags["runner.member"]
        for key in child.data.metrics:
            logged = sorted((m.step, m.value) for m in client.get_metric_history(child.info.run_id, key))
            assert logged == [(e, v[key]) for e, v in sorted(epochs[member].items()) if key in v]


def test_an_mlflow_server_that_does_not_answer_is_named_before_anything_is_written(run_cli, tmp_path):
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    spec = tmp_path / "spec.toml"
    spec.write_text(spec_text(uri, members=("a",), to='["mlflow"]', swa=0), encoding="utf-8")
    store = tmp_path / "results.duckdb"
    for command in (["validate", spec, "--store", store, "--no-check-models"], ["apply", spec, "--store", store]):
        code, _, err = run_cli(*command)
        assert code == 2, err
        assert f"{spec}: track.mlflow.tracking_uri: the MLflow server {uri} does not answer" in " ".join(err.split())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.toml"]


def test_a_missing_tracker_client_is_named_with_its_extra(run_cli, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # what `import wandb` meets where it is not installed
    spec = tmp_path / "spec.toml"
    spec.write_text(spec_text("http://127.0.0.1:1", members=("a",), to='["wandb"]', swa=0), encoding="utf-8")
    code, _, err = run_cli("validate", spec, "--store", tmp_path / "results.duckdb", "--no-check-models")
    assert code == 2
    assert f"{spec}: track.to: 'wandb' logs through its own client, which is not installed here: pip install " \
           '"runner[wandb]"' in " ".join(err.split())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.toml"]


def test_w_and_b_online_without_a_key_is_named_before_anything_is_written(run_cli, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("NETRC", raising=False)
    spec = tmp_path / "spec.toml"
    spec.write_text(spec_text("http://127.0.0.1:1", members=("a",), to='["wandb"]', swa=0).replace(
        'mode = "offline"', 'mode = "online"'), encoding="utf-8")
    code, _, err = run_cli("validate", spec, "--store", tmp_path / "results.duckdb", "--no-check-models")
    assert code == 2
    assert f"{spec}: track.wandb.mode: W&B online needs an API key, and none is set" in " ".join(err.split())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.toml"]


KILLER = '''
import os
import signal

from runner import hookimpl


@hookimpl
def on_epoch_end(run_id, member, epoch, metrics):
    if epoch == 1:  # the tracking server goes away between the epochs
        os.killpg(int(os.environ["TRACK_TEST_SERVER_PGID"]), signal.SIGKILL)
'''


def test_a_server_that_dies_mid_run_is_one_warning_and_the_run_finishes(server, tmp_path, monkeypatch):
    """Last in this file: it stops the module's server."""
    uri, proc = server
    spec = tmp_path / "spec.toml"
    spec.write_text(spec_text(uri, members=("solo",), to='["mlflow"]', swa=0, size=40).replace(
        'name = "tracked"', 'name = "dies"'), encoding="utf-8")
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "killer.py").write_text(textwrap.dedent(KILLER), encoding="utf-8")
    monkeypatch.setenv("TRACK_TEST_SERVER_PGID", str(proc.pid))
    said = []
    run = runner.apply(spec, store=tmp_path / "results.duckdb", say=said.append)
    assert proc.wait(10) is not None
    assert run.status == "finished"
    warnings = [s for s in said if s.startswith("warning: track.mlflow:")]
    assert len(warnings) == 1 and "epoch 2 of solo" in warnings[0] and "\n" not in warnings[0], said
    assert run.epochs()["epoch"].tolist() == [1, 2]  # the store is complete
