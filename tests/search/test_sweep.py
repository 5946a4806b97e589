"""Sweeps (`[sweep]` in a spec, runner.search.sweep) and `--set` overrides (runner.spec.keys).

A 4-trial sweep on synthetic data with tiny scratch models: every trial is a run with all its
predictions, the `trials`/`trial_params` rows mirror the study, the objective is the trial's
ensemble under the objective strategy re-read from the store, and applying again with more trials
continues the study. The pruner prunes a trial whose learning rate is useless after its first epoch;
a sweep killed with SIGKILL mid-trial resumes with no duplicated trial or row; bad space keys and
bad overrides are exit 2 naming the key.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from sweep_helpers import MARKER_PLUGIN, cli, rows, write_spec

from runner.store import Store


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sweep")
    spec = write_spec(folder, members=("a", "b"), sweep='trials = 4\nsampler = "random"\npruner = "none"',
                      space='"loss.gamma" = { low = 0.5, high = 4.0 }\n'
                            '"train.learning_rate" = { low = 3e-3, high = 3e-2, log = true }\n'
                            '"loss.alpha[1]" = { low = 0.5, high = 2.0 }\n'
                            '"members.b.train.batch_size" = { choices = [8, 16] }')
    store = folder / "results.duckdb"
    code, out, err = cli("apply", spec, "--store", store)
    assert code == 0, err
    return folder, spec, store, out, err


def test_every_trial_is_a_run_and_the_trials_table_mirrors_the_study(swept):
    folder, spec, store, out, err = swept
    (sweep_id, objective, direction), = rows(store, "SELECT sweep_id, objective, direction FROM sweeps")
    name = rows(store, "SELECT name FROM sweeps")[0][0]
    assert sweep_id.startswith(f"{name}-") and len(sweep_id) == len(name) + 9  # <name>-<8 hex>, no word twice
    assert objective == "best_eval_accuracy" and direction == "maximize"
    trials = rows(store, "SELECT number, status, value, run_id, params FROM trials ORDER BY number")
    assert [t[:2] for t in trials] == [(i, "finished") for i in range(4)]
    for number, _, value, run_id, params in trials:
        params = json.loads(params)
        assert set(params) == {"loss.gamma", "train.learning_rate", "loss.alpha[1]", "members.b.train.batch_size"}
        run = Store(store).run(run_id)
        assert run.status == "finished" and run.name == f"sw-t{number}"
        # the params are in the trial's stored spec
        members = {m["name"]: m for m in run.spec["members"]}
        assert members["a"]["loss"]["gamma"] == pytest.approx(params["loss.gamma"])
        assert members["a"]["train"]["learning_rate"] == pytest.approx(params["train.learning_rate"])
        assert members["a"]["loss"]["alpha"][1] == pytest.approx(params["loss.alpha[1]"])
        assert members["a"]["loss"]["alpha"][0] == 1.0  # the other classes keep the neutral weight
        assert members["b"]["train"]["batch_size"] == params["members.b.train.batch_size"]
        assert members["a"]["train"]["batch_size"] == 16  # a member's own key touches that member only
        # every epoch's predictions are stored, as for any run
        n_valid = rows(store, "SELECT count(*) FROM examples WHERE dataset_id = ? AND split = 'valid'",
                       [run.dataset_id])[0][0]
        assert rows(store, "SELECT count(*) FROM predictions WHERE run_id = ? AND kind = 'member' AND "
                           "split = 'valid' AND epoch IS NOT NULL", [run_id])[0][0] == 2 * 2 * n_valid
        # the objective: the ensemble under best_eval_accuracy on valid, as stored for the run
        stored = rows(store, "SELECT value FROM metrics WHERE run_id = ? AND kind = 'ensemble' AND member = "
                             "'ensemble' AND checkpoint = 'best_eval_accuracy' AND split = 'valid' AND name = "
                             "'accuracy'", [run_id])[0][0]
        assert value == pytest.approx(stored)
    assert rows(store, "SELECT count(*) FROM trial_params")[0][0] == 4 * 4
    # SQL can group by a param
    assert rows(store, "SELECT count(DISTINCT value) FROM trial_params WHERE param = 'loss.gamma'")[0][0] == 4
    best = max(trials, key=lambda t: (t[2], -t[0]))
    assert f"best: trial {best[0]}" in out and "Re-scoring" in out and "Parameter importances" in out


def test_runner_sweep_shows_the_trials_and_the_rescoring_table(swept):
    folder, spec, store, _, _ = swept
    code, out, err = cli("sweep", "--store", store)
    assert code == 0, err
    assert "best_eval_accuracy (objective)" in out and "best_eval_log_loss" in out
    lines = [line.split() for line in out.splitlines()]
    assert ["picks", "its", "test"] in [line[:3] for line in lines]  # the re-scoring table's two header lines
    assert ["strategy", "trial", "by", "value"] in [line[:4] for line in lines]
    code, out, err = cli("sweep", "sw", "--store", store, "--format", "json")
    assert code == 0, err
    data = json.loads(out)
    assert len(data) == 4 and {r["status"] for r in data} == {"finished"}
    code, _, err = cli("sweep", "nope", "--store", store)
    assert code == 2 and "nope" in err


def test_applying_again_does_nothing_and_more_trials_continue(swept, tmp_path):
    folder, spec, store, _, _ = swept
    code, _, err = cli("apply", spec, "--store", store)
    assert code == 0 and "nothing to do" in err
    runs_before = rows(store, "SELECT count(*) FROM runs")[0][0]
    more = spec.read_text().replace("trials = 4", "trials = 5")
    spec5 = folder / "spec5.toml"
    spec5.write_text(more)
    code, _, err = cli("apply", spec5, "--store", store)
    assert code == 0, err
    assert rows(store, "SELECT count(*) FROM sweeps")[0][0] == 1  # the same sweep, continued
    assert [r[0] for r in rows(store, "SELECT number FROM trials ORDER BY number")] == [0, 1, 2, 3, 4]
    assert rows(store, "SELECT count(*) FROM runs")[0][0] == runs_before + 1


def test_the_pruner_stops_a_useless_trial_after_its_first_epoch(tmp_path):
    # grid order under this seed: the good learning rate first, then the useless one; with one trial
    # completed the median pruner compares the second trial's first epoch with the first trial's
    spec = write_spec(tmp_path, epochs=3, size=400,
                      sweep='trials = 2\nsampler = "grid"\nseed = 1\npruner = "median"\npruner_startup = 1',
                      space='"train.learning_rate" = { choices = [2e-2, 1e-7] }')
    store = tmp_path / "results.duckdb"
    code, out, err = cli("apply", spec, "--store", store)
    assert code == 0, err
    trials = {json.loads(p)["train.learning_rate"]: (s, r) for s, p, r in
              rows(store, "SELECT status, params, run_id FROM trials")}
    assert trials[2e-2][0] == "finished", trials
    status, run_id = trials[1e-7]
    assert status == "pruned", (trials, err)
    assert rows(store, "SELECT status FROM runs WHERE run_id = ?", [run_id])[0][0] == "pruned"
    assert rows(store, "SELECT DISTINCT epoch FROM metrics WHERE run_id = ? AND epoch IS NOT NULL",
                [run_id]) == [(1,)]  # stopped after epoch 1, its epoch kept
    assert "pruned" in out


def test_a_sweep_killed_mid_trial_resumes_without_duplicates(tmp_path):
    spec = write_spec(tmp_path, name="kill", size=600, epochs=3, sweep='trials = 3\nsampler = "random"\npruner = "none"')
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "markers.py").write_text(MARKER_PLUGIN)
    markers = tmp_path / "markers"
    markers.mkdir()
    store = tmp_path / "results.duckdb"
    env = dict(os.environ, MARKER_DIR=str(markers), EPOCH_PAUSE_S="0.5", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "runner.cli", "apply", str(spec), "--store", str(store)]
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not list(markers.glob("kill-t1-*-a-1")):  # the second trial has stored its first epoch
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    result = subprocess.run(cmd, env=dict(env, EPOCH_PAUSE_S="0"), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "trial 1 was interrupted" in result.stderr and "resuming after epoch" in result.stderr
    trials = rows(store, "SELECT number, status, retry_of, run_id FROM trials ORDER BY number")
    finished = [t for t in trials if t[1] == "finished"]
    retry = [t for t in finished if t[2] == 1]  # the retry of trial 1 ...
    assert len(finished) == 3 and len(retry) == 1
    assert [t for t in trials if t[1] == "failed"] == [(1, "failed", None, retry[0][3])]  # ... in the same run
    assert len({t[3] for t in finished}) == 3 and rows(store, "SELECT count(*) FROM runs")[0][0] == 3
    for table, key in (("metrics", "run_id, kind, member, checkpoint, epoch, split, name"),
                       ("predictions", "run_id, kind, member, checkpoint, epoch, split, idx")):
        total, distinct = rows(store, f"SELECT count(*), count(DISTINCT ({key})) FROM {table}")[0]
        assert total == distinct, table
    assert rows(store, "SELECT count(DISTINCT epoch) FROM metrics WHERE run_id = ? AND epoch IS NOT NULL",
                [retry[0][3]])[0][0] == 3


def test_bad_space_keys_are_exit_2_naming_the_key(tmp_path):
    spec = write_spec(tmp_path, space='"loss.gamm" = { low = 0.5, high = 4.0 }\n'
                                      '"train.batch_size" = { choices = [0, 16] }\n'
                                      '"members.zz.seed" = { low = 1, high = 5 }')
    store = tmp_path / "results.duckdb"
    code, out, err = cli("validate", spec, "--store", store, "--no-check-models")
    assert code == 2
    assert 'sweep.space."loss.gamm"' in err and 'sweep.space."train.batch_size"' in err
    assert 'sweep.space."members.zz.seed"' in err and "spec.toml" in err
    assert not store.exists() and not (tmp_path / "runs").exists()
    spec = write_spec(tmp_path, sweep='objective = "best_eval_nothing"\nsampler = "grid"',
                      space='"loss.gamma" = { low = 0.5, high = 4.0 }')
    code, _, err = cli("validate", spec, "--store", store, "--no-check-models")
    assert code == 2 and 'sweep.space."loss.gamma"' in err and "grid" in err


def test_set_overrides_are_validated_recorded_and_change_the_hash(tmp_path):
    spec = write_spec(tmp_path, sweep='trials = 1', space='"loss.gamma" = { low = 0.5, high = 4.0 }')
    plain = tmp_path / "plain.toml"
    text = spec.read_text()
    plain.write_text(text[:text.index("[sweep]")] + text[text.index("[[members]]"):])
    store = tmp_path / "results.duckdb"
    code, _, err = cli("validate", plain, "--store", store, "--no-check-models", "--set", "loss.gamma=-1",
                       "--set", "train.epoch=3", "--set", "members.nope.seed=1", "--set", "novalue")
    assert code == 2 and "--set novalue" in err
    code, _, err = cli("validate", plain, "--store", store, "--no-check-models", "--set", "loss.gamma=-1",
                       "--set", "train.epoch=3", "--set", "members.nope.seed=1")
    assert code == 2 and "3 problems" in err, err
    assert "loss.gamma" in err and "(set by --set loss.gamma)" in err and "train.epoch" in err and "nope" in err
    code, _, err = cli("apply", plain, "--store", store, "--set", "train.epochs=1", "--set", "loss.gamma=2.5")
    assert code == 0, err
    code, _, err = cli("apply", plain, "--store", store, "--set", "train.epochs=1")
    assert code == 0, err
    stored = rows(store, "SELECT spec, spec_hash FROM runs ORDER BY started_at")
    first, second = json.loads(stored[0][0]), json.loads(stored[1][0])
    assert first["members"][0]["loss"]["gamma"] == 2.5 and second["members"][0]["loss"]["gamma"] == 2.0
    assert first["train"]["epochs"] == 1 and stored[0][1] != stored[1][1]


def test_two_workers_on_one_store_finish_every_trial_without_lost_rows(tmp_path):
    spec = write_spec(tmp_path, name="two", size=300, sweep='trials = 4\nsampler = "random"\npruner = "none"')
    store = tmp_path / "results.duckdb"
    cmd = [sys.executable, "-m", "runner.cli", "apply", str(spec), "--store", str(store), "--workers", "2"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "2 workers on sweep" in result.stderr
    logs = list((tmp_path / "runs" / "_sweeps").glob("*/worker-1.log"))
    assert len(logs) == 1 and "trial" in logs[0].read_text()  # the second worker ran trials too
    trials = rows(store, "SELECT number, status, run_id FROM trials ORDER BY number")
    assert [t[1] for t in trials] == ["finished"] * 4, trials
    assert len({t[2] for t in trials}) == 4 and rows(store, "SELECT count(*) FROM runs")[0][0] == 4
    assert {r[0] for r in rows(store, "SELECT status FROM runs")} == {"finished"}
    for table, key in (("metrics", "run_id, kind, member, checkpoint, epoch, split, name"),
                       ("predictions", "run_id, kind, member, checkpoint, epoch, split, idx")):
        total, distinct = rows(store, f"SELECT count(*), count(DISTINCT ({key})) FROM {table}")[0]
        assert total == distinct, table
    # every run has all its epochs and predictions: nothing lost
    n_valid = rows(store, "SELECT count(*) FROM examples e JOIN (SELECT DISTINCT dataset_id FROM runs) USING "
                          "(dataset_id) WHERE split = 'valid'")[0][0]
    for _, _, run_id in trials:
        assert rows(store, "SELECT count(*) FROM predictions WHERE run_id = ? AND kind = 'member' AND "
                           "split = 'valid' AND epoch IS NOT NULL", [run_id])[0][0] == 2 * n_valid


def test_workers_need_a_sweep(tmp_path):
    spec = write_spec(tmp_path, sweep="trials = 1", space='"loss.gamma" = { low = 0.5, high = 4.0 }')
    text = spec.read_text()
    plain = tmp_path / "plain.toml"
    plain.write_text(text[:text.index("[sweep]")] + text[text.index("[[members]]"):])
    code, _, err = cli("apply", plain, "--store", tmp_path / "r.duckdb", "--workers", "2")
    assert code == 2 and "--workers 2" in err and "[sweep]" in err
    assert not (tmp_path / "r.duckdb").exists()


def test_predict_and_export_take_a_sweep_as_its_best_trial(swept, tmp_path):
    folder, spec, store, _, _ = swept
    best = rows(store, "SELECT run_id FROM trials WHERE status = 'finished' ORDER BY value DESC, number LIMIT 1")[0][0]
    texts = tmp_path / "new.csv"
    texts.write_text("text\nthe film was superb\nthe plot was awful\n")
    code, out, err = cli("predict", "sw", texts, "--store", store, "--no-store")
    assert code == 0, err
    assert best in err and out.startswith("pred_label,pred_id,")
    code, out, err = cli("export", "sw", tmp_path / "model", "--store", store)
    assert code == 0, err
    assert json.loads((tmp_path / "model" / "manifest.json").read_text())["run"]["run_id"] == best


def test_an_rdb_storage_url_holds_the_study(tmp_path):
    """`[sweep] storage` as a database URL (Optuna's RDBStorage, with heartbeats): how workers on
    several machines share one study. SQLite stands in for PostgreSQL here."""
    db = tmp_path / "optuna.db"
    spec = write_spec(tmp_path, name="rdb", sweep=f'trials = 2\nsampler = "random"\npruner = "none"\n'
                                                  f'storage = "sqlite:///{db}"')
    store = tmp_path / "results.duckdb"
    code, out, err = cli("apply", spec, "--store", store)
    assert code == 0, err
    assert rows(store, "SELECT storage FROM sweeps") == [(f"sqlite:///{db}",)] and db.is_file()
    assert [r[0] for r in rows(store, "SELECT status FROM trials")] == ["finished", "finished"]
    assert not list((tmp_path / "runs" / "_sweeps").glob("*/journal.log"))  # no journal file beside it
    import optuna

    study = optuna.load_study(study_name=rows(store, "SELECT sweep_id FROM sweeps")[0][0], storage=f"sqlite:///{db}")
    assert len(study.trials) == 2


@pytest.mark.parametrize("member", [None, "a"])
def test_a_loss_objective_minimises_on_the_ensemble_or_one_member(tmp_path, member):
    """The direction comes from the strategy; an ensemble has no training loss, so best_eval_loss
    scores it by its log-loss, and a member by its own validation loss."""
    sweep = 'trials = 2\nsampler = "random"\npruner = "none"\nobjective = "best_eval_loss"'
    if member:
        sweep += f'\nmember = "{member}"'
    spec = write_spec(tmp_path, name="lo", members=("a", "b"), sweep=sweep)
    store = tmp_path / "results.duckdb"
    code, _, err = cli("apply", spec, "--store", store)
    assert code == 0, err
    assert rows(store, "SELECT direction, objective_member FROM sweeps") == [("minimize", member)]
    for value, run_id in rows(store, "SELECT value, run_id FROM trials"):
        if member:
            checkpoint = Store(store).selections(run_id, "best_eval_loss")[member]
            expected = rows(store, "SELECT value FROM metrics WHERE run_id = ? AND kind = 'member' AND member = ? "
                                   "AND checkpoint = ? AND split = 'valid' AND name = 'loss'",
                            [run_id, member, checkpoint])[0][0]
        else:
            expected = rows(store, "SELECT value FROM metrics WHERE run_id = ? AND kind = 'ensemble' AND member = "
                                   "'ensemble' AND checkpoint = 'best_eval_loss' AND split = 'valid' AND "
                                   "name = 'log_loss'", [run_id])[0][0]
        assert value == pytest.approx(expected)


def test_no_trial_starts_after_the_timeout(tmp_path):
    spec = write_spec(tmp_path, name="to", sweep='trials = 5\nsampler = "random"\npruner = "none"\ntimeout = 0.5')
    store = tmp_path / "results.duckdb"
    code, _, err = cli("apply", spec, "--store", store)
    assert code == 0, err
    assert "timeout of 0.5 s reached" in err
    assert [r[0] for r in rows(store, "SELECT status FROM trials")] == ["finished"]  # one trial outlasts 0.5 s


def test_a_sweep_stored_under_an_earlier_id_keeps_it(tmp_path):
    """Sweep ids were `<name>-sweep-<hash>`: a store (or a journal folder) that holds a sweep under that id
    continues it under that id, since its rows, journal and Optuna study are named by it."""
    from runner.search.plan import SweepPlan
    from runner.search.storage import sweep_folder
    from runner.search.sweep import continued

    store = Store(tmp_path / "results.duckdb")
    store.open()
    sp = SweepPlan(None, {}, "s-1234abcd", "best_eval_accuracy", "accuracy", True, legacy_id="s-sweep-1234abcd")
    assert continued(sp, store).sweep_id == "s-1234abcd"  # a new sweep: the new id
    sweep_folder(store.path, "s-sweep-1234abcd").mkdir(parents=True)  # started, killed before its row
    assert continued(sp, store).sweep_id == "s-sweep-1234abcd"
    other = SweepPlan(None, {}, "t-00000000", "best_eval_accuracy", "accuracy", True, legacy_id="t-sweep-00000000")
    store.put_sweep("t-sweep-00000000", "t", {}, "journal", "best_eval_accuracy", None, "maximize")
    assert continued(other, store).sweep_id == "t-sweep-00000000"
