"""`runner predict`: a run applied to a file of texts, checked against what training stored.

The exactness check: the run's own test split, written out as a CSV a user would have, comes back
through `runner predict` with the probabilities each epoch stored (max abs difference <= 1e-4) for
every member's selected checkpoint, every SWA checkpoint and the ensembles over both. Then the store
(the input's own split, replaced when predicted again), the output formats, bad inputs (exit 2,
nothing written) and `--calibrated` with a calibration stored through the store's own method.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow.parquet as pq
import pytest
from predict_helpers import cli, digest, probs_of, read_output, split_csv, store_copy, stored_probs, trained

from runner.posthoc.calibration import apply as calibrate
from runner.store import Store

TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return trained(tmp_path_factory)


@pytest.fixture(scope="module")
def test_csv(run, tmp_path_factory):
    return split_csv(run, "test", tmp_path_factory.mktemp("inputs") / "test.csv")


def checkpoints(run, strategy: str) -> dict[str, str]:
    st = Store(run.store)
    if strategy == "selected":
        return {m.name: m.selected_checkpoint for m in st.run(run.run_id).members}
    return st.selections(run.run_id, strategy)


@pytest.mark.parametrize("strategy", ["selected", "swa"])
def test_predicting_the_test_split_reproduces_the_stored_probabilities(run, test_csv, tmp_path, strategy):
    out = tmp_path / "pred.csv"
    code, stdout, err = cli("predict", run.run_id, test_csv, "--strategy", strategy, "--members", "--output", out,
                            "--store", run.store)
    assert code == 0, err
    labels, cols = read_output(out)
    for member, checkpoint in checkpoints(run, strategy).items():
        expected = stored_probs(run.store, run.run_id, "member", member, checkpoint, "test")
        got = probs_of(cols, run.labels, f"{member}.")
        assert np.abs(got - expected).max() <= TOLERANCE, (member, checkpoint)
    name = Store(run.store).run(run.run_id).selected_strategy if strategy == "selected" else strategy
    # the ensemble: stored at apply for the spec's strategy; for swa, built by predict and stored as compare does
    expected = stored_probs(run.store, run.run_id, "ensemble", "ensemble", name, "test")
    got = probs_of(cols, run.labels)
    assert len(expected) == len(got) and np.abs(got - expected).max() <= TOLERANCE
    assert labels == [run.labels[i] for i in got.argmax(axis=1)]
    assert "Against the labels" in stdout and " acc " in stdout and " F1 " in stdout  # labelled input: the summary
    stored_acc = Store(run.store).query("SELECT value FROM metrics WHERE run_id = ? AND kind = 'ensemble' AND "
                                        "checkpoint = ? AND split = 'test' AND name = 'accuracy'",
                                        [run.run_id, name])[1][0][0]
    assert f"{stored_acc:.4f}" in stdout


def test_predictions_are_stored_as_the_inputs_own_split_and_replaced(run, test_csv, tmp_path):
    st = Store(run.store)
    for _ in range(2):  # predicting the same input again replaces, never duplicates
        code, _, err = cli("predict", run.run_id, test_csv, "--store", run.store, "--output", tmp_path / "p.csv")
        assert code == 0, err
    inputs = st.query_dicts("SELECT * FROM inputs WHERE run_id = ?", [run.run_id])
    assert len({(r["split"], r["strategy"]) for r in inputs}) == len(inputs)  # one row per input and strategy
    row = next(r for r in inputs if r["strategy"] == st.run(run.run_id).selected_strategy and r["rows"] == 80)
    split = row["split"]
    assert split == f"input-{row['input_hash']}" and row["has_labels"] and not row["calibrated"]
    n_test = st.query("SELECT count(*) FROM examples WHERE dataset_id = ? AND split = 'test'", [run.dataset_id])[1][0][0]
    assert st.query("SELECT count(*) FROM examples WHERE dataset_id = ? AND split = ?",
                    [run.dataset_id, split])[1][0][0] == n_test
    selected = {m.name: m.selected_checkpoint for m in st.run(run.run_id).members}
    counts = dict(st.query("SELECT kind || ':' || member || ':' || checkpoint, count(*) FROM predictions "
                           "WHERE run_id = ? AND split = ? GROUP BY ALL", [run.run_id, split])[1])
    wanted = {f"member:{m}:{c}": n_test for m, c in selected.items()}
    wanted[f"ensemble:ensemble:{row['strategy']}"] = n_test
    assert {k: v for k, v in counts.items() if k in wanted} == wanted  # once each, however often predicted
    # another strategy's rows of the same input (the swa exactness test above) are kept, not replaced
    code, _, err = cli("predict", run.run_id, test_csv, "--strategy", "swa", "--store", run.store, "--output",
                       tmp_path / "swa.csv")
    assert code == 0, err
    after = dict(st.query("SELECT kind || ':' || member || ':' || checkpoint, count(*) FROM predictions "
                          "WHERE run_id = ? AND split = ? GROUP BY ALL", [run.run_id, split])[1])
    assert {k: v for k, v in after.items() if k in wanted} == wanted
    assert after.get("member:a:swa") == n_test and after.get("ensemble:ensemble:swa") == n_test
    assert {r["strategy"] for r in st.query_dicts("SELECT strategy FROM inputs WHERE run_id = ? AND split = ?",
                                                  [run.run_id, split])} >= {row["strategy"], "swa"}
    # SQL compares it with test: same texts, same probabilities
    worst = st.query(
        "SELECT max(list_max(list_transform(list_zip(i.probs, t.probs), lambda x: abs(x[1] - x[2])))) "
        "FROM predictions i JOIN predictions t USING (run_id, kind, member, checkpoint, idx) "
        "WHERE i.run_id = ? AND i.split = ? AND t.split = 'test'", [run.run_id, split])[1][0][0]
    assert worst <= TOLERANCE


def test_no_store_writes_nothing_and_csv_goes_to_stdout(run, test_csv):
    before = digest(run.store)
    code, stdout, err = cli("predict", run.run_id, test_csv, "--store", run.store, "--no-store")
    assert code == 0, err
    assert digest(run.store) == before
    lines = stdout.splitlines()
    # runner's columns, then the input's own (its text and its true label) as they were
    assert lines[0] == "pred_label,pred_id," + ",".join(f"p_{name}" for name in run.labels) + ",text,label"
    assert len(lines) == 81 and "Against the labels" in err  # the summary goes to stderr when the csv is on stdout


def test_unlabelled_jsonl_with_its_own_text_column_and_parquet_output(run, tmp_path):
    texts = ["a truly great film, I loved the cast", "dull and slow, not great", "awful, a total disaster"]
    src = tmp_path / "new.jsonl"
    src.write_text("".join(json.dumps({"id": i, "review": t}) + "\n" for i, t in enumerate(texts)))
    out = tmp_path / "out.parquet"
    code, stdout, err = cli("predict", run.run_id, src, "--text-column", "review", "--members", "--output", out,
                            "--store", run.store)
    assert code == 0, err
    table = pq.read_table(out)
    assert table.column_names[:2] == ["pred_label", "pred_id"] and table.num_rows == 3
    assert table.column_names[-2:] == ["id", "review"] and table.column("id").to_pylist() == [0, 1, 2]
    assert "a.p_weak_negative" in table.column_names and "f1_macro" not in stdout + err
    row = Store(run.store).query_dicts("SELECT * FROM inputs WHERE run_id = ? AND rows = 3", [run.run_id])[0]
    assert not row["has_labels"] and row["source"] == "jsonl"
    assert Store(run.store).query("SELECT count(*) FROM examples WHERE split = ? AND label IS NULL",
                                  [row["split"]])[1][0][0] == 3


def test_the_python_engine_gives_what_the_cli_writes(run, test_csv, tmp_path):
    from runner.plugins.registry import load_registry
    from runner.use.choice import choose
    from runner.use.predict import Predictor

    st = Store(run.store)
    registry = load_registry(None)
    predictor = Predictor.load(choose(st, st.run(run.run_id), registry), registry=registry, batch_size=7)
    out = tmp_path / "p.csv"
    assert cli("predict", run.run_id, test_csv, "--no-store", "-o", out, "--store", run.store)[0] == 0
    labels, cols = read_output(out)
    with test_csv.open(newline="") as f:
        texts = [r["text"] for r in csv.DictReader(f)]
    probs = predictor.predict_proba(texts)  # another batch size: the same probabilities
    assert np.abs(probs - probs_of(cols, run.labels)).max() <= TOLERANCE
    assert predictor.predict(texts) == labels
    tokenizations = {m.tokenizer_key for m in predictor.loaded}
    assert len(tokenizations) == 2  # a and c share their tokenizer; b (RoBERTa) has its own


def _calibrated_store(run) -> Path:
    """A copy of the store with calibrations for the selected ensemble and every member checkpoint."""
    path = store_copy(run, "calibrated.duckdb")
    st = Store(path)
    name = st.run(run.run_id).selected_strategy
    rows = [SimpleNamespace(run_id=run.run_id, kind="ensemble", member="ensemble", checkpoint=name,
                            method="temperature+bias", temperature=1.7, bias=[0.3, -0.4, 0.2, -0.1])]
    for member, checkpoint in checkpoints(run, "selected").items():
        rows.append(SimpleNamespace(run_id=run.run_id, kind="member", member=member, checkpoint=checkpoint,
                                    method="temperature", temperature=0.8, bias=None))
    for r in rows:
        r.valid_log_loss_before, r.valid_log_loss_after, r.metric_rows = 1.0, 0.9, lambda: []
    st.log_calibrations(rows)
    return path


def test_calibrated_applies_the_stored_calibration(run, test_csv, tmp_path):
    path = _calibrated_store(run)
    raw, cal = tmp_path / "raw.csv", tmp_path / "cal.csv"
    assert cli("predict", run.run_id, test_csv, "--store", path, "--members", "-o", raw, "--no-store")[0] == 0
    code, _, err = cli("predict", run.run_id, test_csv, "--store", path, "--members", "-o", cal, "--calibrated")
    assert code == 0, err
    _, r = read_output(raw)
    _, c = read_output(cal)
    expected = calibrate(probs_of(r, run.labels), 1.7, np.array([0.3, -0.4, 0.2, -0.1]))
    assert np.abs(probs_of(c, run.labels) - expected).max() <= TOLERANCE
    for member in ("a", "b", "c"):
        expected = calibrate(probs_of(r, run.labels, f"{member}."), 0.8)
        assert np.abs(probs_of(c, run.labels, f"{member}.") - expected).max() <= TOLERANCE
    st = Store(path)
    (split, flag), = st.query("SELECT split, calibrated FROM inputs WHERE run_id = ? AND rows = 80 AND strategy = ?",
                              [run.run_id, st.run(run.run_id).selected_strategy])[1]
    assert flag  # the file was calibrated; the store keeps the models' own probabilities, as for every split
    stored = stored_probs(path, run.run_id, "ensemble", "ensemble", st.run(run.run_id).selected_strategy, split)
    assert np.abs(stored - probs_of(r, run.labels)).max() <= TOLERANCE


# -- bad input: exit 2, one paragraph naming what is wrong, nothing written ---------------------------


def _bad_cases(run, tmp: Path) -> list[tuple[str, list, list[str]]]:
    empty = tmp / "empty.csv"
    empty.write_text("")
    header_only = tmp / "header.csv"
    header_only.write_text("text,label\n")
    no_text = tmp / "no_text.csv"
    no_text.write_text("review,label\ngood film,weak_positive\n")
    odd = tmp / "texts.xml"
    odd.write_text("text\nhello\n")
    unknown_label = tmp / "unknown_label.csv"
    unknown_label.write_text("text,label\ngood film,great\n")
    some_labels = tmp / "some_labels.csv"
    some_labels.write_text("text,label\ngood film,weak_positive\nbad film,\n")
    good = split_csv(run, "test", tmp / "good.csv")
    not_export = tmp / "folder"
    not_export.mkdir()
    r = run.run_id
    return [
        ("missing input", [r, tmp / "nope.csv"], ["nope.csv", "not found"]),
        ("empty input", [r, empty], ["empty.csv", "empty"]),
        ("header only", [r, header_only], ["header.csv", "no rows"]),
        ("missing text column", [r, no_text], ["no_text.csv", "'text'", "--text-column"]),
        ("unknown extension", [r, odd], ["texts.xml", "--source"]),
        ("unknown label", [r, unknown_label], ["unknown_label.csv", "'great'"]),
        ("some labels missing", [r, some_labels], ["some_labels.csv", "row 2"]),
        ("unknown strategy", [r, good, "--strategy", "best_eval_nothing"], ["--strategy", "best_eval_nothing"]),
        ("strategy not on disk", [r, good, "--strategy", "last"], ["--strategy 'last'", "not kept on disk",
                                                                   "selected, swa"]),
        ("epoch not on disk", [r, good, "--strategy", "epoch-2"], ["epoch-2", "not kept on disk"]),
        ("unknown run", ["no-such-run", good], ["no-such-run"]),
        ("not an export", [not_export, good], ["folder", "manifest.json"]),
        ("parquet to stdout", [r, good, "--format", "parquet"], ["--format parquet", "--output"]),
        ("output is a folder", [r, good, "--output", not_export], ["--output", "is a folder"]),
        ("not calibrated", [r, good, "--calibrated"], ["--calibrated", "runner calibrate"]),
        # an existing file is replaced only when it is an earlier prediction: here the user's data file
        ("output is someone's file", [r, good, "--output", some_labels], ["--output", "some_labels.csv",
                                                                         "not one `runner predict` wrote"]),
        ("output is the store", [r, good, "--output", run.store], ["--output", "the store"]),
    ]


def test_bad_input_is_exit_2_before_anything_is_written(run, tmp_path):
    before = digest(run.store)
    files = set(tmp_path.rglob("*"))
    for what, args, message in _bad_cases(run, tmp_path):
        files = set(tmp_path.rglob("*"))
        code, stdout, err = cli("predict", *args, "--store", run.store)
        context = f"{what}: exit {code}\n{err}{stdout}"
        assert code == 2, context
        assert err.startswith("error: ") and "Traceback" not in err, context
        assert all(line.strip() for line in err.strip().splitlines()), "not one paragraph: " + context
        assert all(m in err for m in message), context
        assert digest(run.store) == before, context
        assert set(tmp_path.rglob("*")) == files, context


def test_a_run_that_is_not_finished_is_refused(run, test_csv):
    path = store_copy(run, "failed.duckdb")
    with Store(path).transaction() as con:
        con.execute("UPDATE runs SET status = 'failed'")
        con.execute("UPDATE members SET status = 'failed', error = 'loss became NaN' WHERE member = 'b'")
    before = digest(path)
    code, _, err = cli("predict", run.run_id, test_csv, "--store", path)
    assert code == 2 and "failed, not finished" in err and "b (loss became NaN)" in err, err
    assert digest(path) == before


def test_output_through_a_symlink_is_refused_and_a_pipe_is_written(run, test_csv, tmp_path):
    """A symbolic link is refused (exit 2, its target unchanged: runner never writes through a link), and
    what is not a regular file (a pipe, a device like /dev/null) is written to, never replaced."""
    import os
    import threading

    target = tmp_path / "real.csv"
    target.write_text("row,label,p_x\n0,x,1\n")  # an earlier prediction: the one kind of file replaced
    link = tmp_path / "link.csv"
    link.symlink_to(target)
    code, _, err = cli("predict", run.run_id, test_csv, "--no-store", "-o", link, "--store", run.store)
    assert code == 2 and "symbolic link" in err and str(link) in err, err
    assert link.is_symlink() and target.read_text() == "row,label,p_x\n0,x,1\n"
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()))
    reader.start()
    code, _, err = cli("predict", run.run_id, test_csv, "--no-store", "-o", fifo, "--store", run.store)
    reader.join(timeout=60)
    assert code == 0, err
    assert got and got[0].startswith("pred_label,pred_id,") and len(got[0].splitlines()) == 81
    assert fifo.exists() and not fifo.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.csv", "pipe", "real.csv"]
