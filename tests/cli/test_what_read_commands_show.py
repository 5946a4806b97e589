"""What the read commands show of a trained run: `runs` (the selection metric for the ensemble and the
best member), `runs --long` and the report (where it was trained), and the plugins folder they load
without --plugins; and `runner.load`, quiet. On the small real run tests/predict_helpers.py trains."""

from __future__ import annotations

import json
import shutil

import duckdb
import pytest
from predict_helpers import cli, trained

from runner.store import Store

METRIC_PLUGIN = '''
import numpy as np
import runner


@runner.hookimpl
def register_metrics(register):
    register("top_share", lambda probs, labels: float(np.mean(probs.max(axis=1))), greater_is_better=True)
'''


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return trained(tmp_path_factory)


def test_runs_shows_the_selection_metric_of_the_ensemble_and_the_best_member(run):
    st = Store(run.store)
    record = st.run(run.run_id)
    values = st.checkpoint_metrics(run.run_id)
    members = {m.name: values[("member", m.name, m.selected_checkpoint)]["eval_accuracy"] for m in record.members}
    best = max(members, key=members.get)
    ensemble = values[("ensemble", "ensemble", record.selected_strategy)]["eval_accuracy"]

    code, stdout, err = cli("runs", "--store", run.store, "--format", "json")
    assert code == 0, err
    row = next(r for r in json.loads(stdout) if r["run_id"] == run.run_id)
    assert row["metric"] == "eval_accuracy" and row["ensemble"] == pytest.approx(ensemble, abs=5e-5)
    assert row["best_member"] == f"{best} {members[best]:.4f}" and row["members"] == "3/3"

    code, stdout, _ = cli("runs", "--store", run.store)
    assert "eval_accuracy on valid" in stdout and f"{best} {members[best]:.4f}" in stdout
    assert max(len(line) for line in stdout.splitlines()) <= 100


def test_runs_long_and_the_report_say_where_the_run_was_trained(run, tmp_path):
    code, stdout, err = cli("runs", "--store", run.store, "--long", "--format", "json")
    assert code == 0, err
    row = next(r for r in json.loads(stdout) if r["run_id"] == run.run_id)
    assert {"runner", "python", "torch", "transformers", "duckdb", "host", "device"} <= set(row)
    assert row["spec"] == str((run.folder / "spec.toml").resolve()) and row["name"] == "predict-run"
    code, stdout, _ = cli("runs", "--store", run.store, "--long")
    assert f"Run {run.run_id}" in stdout and row["device"] in stdout

    out = tmp_path / "page.html"
    code, _, err = cli("report", run.run_id, "--store", run.store, "--out", out)
    assert code == 0, err
    page = out.read_text()
    assert "Environment</h2>" in page and f"<dd>{row['torch']}</dd>" in page


def _store_with_recorded_plugins(run, folder, recorded):
    """A copy of the run's store in `folder` (its checkpoints linked beside it) whose run says it was
    trained with the plugins folder `recorded`."""
    folder.mkdir(parents=True, exist_ok=True)
    store = folder / "results.duckdb"
    shutil.copy(run.store, store)
    (folder / "runs").symlink_to(run.folder / "runs")
    con = duckdb.connect(str(store))
    env = {**Store(run.store).environment(run.run_id), "plugins": str(recorded)}
    con.execute("UPDATE runs SET environment = ? WHERE run_id = ?", [json.dumps(env), run.run_id])
    con.close()
    return store


def test_read_commands_load_the_plugins_a_run_was_trained_with_from_here_only(run, tmp_path, monkeypatch):
    project = tmp_path / "project"
    (project / "plugins").mkdir(parents=True)
    (project / "plugins" / "top_share.py").write_text(METRIC_PLUGIN)
    store = _store_with_recorded_plugins(run, project, project / "plugins")
    monkeypatch.chdir(project)
    code, _, err = cli("compare", run.run_id, "--store", store, "--format", "csv")
    assert code == 0, err
    assert "plugins: loaded top_share.py" in err

    # the same store in another folder: its recorded folder is neither ./plugins nor beside the store, so no
    # code it names runs; the user is told what to pass
    elsewhere = tmp_path / "elsewhere"
    moved = _store_with_recorded_plugins(run, elsewhere, project / "plugins")
    monkeypatch.chdir(elsewhere)
    code, _, err = cli("compare", run.run_id, "--store", moved, "--format", "csv")
    assert code == 0, err
    assert "plugins: loaded" not in err

    # a ./plugins folder that is not the one the run recorded is not loaded either
    (elsewhere / "plugins").mkdir()
    (elsewhere / "plugins" / "top_share.py").write_text(METRIC_PLUGIN)
    code, _, err = cli("compare", run.run_id, "--store", moved, "--format", "csv")
    assert code == 0 and "plugins: loaded" not in err, err


def test_runner_load_is_quiet_and_leaves_the_progress_bar_setting_as_it_was(run, tmp_path, capfd):
    from transformers.utils import logging as hf_logging

    import runner

    code, _, err = cli("export", run.run_id, tmp_path / "model", "--store", run.store)
    assert code == 0, err
    capfd.readouterr()
    hf_logging.enable_progress_bar()
    model = runner.load(tmp_path / "model")
    assert model.predict(["a truly great film"])
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""
    assert hf_logging.is_progress_bar_enabled()
