"""Read commands compute and never write; every table fits a terminal of 100 columns and reads at 80;
per-class truth (`compare --classes`, the `confusion` view, plot's panel) against hand-made numbers.

One real sweep (two trials, each a run of two tiny scratch members, two epochs, SWA over the last one,
equal ensemble weights) and a `runner predict` of labelled texts, made once for the module. The store
is then made to lack what the read commands want: the picks of two strategies (as for strategies
registered after training) are deleted, and apply stored only the spec's own ensemble. Every read
command must leave the file's bytes, mtime and side files as they were.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import shutil
import sys
from collections import Counter
from pathlib import Path

import duckdb
import numpy as np
import pytest
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text
from typer.testing import CliRunner

from runner.analysis.compare import compare, default_strategies, render
from runner.analysis.plot import load_run
from runner.analysis.report import members_table, swa_table, weights_table
from runner.analysis.summary import summary_table
from runner.cli import app
from runner.plugins.registry import load_registry
from runner.store import Store

SPEC = """
name = "rd"
seed = 4

[data]
source = "synthetic"
valid = 0.25
test = 0.25
max_length = 32

[data.options]
size = 320

[train]
epochs = 2
batch_size = 16
learning_rate = 1e-2
lr_scheduler = "constant"

[loss]
name = "focal"
gamma = 2.0

[swa]
k = 1

[ensemble]
weights = "equal"

[sweep]
trials = 2
sampler = "random"

[sweep.space]
"loss.gamma" = { low = 0.5, high = 3.0 }

[[members]]
name = "bert-a"
backbone = "scratch"
seed = 1
options = { architecture = "bert", hidden_size = 32, layers = 1, heads = 2, vocab_size = 600 }

[[members]]
name = "roberta-b"
backbone = "scratch"
seed = 2
options = { architecture = "roberta", hidden_size = 32, layers = 1, heads = 2, vocab_size = 600 }
"""
REGISTRY = load_registry(None)
DROPPED = ("last", "best_eval_f1_macro_smoothed")  # picks deleted: strategies "registered after training"


def cli(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def state(path: Path):
    """What a read command must not change: the bytes' checksum and mtime of the store, its side files."""
    side = sorted(p.name for p in path.parent.glob(path.name + ".*"))
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns, side


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """(folder, store, run ids of the two trials, the predicted input's split)."""
    folder = tmp_path_factory.mktemp("read_commands")
    (folder / "spec.toml").write_text(SPEC)
    store = folder / "results.duckdb"
    code, out, err = cli("apply", folder / "spec.toml", "--store", store)
    assert code == 0, err + out
    st = Store(store)
    ids = [r[0] for r in st.query("SELECT run_id FROM runs ORDER BY started_at")[1]]
    assert len(ids) == 2
    run = st.run(ids[0])
    names = list(run.label_names)
    texts = st.query("SELECT text, label FROM examples WHERE dataset_id = ? AND split = 'test' ORDER BY idx LIMIT 60",
                     [run.dataset_id])[1]
    with (folder / "input.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows([t, names[label]] for t, label in texts)
    code, out, err = cli("predict", ids[0], folder / "input.csv", "--store", store, "--output", folder / "p.csv")
    assert code == 0, err
    (split,) = [s for s in st.prediction_splits(ids[0]) if s.startswith("input-")]
    con = duckdb.connect(str(store))  # what a run trained before those strategies existed holds
    con.execute("DELETE FROM selections WHERE list_contains(?, strategy)", [list(DROPPED)])
    con.close()
    return folder, store, ids, split


def test_read_commands_leave_the_store_byte_identical(swept, tmp_path):
    folder, store, ids, split = swept
    st = Store(store).open_read()
    # the store lacks what the commands want: picks of two strategies, the ensembles of every other strategy
    assert not st.query("SELECT count(*) FROM selections WHERE list_contains(?, strategy)", [list(DROPPED)])[1][0][0]
    assert all(st.ensemble_strategies(i, "ensemble") == {"best_eval_accuracy"} for i in ids)
    before = state(store)
    commands = [
        ["runs"], ["runs", "--format", "json"], ["sql", "SELECT count(*) FROM confusion"],
        ["compare", ids[0]], ["compare", ids[0], "--all"], ["compare", ids[0], "--format", "json"],
        ["compare", ids[0], "--all", "--format", "markdown"], ["compare", ids[0], "--format", "csv"],
        ["compare", ids[0], "--columns", "eval_objective,eval_log_loss,test_accuracy,shares"],
        ["compare", ids[0], "--classes"], ["compare", ids[0], "--classes", "--all", "--format", "json"],
        ["compare", ids[0], "--classes", "--split", split], ["compare", ids[0], ids[1]],
        ["compare", ids[0], ids[1], "--strategies", "last,best_eval_f1_macro_smoothed", "--format", "json"],
        ["plot", ids[0], "--out", tmp_path / "run.png"], ["plot", "rd", "--sweep", "--out", tmp_path / "sweep.png"],
        ["report", ids[0], "--out", tmp_path / "run.html"], ["report", "rd", "--out", tmp_path / "sweep.html"],
        ["sweep"], ["sweep", "--format", "json"],
    ]
    for args in commands:
        code, out, err = cli(*args, "--store", store)
        assert code == 0, (args, err)
        assert state(store) == before, args
    # and what they computed is there: the dropped strategies' rows and their ensembles
    code, out, _ = cli("compare", ids[0], "--format", "json", "--store", store)
    rows = json.loads(out)
    for s in DROPPED:
        assert [(r["kind"], r["member"]) for r in rows if r["strategy"] == s] == [
            ("member", "bert-a"), ("member", "roberta-b"), ("ensemble", "ensemble")]
    assert state(store) == before


def test_compare_shows_the_default_strategies_and_with_all_every_one(swept):
    _, store, ids, _ = swept
    code, out, err = cli("compare", ids[0], "--store", store, "--format", "markdown")
    assert code == 0, err
    labels = [line.split("|")[1].strip().strip("*") for line in out.splitlines()
              if line.startswith("|") and set(line.split("|")[2:-1]) <= {" ", "  "}]
    shown = {n.removesuffix(" (spec)") for label in labels for n in label.split(" = ")}
    assert shown == {"best_eval_accuracy", "swa", "last", "best_eval_loss"}
    assert any("best_eval_accuracy (spec)" in label for label in labels)
    code, out, err = cli("compare", ids[0], "--store", store, "--all", "--format", "json")
    assert {r["strategy"] for r in json.loads(out)} == {s.name for s in REGISTRY.selections()}
    # blocks merge only strategies that pick the same checkpoints of every member
    picks = {}
    for r in json.loads(out):
        picks.setdefault(r["strategy"], {})[r["member"]] = r["checkpoint"] if r["kind"] == "member" else None
    code, md, _ = cli("compare", ids[0], "--store", store, "--all", "--format", "markdown")
    for line in md.splitlines():
        cells = line.split("|")[1:-1]
        if line.startswith("|") and cells and all(not c.strip() for c in cells[1:]):
            names = [n.removesuffix(" (spec)") for n in cells[0].strip().strip("*").split(" = ")]
            assert all(picks[n] == picks[names[0]] for n in names), names
    # --columns chooses, and an unknown column is exit 2 naming it
    code, out, _ = cli("compare", ids[0], "--store", store, "--columns", "eval_objective,eval_log_loss", "--format",
                       "json")
    rec = json.loads(out)[0]
    assert {"eval_objective", "eval_log_loss"} <= set(rec) and "test_accuracy" not in rec
    member = Store(store).checkpoint_metrics(ids[0])[("member", rec["member"], rec["checkpoint"])]
    assert rec["eval_objective"] == member["eval_loss"] and rec["eval_log_loss"] == member["eval_log_loss"]
    assert rec["eval_objective"] != rec["eval_log_loss"]  # the focal objective is not the NLL
    code, _, err = cli("compare", ids[0], "--store", store, "--columns", "eval_loss")
    assert code == 2 and "--columns" in err and "eval_objective" in err


# -- per-class truth --------------------------------------------------------------------------------


def by_hand(store: Path, run_id: str, kind: str, member: str, checkpoint: str, split: str, k: int) -> np.ndarray:
    """The confusion matrix from the raw predictions and examples, one row at a time."""
    m = np.zeros((k, k), dtype=int)
    for pred, label in Store(store).query(
            "SELECT p.pred, e.label FROM predictions p JOIN runs r USING (run_id) JOIN examples e ON "
            "e.dataset_id = r.dataset_id AND e.split = p.split AND e.idx = p.idx WHERE p.run_id = ? AND p.kind = ? "
            "AND p.member = ? AND p.checkpoint = ? AND p.split = ?", [run_id, kind, member, checkpoint, split])[1]:
        m[label, pred] += 1
    return m


def test_compare_classes_and_the_confusion_view_match_counts_by_hand(swept):
    _, store, ids, split = swept
    run = Store(store).run(ids[0])
    k = run.num_labels
    code, out, err = cli("compare", ids[0], "--classes", "--format", "json", "--store", store)
    assert code == 0, err
    records = json.loads(out)
    shown = {(r["kind"], r["member"], r["checkpoint"]) for r in records}
    assert shown == {("member", m.name, m.selected_checkpoint) for m in run.members} | {
        ("ensemble", "ensemble", "best_eval_accuracy")}
    metrics = Store(store).checkpoint_metrics(ids[0])
    for kind, member, checkpoint in shown:
        mine = [r for r in records if (r["kind"], r["member"], r["checkpoint"]) == (kind, member, checkpoint)]
        expected = by_hand(store, ids[0], kind, member, checkpoint, "test", k)
        got = np.array([[r[f"pred_{n}"] for n in run.label_names] for r in mine])
        np.testing.assert_array_equal(got, expected)
        for i, r in enumerate(mine):
            tp, predicted, support = expected[i, i], expected[:, i].sum(), expected[i].sum()
            assert r["support"] == support and r["predicted"] == predicted
            assert r["precision"] == pytest.approx(tp / predicted if predicted else 0.0)
            assert r["recall"] == pytest.approx(tp / support if support else 0.0)
            assert r["f1"] == pytest.approx(2 * tp / (support + predicted) if support + predicted else 0.0)
        # macro F1 of the per-class rows is the stored test_f1_macro
        assert np.mean([r["f1"] for r in mine]) == pytest.approx(metrics[(kind, member, checkpoint)]["test_f1_macro"])
        view = dict(((a, b), n) for a, b, n in Store(store).query(
            "SELECT label, pred, n FROM confusion WHERE run_id = ? AND kind = ? AND member = ? AND checkpoint = ? "
            "AND split = 'test'", [ids[0], kind, member, checkpoint])[1])
        assert {key: int(v) for key, v in np.ndenumerate(expected) if v} == view
    names = Store(store).query("SELECT DISTINCT label, label_name FROM confusion WHERE run_id = ?", [ids[0]])[1]
    assert {label: name for label, name in names} == dict(enumerate(run.label_names))
    # a prediction of new labelled texts: its own split, in the view and in --classes
    code, out, err = cli("compare", ids[0], "--classes", "--split", split, "--format", "json", "--store", store)
    assert code == 0, err
    records = json.loads(out)
    assert {r["split"] for r in records} == {split} and sum(r["support"] for r in records) == 3 * 60
    ens = [r for r in records if r["kind"] == "ensemble"]
    np.testing.assert_array_equal(np.array([[r[f"pred_{n}"] for n in run.label_names] for r in ens]),
                                  by_hand(store, ids[0], "ensemble", "ensemble", "best_eval_accuracy", split, k))
    code, _, err = cli("compare", ids[0], "--classes", "--split", "input-nope", "--store", store)
    assert code == 2 and "input-nope" in err and split in err


def test_the_plot_panel_counts_the_spec_ensemble(swept):
    _, store, ids, _ = swept
    st = Store(store).open_read()
    run = st.run(ids[0])
    data = load_run(st, run, REGISTRY)
    whose, counts = data.confusion
    assert whose == "ensemble (best_eval_accuracy)"
    np.testing.assert_array_equal(np.array(counts), by_hand(store, ids[0], "ensemble", "ensemble",
                                                            "best_eval_accuracy", "test", run.num_labels))


# -- every table fits ------------------------------------------------------------------------------

NUMERIC = re.compile(r"^[-+±\d.,%\[\]() ]*\d[-+±\d.,%\[\]() ]*$")


def tables_in(renderable) -> list[Table]:
    if isinstance(renderable, Table):
        return [renderable]
    if isinstance(renderable, Group):
        return [t for r in renderable.renderables for t in tables_in(r)]
    if isinstance(renderable, (list, tuple)):
        return [t for r in renderable for t in tables_in(r)]
    return []


def numeric_cells(table: Table) -> Counter:
    """The numbers a table holds: each line of each cell that reads as a number."""
    found = Counter()
    for column in table.columns:
        for cell in column.cells:
            text = cell.plain if isinstance(cell, Text) else Text.from_markup(str(cell)).plain
            for line in text.splitlines():
                if NUMERIC.match(line.strip()):
                    found[line.strip()] += 1
    return found


def check_fits(table: Table, width: int) -> int:
    """Render at `width`: no line wider, every numeric cell whole (never cut, wrapped or shortened).
    Returns the table's widest line."""
    console = Console(width=width, record=True, file=io.StringIO(), color_system=None)
    console.print(table)
    text = console.export_text()
    lines = text.splitlines()
    widest = max((len(line.rstrip()) for line in lines), default=0)
    assert widest <= width, (width, text)
    for number, n in numeric_cells(table).items():
        got = len(re.findall(r"(?<!\S)" + re.escape(number) + r"(?!\S)", text))
        assert got >= n, (width, number, n, got, text)
    return widest


class Recorder(Console):
    """The CLI's console, keeping what each command printed."""

    def __init__(self):
        super().__init__(width=160, file=io.StringIO())
        self.seen: list = []

    def print(self, *objects, **kwargs):
        self.seen.extend(objects)
        super().print(*objects, **kwargs)


def test_every_table_fits_100_columns_and_reads_at_80(swept, tmp_path, monkeypatch):
    """Every table the read commands print (and the tables of report, apply's summary, calibrate,
    a run with replicas), rendered at 100 and 80 columns with no numeric cell cut; the widest at the
    default (100) is printed for the record."""
    folder, store, ids, split = swept
    copy = tmp_path / "results.duckdb"  # calibrate and replicas write: a copy
    shutil.copy(store, copy)
    assert cli("calibrate", ids[0], "--store", copy)[0] == 0
    for i, run_id in enumerate(ids):
        Store(copy).set_repeat(run_id, "grp", i)
    recorder = Recorder()
    monkeypatch.setattr(sys.modules["runner.cli.app"], "out", recorder)
    commands = [
        ["runs"], ["compare", ids[0]], ["compare", ids[0], "--all"], ["compare", ids[0], "--classes"],
        ["compare", ids[0], "--classes", "--split", split], ["compare", ids[0], ids[1]],
        ["compare", ids[0], "--columns", ",".join(["eval_accuracy", "eval_f1_macro", "eval_log_loss",
                                                   "eval_objective", "test_accuracy", "test_f1_macro",
                                                   "test_log_loss", "tvd", "shares"])],
        ["sweep"], ["sql", "SELECT run_id, member, checkpoint, split, count(*) AS n FROM predictions GROUP BY ALL"],
    ]
    tables = []
    for args in commands:
        recorder.seen.clear()
        code, _, err = cli(*args, "--store", copy)
        assert code == 0, (args, err)
        found = tables_in(recorder.seen)
        assert found, args
        tables += [(" ".join(args), t) for t in found]
    st = Store(copy).open_read()
    run = st.run(ids[0])
    tables += [("report", t) for t in (summary_table(st, run), members_table(run), swa_table(st, run),
                                       weights_table(st, run))]
    tables += [("replica", t) for t in tables_in(render(compare(st, run, REGISTRY, default_strategies(run, REGISTRY))))]
    assert any(t.title and "calibrations" in str(t.title) for _, t in tables)
    assert any(t.title and "seeds" in str(t.title) for _, t in tables)
    widest = {}
    for what, table in tables:
        # every column compare has, chosen with --columns: 100 columns only (the default is what reads at 80)
        for width in (100,) if "--columns" in what else (100, 80):
            try:
                widest[(what, str(table.title)[:40], width)] = check_fits(table, width)
            except AssertionError as e:
                raise AssertionError(f"{what}: {table.title}") from e
    top = max(widest.items(), key=lambda kv: kv[1] if kv[0][2] == 100 else 0)
    print(f"widest table at 100 columns: {top[1]} ({top[0][0]}: {top[0][1]})")
    print(f"widest table at 80 columns: {max(v for k, v in widest.items() if k[2] == 80)}")
