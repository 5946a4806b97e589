"""`runner predict` as a user reads it: its output columns (runner's, then the input's own, --keep),
a .txt file, standard input and --text, on the small real run tests/predict_helpers.py trains once.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from predict_helpers import cli, digest, probs_of, read_output, trained
from typer.testing import CliRunner

from runner.store import Store

TEXTS = ["a truly great film, I loved the cast", "dull and slow, not great", "awful, a total disaster"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return trained(tmp_path_factory)


def _rows(path):
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_runner_columns_come_first_and_the_inputs_own_follow_as_written(run, tmp_path):
    src = tmp_path / "new.csv"
    with src.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "text", "label", "source"])
        for i, t in enumerate(TEXTS):
            w.writerow([f"00{i}", t, run.labels[i], "shop; web" if i else ""])
    out = tmp_path / "p.csv"
    code, _, err = cli("predict", run.run_id, src, "--store", run.store, "--no-store", "-o", out)
    assert code == 0, err
    rows = _rows(out)
    assert list(rows[0]) == ["pred_label", "pred_id", *[f"p_{n}" for n in run.labels], "id", "text", "label",
                             "source"]
    assert [r["id"] for r in rows] == ["000", "001", "002"]  # text cells as written, not read as numbers
    assert [r["text"] for r in rows] == TEXTS and [r["label"] for r in rows] == run.labels[:3]
    assert [r["source"] for r in rows] == ["", "shop; web", "shop; web"]
    labels, cols = read_output(out)
    probs = probs_of(cols, run.labels)
    assert [int(r["pred_id"]) for r in rows] == probs.argmax(axis=1).tolist()
    assert labels == [run.labels[int(r["pred_id"])] for r in rows]

    kept = tmp_path / "kept.csv"
    assert cli("predict", run.run_id, src, "--store", run.store, "--no-store", "-o", kept, "--keep", "id")[0] == 0
    assert list(_rows(kept)[0])[-2:] == [f"p_{run.labels[-1]}", "id"]
    none = tmp_path / "none.csv"
    assert cli("predict", run.run_id, src, "--store", run.store, "--no-store", "-o", none, "--keep", "")[0] == 0
    assert list(_rows(none)[0])[-1] == f"p_{run.labels[-1]}"
    # the same output again: an earlier prediction is the one file --output replaces
    assert cli("predict", run.run_id, src, "--store", run.store, "--no-store", "-o", none)[0] == 0
    assert list(_rows(none)[0])[-1] == "source"


def test_keep_naming_a_missing_column_is_exit_2_before_anything_is_written(run, tmp_path):
    src = tmp_path / "new.csv"
    src.write_text("id,text\n1,a great film\n")
    before = digest(run.store)
    code, _, err = cli("predict", run.run_id, src, "--store", run.store, "-o", tmp_path / "p.csv", "--keep", "id,ID")
    assert code == 2 and "--keep" in err and "'ID'" in err and "id, text" in err, err
    assert digest(run.store) == before and not (tmp_path / "p.csv").exists()


def test_an_input_column_named_as_a_runner_column_is_carried_under_input(run, tmp_path):
    src = tmp_path / "again.jsonl"
    src.write_text("".join(json.dumps({"text": t, "pred_label": "mine", "n": i}) + "\n" for i, t in enumerate(TEXTS)))
    out = tmp_path / "p.parquet"
    assert cli("predict", run.run_id, src, "--store", run.store, "--no-store", "-o", out)[0] == 0
    table = pq.read_table(out)
    assert table.column_names[0] == "pred_label" and table.column("input.pred_label").to_pylist() == ["mine"] * 3
    assert table.column("n").to_pylist() == [0, 1, 2]  # jsonl numbers stay numbers in parquet


def test_a_txt_file_is_one_text_per_line_and_stores_as_the_same_texts_in_a_csv(run, tmp_path):
    txt = tmp_path / "reviews.txt"
    txt.write_bytes(("\ufeff" + TEXTS[0] + "\r\n\n" + TEXTS[1] + "\n   \n" + TEXTS[2]).encode("utf-8"))
    out = tmp_path / "p.csv"
    store = tmp_path / "results.duckdb"
    (tmp_path / "runs").symlink_to(run.folder / "runs")  # the checkpoints, beside this store copy
    store.write_bytes(run.store.read_bytes())
    # other tests of this module may have stored inputs in the shared run's store first (these same texts too)
    query = "SELECT split, source FROM inputs WHERE run_id = ? AND source = ?"
    code, _, err = cli("predict", run.run_id, txt, "--store", store, "-o", out)
    assert code == 0, err
    rows = _rows(out)
    assert [r["line"] for r in rows] == ["1", "3", "5"] and [r["text"] for r in rows] == TEXTS
    stored = Store(store).query_dicts(query, [run.run_id, "txt"])
    assert [r["source"] for r in stored] == ["txt"]
    csv_in = tmp_path / "same.csv"
    csv_in.write_text("text\n" + "".join(f'"{t}"\n' for t in TEXTS))
    assert cli("predict", run.run_id, csv_in, "--store", store, "-o", tmp_path / "q.csv")[0] == 0
    # the same texts are the same split, whatever file held them: predicting them again replaced it
    assert Store(store).query_dicts(query, [run.run_id, "txt"]) == []
    again = [r for r in Store(store).query_dicts(query, [run.run_id, "csv"]) if r["split"] == stored[0]["split"]]
    assert again == [{"split": stored[0]["split"], "source": "csv"}]
    assert np.allclose(probs_of(read_output(out)[1], run.labels),
                       probs_of(read_output(tmp_path / "q.csv")[1], run.labels), atol=1e-6)


def test_standard_input_and_text_print_what_a_file_would_give(run, tmp_path):
    from runner.cli import app

    before = digest(run.store)
    txt = tmp_path / "reviews.txt"
    txt.write_text("\n".join(TEXTS) + "\n")
    assert cli("predict", run.run_id, txt, "--store", run.store, "--no-store", "-o", tmp_path / "f.csv")[0] == 0
    expected = probs_of(read_output(tmp_path / "f.csv")[1], run.labels)

    result = CliRunner().invoke(app, ["predict", run.run_id, "-", "--store", str(run.store), "--no-store"],
                                input="\n".join(TEXTS) + "\n")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].endswith(",line,text") and len(lines) == 4
    piped = tmp_path / "piped.csv"
    piped.write_text(result.stdout)
    assert np.allclose(probs_of(read_output(piped)[1], run.labels), expected, atol=1e-6)

    as_csv = CliRunner().invoke(app, ["predict", run.run_id, "-", "--source", "csv", "--store", str(run.store), "--no-store",
                                      "--format", "jsonl"], input="text\n" + "".join(f'"{t}"\n' for t in TEXTS))
    assert as_csv.exit_code == 0, as_csv.stderr
    got = [json.loads(line) for line in as_csv.stdout.splitlines()]
    assert [g["text"] for g in got] == TEXTS and list(got[0])[:2] == ["pred_label", "pred_id"]

    code, stdout, err = cli("predict", run.run_id, "--text", TEXTS[0], "--text", TEXTS[2], "--store", run.store)
    assert code == 0, err
    assert TEXTS[0] in stdout and TEXTS[2] in stdout and "nothing stored" in err
    best = run.labels[int(expected[0].argmax())]
    assert stdout.splitlines()[1].split()[0] == best  # the most probable class first, under its text
    assert digest(run.store) == before  # --no-store and --text never write the store


@pytest.mark.parametrize("args, message", [
    (["--text", "a film", "INPUT.csv"], "not both"),
    ([], "INPUT: missing"),
    (["--text", "  "], "the text is empty"),
])
def test_input_and_text_are_one_or_the_other(run, args, message):
    text_first = [a for a in args if a != "INPUT.csv"]
    given = ["INPUT.csv"] if "INPUT.csv" in args else []
    code, _, err = cli("predict", run.run_id, *given, *text_first, "--store", run.store)
    assert code == 2 and message in err, err


def test_an_empty_standard_input_is_exit_2(run):
    from runner.cli import app

    result = CliRunner().invoke(app, ["predict", run.run_id, "-", "--store", str(run.store)], input="")
    assert result.exit_code == 2 and "standard input" in result.stderr, result.stderr
