"""Refit on train+valid (runner.run.refit), with real training through the CLI.

A module-scoped parent run (two tiny scratch models, 3 epochs, SWA over the last 2, fitted ensemble
weights) is refit by its own selection strategy and by `swa`; the tests check the link to the parent,
the epochs each member trained against the parent's picks, the merged data, the ensemble weights,
`runner compare PARENT` and `runner compare REFIT`, the refusals (exit 2, the store unchanged), a
refit killed with SIGKILL mid-epoch and continued, and `[refit] strategy` in a spec through `apply`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from runner.store import Store

SPEC = """
name = "{name}"
seed = 5

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
learning_rate = 5e-3
lr_scheduler = "constant"

[loss]
name = "paused_ce"

[selection]
metric = "eval_accuracy"

[swa]
k = {k}

[ensemble]
weights = "fit"
{extra}
{members}
"""

MEMBER = """
[[members]]
name = "{name}"
backbone = "scratch"
seed = {seed}
options = {{ architecture = "{arch}", hidden_size = 32, layers = 1, heads = 2, vocab_size = 1000 }}
"""
MEMBERS = MEMBER.format(name="a", seed=5, arch="bert") + MEMBER.format(name="b", seed=9, arch="roberta")

# Cross-entropy that, in a process started with PAUSE_AT_STEP=n, stops at the n-th training step (a
# forward pass with gradients), touches MARKER and sleeps: a test can kill the process mid-epoch at
# an exact step. And a strategy that never picks anything.
PLUGIN = '''
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from runner import hookimpl

STEPS = {"n": 0}


def build(ctx, options):
    def loss(logits, labels):
        if torch.is_grad_enabled():
            STEPS["n"] += 1
            if STEPS["n"] == int(os.environ.get("PAUSE_AT_STEP", "0")):
                Path(os.environ["MARKER"]).touch()
                time.sleep(300)
        return F.cross_entropy(logits.float(), labels)
    return loss


@hookimpl
def register_losses(register):
    register("paused_ce", build)


@hookimpl
def register_selections(register):
    register("never", lambda history: None, description="picks nothing")
'''

SIZE, EPOCHS, K, BATCH = 400, 3, 2, 16
MERGED = 320  # train 240 + valid 80 of the 400 examples (test 80)
STEPS_PER_EPOCH = -(-MERGED // BATCH)


def write_case(d: Path, name="parent", size=SIZE, epochs=EPOCHS, k=K, extra="", members=MEMBERS) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "plugins").mkdir(exist_ok=True)
    (d / "plugins" / "paused.py").write_text(PLUGIN)
    spec = d / "spec.toml"
    spec.write_text(SPEC.format(name=name, size=size, epochs=epochs, k=k, extra=extra, members=members))
    return spec


def cli(run_cli, *args):
    code, out, err = run_cli(*args)
    assert code == 0, err
    return out, err


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """The parent run, a copy of its store before any refit, and its refits by `selected` and `swa`."""
    from typer.testing import CliRunner

    from runner.cli import app

    def run_cli(*args):
        r = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=True)
        if r.exception is not None and not isinstance(r.exception, SystemExit):
            raise r.exception
        return r.exit_code, r.stdout, r.stderr

    d = tmp_path_factory.mktemp("refit")
    spec = write_case(d)
    store = d / "results.duckdb"
    cli(run_cli, "apply", spec, "--store", store)
    pristine = d / "pristine.duckdb"
    shutil.copy(store, pristine)
    st = Store(store)
    parent = st.run("parent")
    _, selected_err = cli(run_cli, "refit", "parent", "--store", store, "--plugins", d / "plugins")
    _, swa_err = cli(run_cli, "refit", parent.run_id, "--strategy", "swa", "--store", store, "--plugins", d / "plugins")
    return {"dir": d, "store": store, "pristine": pristine, "parent": parent, "run_cli": run_cli,
            "selected_err": selected_err, "swa_err": swa_err}


def refit_of(store: Path, parent_id: str, strategy: str):
    st = Store(store)
    rows = st.query_dicts("SELECT run_id FROM runs WHERE parent_run_id = ? AND refit_strategy = ?",
                          [parent_id, strategy])
    assert len(rows) == 1, rows
    return st.run(rows[0]["run_id"])


def test_refit_is_a_run_linked_to_its_parent_trained_for_the_picked_epochs(case):
    st, parent = Store(case["store"]), case["parent"]
    strategy = parent.selected_strategy
    assert strategy == "best_eval_accuracy"
    refit = refit_of(case["store"], parent.run_id, strategy)
    # named as the README says (`<parent's name>-refit`), its id as apply makes them: <name>-<8 hex of its spec hash>
    assert refit.name == f"{parent.name}-refit" and refit.run_id == f"{parent.name}-refit-{refit.spec_hash[:8]}"
    assert (refit.parent_run_id, refit.refit_strategy, refit.status) == (parent.run_id, strategy, "finished")
    assert refit.is_refit and not parent.is_refit
    assert f"Refit {refit.run_id} of run {parent.run_id}" in case["selected_err"]

    picks = st.selections(parent.run_id, strategy)  # member -> epoch-N
    for m in parent.members:
        r = refit.member(m.name)
        epochs = int(picks[m.name].removeprefix("epoch-"))
        # from scratch, with the same seed and options, for exactly the epochs the strategy chose
        assert (r.seed, dict(r.options), r.backbone) == (m.seed, dict(m.options), m.backbone)
        assert st.stored_epochs(refit.run_id, m.name) == list(range(1, epochs + 1))
        assert r.selected_checkpoint == f"epoch-{epochs}"  # nothing to select on: the last epoch
        assert refit.spec["members"][[x["name"] for x in refit.spec["members"]].index(m.name)]["train"]["epochs"] \
            == epochs
    assert refit.spec["refit"]["parent_run_id"] == parent.run_id
    assert refit.spec["refit"]["strategy"] == strategy
    assert refit.spec["selection"]["early_stopping_patience"] is None

    # data: the parent's train and valid examples merged into train, its test split kept
    counts = dict(st.query("SELECT split, count(*) FROM examples WHERE dataset_id = ? GROUP BY split",
                           [refit.dataset_id])[1])
    before = dict(st.query("SELECT split, count(*) FROM examples WHERE dataset_id = ? GROUP BY split",
                           [parent.dataset_id])[1])
    assert counts == {"train": before["train"] + before["valid"], "test": before["test"]}
    same_test = st.query("SELECT count(*) FROM examples a JOIN examples b USING (split, idx, text, label) "
                         "WHERE a.dataset_id = ? AND b.dataset_id = ? AND split = 'test'",
                         [refit.dataset_id, parent.dataset_id])[1][0][0]
    assert same_test == before["test"]

    # no validation split: test predictions and metrics every epoch, nothing on valid
    splits = {r[0] for r in st.query("SELECT DISTINCT split FROM predictions WHERE run_id = ?", [refit.run_id])[1]}
    assert splits == {"test"}
    for m in refit.members:
        n = st.query("SELECT count(*) FROM predictions WHERE run_id = ? AND member = ? AND kind = 'member'",
                     [refit.run_id, m.name])[1][0][0]
        assert n == len(st.stored_epochs(refit.run_id, m.name)) * before["test"]
    rows = st.query_dicts("SELECT * FROM epochs WHERE run_id = ? ORDER BY member, epoch", [refit.run_id])
    assert rows and all(r["test_accuracy"] is not None and r["train_loss"] is not None for r in rows)
    assert all(r["eval_accuracy"] is None for r in rows)
    dupes = st.query("SELECT count(*) FROM (SELECT member, checkpoint, split, idx FROM predictions WHERE run_id = ? "
                     "GROUP BY ALL HAVING count(*) > 1)", [refit.run_id])[1][0][0]
    assert dupes == 0

    # the ensemble takes the weights fitted on validation in the parent, for the same strategy
    def weights(run_id, strategy):
        return dict(st.query("SELECT member, weight FROM ensemble_weights WHERE run_id = ? AND ensemble = 'ensemble' "
                             "AND strategy = ?", [run_id, strategy])[1])

    assert weights(refit.run_id, "last") == pytest.approx(weights(parent.run_id, strategy))
    assert st.has_checkpoint(refit.run_id, "a", "swa") is False  # SWA only for a refit of `swa`
    assert (case["store"].parent / "runs" / refit.run_id / "a" / "selected" / "model.safetensors").is_file()


def test_swa_refit_trains_and_averages_the_same_window(case):
    st, parent = Store(case["store"]), case["parent"]
    refit = refit_of(case["store"], parent.run_id, "swa")
    for m in parent.members:
        r = refit.member(m.name)
        assert r.swa_epochs == m.swa_epochs == (EPOCHS - K + 1, EPOCHS)
        assert st.stored_epochs(refit.run_id, m.name) == list(range(1, max(m.swa_epochs) + 1))
        assert st.has_checkpoint(refit.run_id, m.name, "swa")
    assert st.ensemble_strategies(refit.run_id, "ensemble") == {"swa"}
    assert "Ensemble over swa" in case["swa_err"]


def test_compare_shows_the_refit_beside_its_parent(case):
    run_cli, store, parent = case["run_cli"], case["store"], case["parent"]
    out, _ = cli(run_cli, "compare", parent.run_id, "--store", store, "--plugins", case["dir"] / "plugins",
                 "--format", "json")
    rows = json.loads(out)
    strategies = [r["strategy"] for r in rows]
    # each refit block comes right after the parent's block of the same strategy
    for s in ("best_eval_accuracy", "swa"):
        last_parent = max(i for i, x in enumerate(strategies) if x == s)
        assert strategies[last_parent + 1] == f"refit:{s}"
    st = Store(store)
    refit = refit_of(store, parent.run_id, "best_eval_accuracy")
    picks = st.selections(parent.run_id, "best_eval_accuracy")
    block = [r for r in rows if r["strategy"] == "refit:best_eval_accuracy"]
    assert [(r["kind"], r["member"]) for r in block] == [("member", "a"), ("member", "b"), ("ensemble", "ensemble")]
    metrics = st.checkpoint_metrics(refit.run_id)
    for r in block:
        if r["kind"] == "member":
            assert f"epoch-{r['epoch']}" == picks[r["member"]]
        key = (r["kind"], r["member"], r["checkpoint"])
        assert r["test_accuracy"] == pytest.approx(metrics[key]["test_accuracy"])
        assert r["test_log_loss"] == pytest.approx(metrics[key]["test_log_loss"])
        assert r["eval_accuracy"] is None
    swa_block = [r for r in rows if r["strategy"] == "refit:swa"]
    assert [r["checkpoint"] for r in swa_block] == ["swa", "swa", "swa"]

    # --strategies picks the refit blocks too
    out, _ = cli(run_cli, "compare", parent.run_id, "--store", store, "--strategies", "best_eval_loss,swa",
                 "--format", "json")
    assert {r["strategy"] for r in json.loads(out)} == {"best_eval_loss", "swa", "refit:swa"}

    table, _ = cli(run_cli, "compare", parent.run_id, "--store", store, "--plugins", case["dir"] / "plugins")
    assert "refit:best_eval_accuracy" in table and "refit:swa" in table
    # a refit's own table: its `last` (and for swa its `swa`) block, test numbers only
    out, _ = cli(run_cli, "compare", refit.run_id, "--store", store, "--format", "json")
    own = json.loads(out)
    assert {r["strategy"] for r in own} == {"last"}
    assert all(r["eval_accuracy"] is None and r["test_accuracy"] is not None for r in own)


def test_the_report_of_the_parent_shows_the_refit_beside_it(case, tmp_path):
    """`runner report PARENT`: the strategies table of the page holds the refit blocks with the refit
    run's stored test numbers (the before/after `runner compare` shows)."""
    from html_page import Page, column

    run_cli, store, parent = case["run_cli"], case["store"], case["parent"]
    out = tmp_path / "parent.html"
    cli(run_cli, "report", parent.run_id, "--store", store, "--plugins", case["dir"] / "plugins", "--out", out)
    table = Page(out.read_text(encoding="utf-8")).table(f"Run {parent.run_id}: selection strategies")
    refit = refit_of(store, parent.run_id, "best_eval_accuracy")
    metrics = Store(store).checkpoint_metrics(refit.run_id)
    picks = Store(store).selections(parent.run_id, "best_eval_accuracy")
    strategy, shown = None, {}
    for row in table["rows"]:  # a block's strategies on a row of their own, its members indented below
        if not row[0][0].startswith(" "):
            strategy = row[0][0]
        elif strategy == "refit:best_eval_accuracy":
            shown[row[0][0].strip()] = row[column(table, "test acc")][0]
    assert set(shown) == {"a", "b", "ensemble"}
    for member in ("a", "b"):  # each member trained for the epochs its parent's strategy picked
        assert shown[member] == f"{metrics[('member', member, picks[member])]['test_accuracy']:.4f}"
    assert shown["ensemble"] == f"{metrics[('ensemble', 'ensemble', 'last')]['test_accuracy']:.4f}"


def snapshot(d: Path):
    store = d / "results.duckdb"
    runs = sorted(str(p.relative_to(d)) for p in (d / "runs").rglob("*")) if (d / "runs").exists() else []
    return store.read_bytes(), store.stat().st_mtime_ns, runs


def test_refit_refuses_bad_requests_before_writing(case, tmp_path, run_cli):
    d = tmp_path
    shutil.copytree(case["dir"] / "plugins", d / "plugins")
    shutil.copy(case["store"], d / "results.duckdb")
    store, parent = d / "results.duckdb", case["parent"]
    plugins = ["--plugins", d / "plugins"]
    refit_id = Store(store).refit_runs(parent.run_id)[0]["run_id"]
    con = duckdb.connect(str(store))
    con.execute("INSERT INTO runs SELECT * REPLACE ('unfinished' AS run_id, 'unfinished' AS name, 'running' AS status, "
                "NULL AS parent_run_id, NULL AS refit_strategy) FROM runs WHERE run_id = ?", [parent.run_id])
    con.execute("INSERT INTO members SELECT * REPLACE ('unfinished' AS run_id) FROM members WHERE run_id = ?",
                [parent.run_id])
    con.execute("UPDATE members SET status = 'running' WHERE run_id = 'unfinished' AND member = 'b'")
    con.close()
    cases = [
        (["nope"], ["RUN 'nope'", "no run with that id or name"]),
        ([parent.run_id, "--strategy", "best_eval_acuracy"], ["--strategy", "did you mean 'best_eval_accuracy'"]),
        ([parent.run_id, "--strategy", "never"], ["--strategy 'never'", "member 'a'", "picks no checkpoint"]),
        ([refit_id], [f"is itself a refit of run {parent.run_id}", f"refit {parent.run_id} instead"]),
        (["unfinished"], ["run unfinished is not finished", "members not finished: b"]),
    ]
    before = snapshot(d)
    for args, message in cases:
        code, out, err = run_cli("refit", *args, "--store", store, *plugins)
        assert code == 2, (args, err)
        assert "error: " in err and "Traceback" not in err
        assert all(m in err for m in message), (args, err)
        assert snapshot(d) == before, args
    # the stored spec names a plugin loss: without the plugins it was trained with, exit 2 naming it
    code, _, err = run_cli("refit", parent.run_id, "--strategy", "last", "--store", store)
    assert code == 2 and "paused_ce" in err and "--plugins" in err, err
    assert snapshot(d) == before


def test_refit_killed_mid_epoch_continues_to_the_same_numbers(case, tmp_path):
    """SIGKILL inside member b's second epoch of a `swa` refit; the same command then continues it:
    a skipped, b resumed from its stored epoch, no row twice, the numbers of the uninterrupted refit."""
    d = tmp_path
    shutil.copytree(case["dir"] / "plugins", d / "plugins")
    shutil.copy(case["pristine"], d / "results.duckdb")
    store, parent = d / "results.duckdb", case["parent"]
    cmd = [sys.executable, "-m", "runner.cli", "refit", parent.run_id, "--strategy", "swa", "--store", str(store),
           "--plugins", str(d / "plugins")]
    marker = d / "paused"
    # member a trains 3 epochs; then b's second epoch, step 3
    step = EPOCHS * STEPS_PER_EPOCH + STEPS_PER_EPOCH + 3
    env = dict(os.environ, PAUSE_AT_STEP=str(step), MARKER=str(marker), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not marker.exists():
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "the refit never reached the step"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    st = Store(store)
    refit_id = next(r["run_id"] for r in st.refit_runs(parent.run_id) if r["refit_strategy"] == "swa")
    assert dict(st.query("SELECT member, status FROM members WHERE run_id = ?", [refit_id])[1]) == {
        "a": "finished", "b": "running"}
    assert st.stored_epochs(refit_id, "b") == [1]

    env.pop("PAUSE_AT_STEP")
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert f"Continuing refit {refit_id}" in again.stderr and "b: resuming after epoch 1" in again.stderr
    assert [r["run_id"] for r in st.query_dicts("SELECT run_id FROM runs WHERE parent_run_id IS NOT NULL")] == [
        refit_id]
    assert st.run(refit_id).status == "finished"
    dupes = st.query("SELECT count(*) FROM (SELECT run_id, kind, member, checkpoint, split, idx FROM predictions "
                     "GROUP BY ALL HAVING count(*) > 1)")[1][0][0]
    assert dupes == 0
    n_test = SIZE // 5
    for m in ("a", "b"):
        assert st.stored_epochs(refit_id, m) == [1, 2, 3]
        n = st.query("SELECT count(*) FROM predictions WHERE run_id = ? AND member = ? AND kind = 'member'",
                     [refit_id, m])[1][0][0]
        assert n == (EPOCHS + 1) * n_test  # every epoch and the SWA checkpoint, once
    assert not (d / "runs" / refit_id / "b" / "checkpoints").exists()

    reference = Store(case["store"]).checkpoint_metrics(refit_id)
    got = st.checkpoint_metrics(refit_id)
    assert set(got) == set(reference)
    for key, values in reference.items():
        for name, v in values.items():
            assert got[key][name] == pytest.approx(v, abs=1e-4), (key, name)


def test_refit_in_the_spec_runs_inside_apply(tmp_path, run_cli):
    from runner.plugins.registry import load_registry
    from runner.spec import load_and_resolve

    member = MEMBER.format(name="a", seed=3, arch="bert")
    plain = write_case(tmp_path / "plain", name="inline", size=200, epochs=2, k=0, members=member)
    spec = write_case(tmp_path, name="inline", size=200, epochs=2, k=0, members=member,
                      extra='\n[refit]\nstrategy = "last"\n')
    registry = load_registry(tmp_path / "plugins")
    # [refit] is not part of the run's identity: the same spec with or without it is the same run
    assert load_and_resolve(spec, registry).spec_hash() == load_and_resolve(plain, registry).spec_hash()

    store = tmp_path / "results.duckdb"
    _, err = cli(run_cli, "apply", spec, "--store", store)
    st = Store(store)
    runs = st.query_dicts("SELECT run_id, parent_run_id, refit_strategy, status FROM runs ORDER BY started_at")
    assert len(runs) == 2
    parent, refit = runs
    assert (refit["parent_run_id"], refit["refit_strategy"], refit["status"]) == (parent["run_id"], "last", "finished")
    assert f"Refit {refit['run_id']} of run {parent['run_id']}" in err
    assert st.stored_epochs(refit["run_id"], "a") == [1, 2]

    # applied again: the run and its refit are both done
    _, err = cli(run_cli, "apply", spec, "--store", store)
    assert "already finished" in err and "nothing to do" in err
    assert len(st.run_ids()) == 2
