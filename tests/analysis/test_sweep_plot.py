"""`runner plot SWEEP` (runner.analysis.sweep_plot, and runner.analysis.plot.target telling a run from a sweep).

One 3-trial sweep on synthetic data with a tiny scratch model (no pruner): the plot by the sweep's
name, id or `--sweep` is a PNG with the objective panel and one slice panel per param (a `choices`
param as categories); a trial's run name still draws the run's plot. Figures of made-up trials check
what a short sweep cannot show for sure: pruned and failed marks, the log axis, the best-so-far line
when minimizing, and legends that never overlap an axes. Exit 2, with nothing written: an unknown
RUN|SWEEP, --sweep on a store without sweeps, no store, a sweep with no finished trial, a bad --out.
`runner report SWEEP` reads its argument the same way; its page holds the same sweep's tables.
"""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import duckdb
import pytest
from html_page import Page, column
from typer.testing import CliRunner

from runner.analysis.sweep_plot import Param, SweepPlot, best_so_far, figure, is_log, load, params_of
from runner.analysis.sweep_view import find_sweep
from runner.cli import app
from runner.store import Store

SPEC = """
name = "swp"
seed = 5

[data]
source = "synthetic"
valid = 0.25
test = 0.25
max_length = 32

[data.options]
size = 240

[train]
epochs = 2
batch_size = 16
learning_rate = 1e-2
lr_scheduler = "constant"

[loss]
name = "focal"
gamma = 2.0

[sweep]
trials = 3
sampler = "random"
pruner = "none"

[sweep.space]
"loss.gamma" = { low = 0.5, high = 4.0 }
"train.learning_rate" = { low = 3e-3, high = 3e-2, log = true }
"train.batch_size" = { choices = [8, 16] }

[[members]]
name = "a"
backbone = "scratch"
options = { architecture = "bert", hidden_size = 16, layers = 1, heads = 2, vocab_size = 500 }
"""
PARAMS = ["loss.gamma", "train.learning_rate", "train.batch_size"]


def cli(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) of a PNG, after checking that PIL reads the whole file as one."""
    from PIL import Image

    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as im:
        im.verify()
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sweep_plot")
    spec = folder / "spec.toml"
    spec.write_text(SPEC)
    store = folder / "results.duckdb"
    code, out, err = cli("apply", spec, "--store", store)
    assert code == 0, err
    (sweep_id,), = Store(store).query("SELECT sweep_id FROM sweeps")[1]
    return folder, store, sweep_id


def test_report_of_a_sweep_holds_its_trials_best_params_and_rescoring(swept, tmp_path):
    import base64
    import io

    from PIL import Image

    folder, store, sweep_id = swept
    out = tmp_path / "sweep.html"
    code, _, err = cli("report", "swp", "--store", store, "--out", out)
    assert code == 0, err
    page = Page(out.read_text(encoding="utf-8"))
    trials = page.table(f"Sweep {sweep_id}: objective")
    stored = {n: (s, v, r) for n, s, v, r in Store(store).query(
        "SELECT number, status, value, run_id FROM trials WHERE sweep_id = ?", [sweep_id])[1]}
    shown = {int(r[column(trials, "trial")][0]): (r[column(trials, "status")][0], r[column(trials, "value")][0],
                                                   r[column(trials, "run")][0]) for r in trials["rows"]}
    assert shown == {n: (s, f"{v:.4f}", r) for n, (s, v, r) in stored.items()}
    assert "best" in trials["rows"][0][column(trials, "value")][1]  # best first, marked
    best = max(stored.items(), key=lambda kv: (kv[1][1], -kv[0]))
    assert f"best: trial {best[0]} ({best[1][1]:.4f})" in out.read_text(encoding="utf-8")
    rescoring = page.table("Re-scoring")
    assert {r[0][0].removesuffix(" (objective)") for r in rescoring["rows"]} >= {"best_eval_accuracy", "last"}
    (image,) = page.images
    with Image.open(io.BytesIO(base64.b64decode(image.split(",", 1)[1]))) as im:
        im.verify()
    assert not [u for u in page.urls if not u[2].startswith("data:")]


def test_plot_by_sweep_name_writes_a_png_with_one_slice_per_param(swept, tmp_path):
    folder, store, sweep_id = swept
    out = tmp_path / "sweep.png"
    code, _, err = cli("plot", "swp", "--store", store, "--out", out)
    assert code == 0, err
    assert f"wrote {out}" in err
    width, height = png_size(out)
    assert width > 800 and height > 600

    data = load(Store(store).open_read(), find_sweep(Store(store).open_read(), "swp"))
    assert [p.name for p in data.params] == PARAMS
    assert [p.categorical for p in data.params] == [False, False, True]
    assert [t["status"] for t in data.trials] == ["finished"] * 3
    fig = figure(data)
    try:
        assert len(fig.axes) == 1 + len(PARAMS)
        objective, gamma, lr, batch = fig.axes
        assert "best_eval_accuracy" in objective.get_title() and objective.get_legend() is not None
        assert [ax.get_title() for ax in (gamma, lr, batch)] == PARAMS
        # 3e-3 .. 3e-2 is one decade at most: a linear axis
        assert lr.get_xscale() == "linear" and gamma.get_xscale() == "linear"
        assert [t.get_text() for t in batch.get_xticklabels()] == ["8", "16"]
        assert_legends_outside_axes(fig)
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)


def test_default_path_is_the_sweep_id_beside_the_store_and_the_id_and_flag_work(swept):
    folder, store, sweep_id = swept
    default = folder / f"{sweep_id}.png"
    try:
        code, _, err = cli("plot", sweep_id, "--store", store)
        assert code == 0, err
        png_size(default)
        default.unlink()
        code, _, err = cli("plot", "--sweep", "--store", store)  # the latest sweep
        assert code == 0, err
        png_size(default)
    finally:
        default.unlink(missing_ok=True)


def test_a_run_reference_still_draws_the_run(swept, tmp_path):
    folder, store, sweep_id = swept
    run_id, = Store(store).query("SELECT run_id FROM trials WHERE sweep_id = ? AND number = 0", [sweep_id])[1][0]
    out = tmp_path / "run.png"
    code, _, err = cli("plot", "swp-t0", "--store", store, "--out", out)  # a trial's run, by name
    assert code == 0, err
    png_size(out)
    default = folder / f"{run_id}.png"
    try:
        code, _, err = cli("plot", run_id, "--store", store)
        assert code == 0, err
        assert default.is_file()
    finally:
        default.unlink(missing_ok=True)


def test_a_name_of_a_run_and_a_sweep_is_the_run_unless_sweep_is_given(swept, tmp_path):
    folder, store, sweep_id = swept
    copy = tmp_path / "results.duckdb"
    shutil.copy2(store, copy)
    con = duckdb.connect(str(copy))
    con.execute("UPDATE runs SET name = 'swp' WHERE name = 'swp-t0'")  # a plain run of the sweep's name
    con.close()
    from runner.analysis.plot import target

    reader = Store(copy).open_read()
    kind, record, aside = target(reader, "swp")
    assert kind == "run" and record.name == "swp" and f"sweep {sweep_id}" in aside and "--sweep" in aside
    kind, record, aside = target(reader, "swp", sweep=True)
    assert kind == "sweep" and record["sweep_id"] == sweep_id and not aside
    assert target(reader, None)[0] == "run"  # no argument: the latest run, as before sweeps
    code, _, err = cli("plot", "swp", "--store", copy, "--out", tmp_path / "run.png")
    assert code == 0 and "--sweep" in err, err


@pytest.mark.parametrize("args, named", [
    (["nope"], ["RUN|SWEEP 'nope'", "sweeps: swp-"]),
    (["nope", "--sweep"], ["SWEEP 'nope'"]),
    (["swp-t0", "--sweep"], ["SWEEP 'swp-t0'"]),  # a run's name is no sweep
    (["swp", "--out", "{tmp}/missing/plot.png"], ["--out", "does not exist"]),
    (["swp", "--out", "{tmp}/plot.txt"], ["--out", ".png"]),
    (["swp", "--out", "{tmp}"], ["--out", "is a folder"]),
    (["swp", "--out", "{store}"], ["--out", "results.duckdb"]),
])
def test_bad_arguments_exit_2_naming_them_and_write_nothing(swept, tmp_path, args, named):
    folder, store, sweep_id = swept
    before = sorted(p.name for p in folder.iterdir()), store.read_bytes()
    args = [a.format(tmp=tmp_path, store=store) for a in args]
    code, out, err = cli("plot", *args, "--store", store)
    assert code == 2, err
    for n in named:
        assert n in err, err
    assert "Traceback" not in err and all(line.strip() for line in err.strip().splitlines())  # one paragraph
    assert (sorted(p.name for p in folder.iterdir()), store.read_bytes()) == before
    assert not list(tmp_path.rglob("*.png")) and not (tmp_path / "plot.txt").exists()


def test_no_store_and_a_store_without_sweeps_exit_2(swept, tmp_path):
    folder, store, sweep_id = swept
    code, _, err = cli("plot", "swp", "--store", tmp_path / "results.duckdb")
    assert code == 2 and "results.duckdb" in err and not (tmp_path / "results.duckdb").exists()
    empty = tmp_path / "empty.duckdb"
    Store(empty).open()  # a store with no runs and no sweeps
    code, _, err = cli("plot", "--sweep", "--store", empty)
    assert code == 2 and "no sweep" in err, err
    assert not list(tmp_path.glob("*.png"))


def test_a_sweep_with_no_finished_trial_exits_2(swept, tmp_path):
    folder, store, sweep_id = swept
    copy = tmp_path / "results.duckdb"
    shutil.copy2(store, copy)
    con = duckdb.connect(str(copy))
    con.execute("UPDATE trials SET status = CASE WHEN number = 0 THEN 'pruned' ELSE 'failed' END, value = NULL")
    con.close()
    before = copy.read_bytes()
    code, _, err = cli("plot", "swp", "--store", copy)
    assert code == 2, err
    assert f"SWEEP '{sweep_id}'" in err and "no trial has finished" in err and "1 pruned" in err, err
    assert copy.read_bytes() == before and not list(tmp_path.glob("*.png"))


# -- figures of made-up trials ----------------------------------------------------------------------


def made_up(direction="maximize", statuses=("finished", "pruned", "finished", "failed", "finished", "running")):
    space = {"train.learning_rate": {"low": 1e-5, "high": 1e-1, "log": True, "choices": None},
             "loss.gamma": {"low": 0.5, "high": 4.0, "log": False, "choices": None},
             "train.lr_scheduler": {"choices": ["constant", "linear"]}}
    sweep = {"sweep_id": "m-sweep-00000000", "name": "m", "spec": json.dumps({"sweep": {"space": space}}),
             "objective": "best_eval_log_loss", "objective_member": None, "direction": direction}
    lrs = [1e-5, 3e-4, 1e-3, 2e-2, 1e-1, 5e-3]
    values = [0.9, None, 0.7, None, 0.8, None]
    trials = [{"number": i, "status": s, "value": values[i], "run_id": f"r{i}",
               "params": {"train.learning_rate": lrs[i], "loss.gamma": 0.5 + i / 2,
                          "train.lr_scheduler": ["constant", "linear"][i % 2], "extra.flag": i % 2 == 0}}
              for i, s in enumerate(statuses)]
    return SweepPlot(sweep, trials, params_of(sweep, trials))


def assert_legends_outside_axes(fig):
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    assert legends
    for legend in legends:
        box = legend.get_window_extent(renderer)
        for ax in fig.axes:
            assert not box.overlaps(ax.get_window_extent(renderer)), f"a legend covers the axes {ax.get_title()!r}"


def test_made_up_trials_pruned_and_failed_marks_log_axis_and_categories():
    import matplotlib.pyplot as plt

    data = made_up()
    assert [p.name for p in data.params] == ["train.learning_rate", "loss.gamma", "train.lr_scheduler", "extra.flag"]
    assert [p.categorical for p in data.params] == [False, False, True, True]  # a bool is a category
    assert data.best["number"] == 0
    fig = figure(data)
    try:
        assert len(fig.axes) == 5
        objective, lr, gamma, sched, flag = fig.axes
        assert lr.get_xscale() == "log" and gamma.get_xscale() == "linear"
        assert [t.get_text() for t in sched.get_xticklabels()] == ["constant", "linear"]
        assert [t.get_text() for t in flag.get_xticklabels()] == ["true", "false"]
        labels = objective.get_legend_handles_labels()[1]
        assert {"finished", "pruned (no value)", "failed (no value)", "best so far (maximize)"} <= set(labels)
        # the marks without a value lie below every value
        lo = min(t["value"] for t in data.finished)
        for line in objective.get_lines():
            if line.get_label() in ("pruned (no value)", "failed (no value)"):
                assert all(y < lo for y in line.get_ydata())
        assert "6 trials (3 finished, 1 pruned, 1 failed, 1 running)" in fig._suptitle.get_text()
        assert_legends_outside_axes(fig)
    finally:
        plt.close(fig)


def test_best_so_far_follows_the_direction():
    assert best_so_far(made_up("maximize")) == ([0, 2, 4], [0.9, 0.9, 0.9])
    assert best_so_far(made_up("minimize")) == ([0, 2, 4], [0.9, 0.7, 0.7])
    assert made_up("minimize").best["number"] == 2


@pytest.mark.parametrize("values, log", [
    ([1e-5, 1e-1], True), ([1e-3, 1e-2, 5e-2], False), ([0.0, 1e-5, 1e-1], False), ([-1e-5, 1e-1], False),
    ([1.0, 100.0], False), ([1.0, 101.0], True), ([], False),
])
def test_log_axis_when_all_positive_and_more_than_two_decades(values, log):
    assert is_log(values) is log


def test_a_param_without_a_distribution_is_categorical_when_a_value_is_not_a_number():
    trials = [{"number": 0, "params": {"x": 1, "y": "a"}}, {"number": 1, "params": {"x": 2.5, "y": 3}}]
    params = params_of({"spec": "{}"}, trials)
    assert params == [Param("x", False), Param("y", True, ["a", 3])]
