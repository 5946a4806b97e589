"""The DuckDB store: migrations (from empty, from the first schema, refusing a newer one), idempotent
checkpoint writes, FLOAT[] probabilities, the `epochs` and `selections` views, `runner sql`'s guard,
and that the file is free between operations. Every test uses a real DuckDB file under tmp_path.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime

import duckdb
import numpy as np
import pytest

from runner.errors import StoreError
from runner.store import Store
from runner.store.migrations import MIGRATIONS

TABLES = {"runs", "members", "examples", "metrics", "checkpoints", "selections", "ensemble_weights", "inputs",
          "calibrations", "sweeps", "trials", "trial_params", "adaptations", "adapt_losses", "token_stats",
          "_migrations"}
VIEWS = {"epochs", "confusion", "predictions"}


def tables_and_views(path) -> tuple[set[str], set[str]]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        views = {r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
    finally:
        con.close()
    return tables, views


def fetch(path, sql, params=None):
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def log_epoch(store, epoch, valid=None, member="m", run_id="r1", checkpoint=None, preds=()):
    """Store one epoch's metrics, given as {name: value} for the valid split."""
    rows = [("valid", name, value) for name, value in (valid or {}).items()]
    store.log_checkpoint(run_id, member, checkpoint or f"epoch-{epoch}", epoch, rows, list(preds))


@pytest.fixture
def store(tmp_path):
    return Store(tmp_path / "results.duckdb", lock_timeout=2).open()


# ---------------------------------------------------------------------------- migrations


def test_new_store_has_every_table_view_and_migration(tmp_path):
    path = tmp_path / "sub" / "results.duckdb"
    Store(path).open()
    tables, views = tables_and_views(path)
    assert TABLES <= tables
    assert VIEWS <= views
    applied = [r[0] for r in fetch(path, "SELECT name FROM _migrations ORDER BY applied_at, rowid")]
    assert applied == [m.__name__ for m in MIGRATIONS]
    assert applied[0] == "m001_initial"


def test_opening_twice_applies_nothing_twice(tmp_path):
    path = tmp_path / "results.duckdb"
    Store(path).open()
    Store(path).open()
    assert fetch(path, "SELECT count(*) FROM _migrations") == [(len(MIGRATIONS),)]
    assert Store(path).pending_migrations() == []


def test_migrating_from_the_first_schema_keeps_old_rows(tmp_path):
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    MIGRATIONS[0](con)
    con.execute("CREATE TABLE _migrations (name VARCHAR NOT NULL, applied_at TIMESTAMP NOT NULL)")
    con.execute("INSERT INTO _migrations VALUES (?, ?)", [MIGRATIONS[0].__name__, datetime(2024, 1, 1)])
    con.execute(
        "INSERT INTO runs VALUES ('old-run', 'old', '{}', 'abc', 'd1', 'finished', ?, ?)",
        [datetime(2024, 1, 1), datetime(2024, 1, 2)],
    )
    con.execute("INSERT INTO members VALUES ('old-run', 'm', 'scratch', NULL, 1, 'finished')")
    con.execute(
        """
        INSERT INTO metrics VALUES
            ('old-run', 'm', 'epoch-1', 1, 'train', 'loss', 1.5),
            ('old-run', 'm', 'epoch-1', 1, 'valid', 'loss', 1.2),
            ('old-run', 'm', 'epoch-1', 1, 'valid', 'accuracy', 0.5),
            ('old-run', 'm', 'epoch-2', 2, 'valid', 'loss', 1.0),
            ('old-run', 'm', 'epoch-2', 2, 'valid', 'accuracy', 0.6),
            ('old-run', 'm', 'epoch-2', 2, 'test', 'accuracy', 0.55)
        """
    )
    con.close()
    assert Store(path).pending_migrations() == [m.__name__ for m in MIGRATIONS[1:]]

    Store(path).open()

    tables, views = tables_and_views(path)
    assert TABLES <= tables and VIEWS <= views
    assert [r[0] for r in fetch(path, "SELECT name FROM _migrations ORDER BY applied_at")] == [
        m.__name__ for m in MIGRATIONS
    ]
    assert fetch(path, "SELECT run_id, status, label_names, error FROM runs") == [("old-run", "finished", None, None)]
    assert fetch(path, "SELECT member, selected_checkpoint FROM members") == [("m", None)]
    epochs = fetch(path, "SELECT epoch, train_loss, eval_loss, eval_accuracy, test_accuracy FROM epochs ORDER BY epoch")
    assert epochs == [(1, 1.5, 1.2, 0.5, None), (2, None, 1.0, 0.6, 0.55)]


def test_store_from_a_newer_runner_is_refused_and_left_alone(tmp_path):
    path = tmp_path / "results.duckdb"
    Store(path).open()
    con = duckdb.connect(str(path))
    con.execute("INSERT INTO _migrations VALUES ('m999_from_the_future', now()::TIMESTAMP)")
    con.close()
    before = path.read_bytes()
    with pytest.raises(StoreError, match="newer runner") as info:
        Store(path).open()
    assert "m999_from_the_future" in str(info.value)
    assert path.read_bytes() == before
    with pytest.raises(StoreError, match="newer runner"):
        Store(path).pending_migrations()
    assert path.read_bytes() == before


def test_file_that_is_not_duckdb(tmp_path):
    path = tmp_path / "results.duckdb"
    path.write_text("run_id,name\nr1,hello\n" * 100)
    before = path.read_bytes()
    with pytest.raises(StoreError) as info:
        Store(path).open()
    assert str(path) in str(info.value) and "not a DuckDB database file" in str(info.value)
    assert path.read_bytes() == before


def test_duckdb_file_of_another_program_is_not_migrated(tmp_path, run_cli):
    path = tmp_path / "theirs.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE runs (x INTEGER)")
    con.close()
    before = path.read_bytes()
    with pytest.raises(StoreError, match="not a runner store"):
        Store(path).open()
    code, out, err = run_cli("runs", "--store", path)
    assert code == 2 and "not a runner store" in err and "Traceback" not in out + err
    assert path.read_bytes() == before


def test_open_without_create_needs_a_file(tmp_path):
    with pytest.raises(StoreError, match="no store here"):
        Store(tmp_path / "missing.duckdb").open(create=False)
    assert not (tmp_path / "missing.duckdb").exists()


# ---------------------------------------------------------------------------- writes


def test_log_checkpoint_twice_keeps_one_copy(store):
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], dtype=np.float32)
    preds = [("valid", np.array([0, 1]), probs)]
    log_epoch(store, 1, {"loss": 0.9, "accuracy": 0.5}, preds=preds)
    log_epoch(store, 1, {"loss": 0.8, "accuracy": 0.75}, preds=preds)
    assert fetch(store.path, "SELECT name, value FROM metrics ORDER BY name") == [("accuracy", 0.75), ("loss", 0.8)]
    assert fetch(store.path, "SELECT count(*) FROM predictions") == [(2,)]
    # another checkpoint of the same member is not touched
    log_epoch(store, 2, {"loss": 0.7})
    assert fetch(store.path, "SELECT count(*) FROM metrics") == [(3,)]
    assert fetch(store.path, "SELECT count(*) FROM predictions") == [(2,)]


def test_predictions_round_trip_as_float_lists(store):
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(4), size=5).astype(np.float32)
    idx = np.array([4, 3, 2, 1, 0])
    log_epoch(store, 3, {"loss": 1.0}, preds=[("test", idx, probs)])
    rows = fetch(store.path, "SELECT idx, pred, probs, typeof(probs), epoch, split FROM predictions ORDER BY idx")
    assert [r[0] for r in rows] == [0, 1, 2, 3, 4]
    for i, pred, stored, typ, epoch, split in rows:
        k = int(np.flatnonzero(idx == i)[0])
        assert typ == "FLOAT[]"
        assert (epoch, split) == (3, "test")
        np.testing.assert_array_equal(np.asarray(stored, dtype=np.float32), probs[k])
        assert pred == int(probs[k].argmax())


def test_examples_are_stored_once_per_dataset(store):
    from runner.data.prepare import Split

    splits = {"train": Split(["a", "b", "c"], np.array([0, 1, 0])), "test": Split(["d"], None)}
    assert store.put_examples("ds1", splits) == 4
    assert store.put_examples("ds1", splits) == 0
    assert fetch(store.path, "SELECT split, idx, text, label FROM examples ORDER BY split, idx") == [
        ("test", 0, "d", None), ("train", 0, "a", 0), ("train", 1, "b", 1), ("train", 2, "c", 0),
    ]


def test_store_does_not_hold_the_file_between_operations(store):
    log_epoch(store, 1, {"loss": 0.5})
    con = duckdb.connect(str(store.path))  # read-write: fails if anything still holds the file
    try:
        con.execute("INSERT INTO metrics BY NAME SELECT 'r1' AS run_id, 'member' AS kind, 'm' AS member, "
                    "'epoch-2' AS checkpoint, 2 AS epoch, 'valid' AS split, 'loss' AS name, 0.4 AS value")
        assert con.execute("SELECT count(*) FROM metrics").fetchall() == [(2,)]
    finally:
        con.close()
    assert store.stored_epochs("r1", "m") == [1, 2]


# ---------------------------------------------------------------------------- runner sql


@pytest.fixture
def filled(store):
    log_epoch(store, 1, {"loss": 0.9, "accuracy": 0.5})
    log_epoch(store, 2, {"loss": 0.7, "accuracy": 0.6})
    return store.path


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO metrics VALUES ('r', 'm', 'epoch-9', 9, 'valid', 'loss', 0.0)",
        "DELETE FROM metrics",
        "CREATE TABLE t (x INTEGER)",
        "ATTACH '{tmp}/other.duckdb' AS other",
        "COPY metrics TO '{tmp}/out.csv'",
        "INSTALL httpfs",
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT 1; DROP TABLE metrics",
        "WITH gone AS (DELETE FROM metrics RETURNING *) SELECT count(*) FROM gone",
        "WITH x AS (SELECT 1) INSERT INTO metrics VALUES ('r', 'm', 'epoch-9', 9, 'valid', 'loss', 0.0)",
    ],
    ids=["insert", "delete", "create", "attach", "copy", "install", "read_csv", "smuggled-drop", "delete-in-a-cte",
         "insert-after-a-cte"],
)
def test_sql_refuses_what_writes_or_reads_outside(filled, run_cli, sql, tmp_path):
    before = filled.read_bytes()
    code, out, err = run_cli("sql", sql.format(tmp=tmp_path), "--store", filled)
    assert code == 2, (out, err)
    assert "Traceback" not in out + err
    assert "refused" in err and "--allow-write" in err
    assert "root:" not in out  # nothing of /etc/passwd
    assert filled.read_bytes() == before
    assert not (tmp_path / "out.csv").exists() and not (tmp_path / "other.duckdb").exists()


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT epoch, eval_accuracy FROM epochs ORDER BY epoch",
        "WITH e AS (SELECT * FROM epochs) SELECT count(*) AS n FROM e",
        "DESCRIBE metrics",
        "SHOW TABLES",
    ],
)
def test_sql_allows_queries(filled, run_cli, sql):
    before = filled.read_bytes()
    code, out, err = run_cli("sql", sql, "--store", filled, "--format", "json")
    assert code == 0, err
    rows = json.loads(out)
    assert rows
    assert filled.read_bytes() == before


def test_sql_csv_and_json_output_parse(filled, run_cli):
    query = "SELECT epoch, eval_loss, eval_accuracy FROM epochs ORDER BY epoch"
    code, out, err = run_cli("sql", query, "--store", filled, "--format", "csv")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(int(r["epoch"]), float(r["eval_accuracy"])) for r in rows] == [(1, 0.5), (2, 0.6)]
    code, out, err = run_cli("sql", query, "--store", filled, "--format", "json")
    assert code == 0, err
    assert json.loads(out) == [
        {"epoch": 1, "eval_loss": 0.9, "eval_accuracy": 0.5},
        {"epoch": 2, "eval_loss": 0.7, "eval_accuracy": 0.6},
    ]


def test_sql_table_output(filled, run_cli):
    code, out, err = run_cli("sql", "SELECT name, value FROM metrics WHERE epoch = 2 ORDER BY name", "--store", filled)
    assert code == 0, err
    assert "accuracy" in out and "0.6000" in out and "0.7000" in out


def test_sql_allow_write_does_write(filled, run_cli):
    code, out, err = run_cli("sql", "DELETE FROM metrics WHERE epoch = 1", "--store", filled, "--allow-write")
    assert code == 0, err
    assert fetch(filled, "SELECT DISTINCT epoch FROM metrics") == [(2,)]


def test_sql_bad_query_and_missing_store(filled, run_cli, tmp_path):
    code, out, err = run_cli("sql", "SELEC nonsense", "--store", filled)
    assert code == 2 and "does not parse" in err and "Traceback" not in err
    code, out, err = run_cli("sql", "SELECT * FROM no_such_table", "--store", filled)
    assert code == 2 and "no_such_table" in err
    code, out, err = run_cli("sql", "SELECT 1", "--store", tmp_path / "nope.duckdb")
    assert code == 2 and "no store here" in err
    assert not (tmp_path / "nope.duckdb").exists()


def test_the_confusion_view_counts_true_by_predicted_labels(tmp_path):
    """m009's view: one row per (true, predicted) pair that occurs, with the run's label names, for the
    labelled examples only, any split (a `runner predict` input split too)."""
    path = tmp_path / "results.duckdb"
    store = Store(path).open()
    store.create_run("r", "n", {"name": "n"}, "h" * 64, "d", ["neg", "pos"])
    with store.transaction() as con:
        con.execute("INSERT INTO examples VALUES ('d', 'test', 0, 'a', 0), ('d', 'test', 1, 'b', 0), "
                    "('d', 'test', 2, 'c', 1), ('d', 'input-x', 0, 'd', NULL)")
    store.log_checkpoint("r", "m", "epoch-1", 1, [("test", "accuracy", 2 / 3)], [
        ("test", np.array([0, 1, 2]), np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7]], dtype=np.float32)),
        ("input-x", np.array([0]), np.array([[0.4, 0.6]], dtype=np.float32))])
    rows = fetch(path, "SELECT split, label, pred, label_name, pred_name, n FROM confusion ORDER BY label, pred")
    assert rows == [("test", 0, 0, "neg", "neg", 1), ("test", 0, 1, "neg", "pos", 1), ("test", 1, 1, "pos", "pos", 1)]


def test_a_store_inside_another_stores_runs_folder_is_refused(tmp_path, run_cli):
    """runs/ (and adapted/, tokenized/) beside a store is runner's to fill and clean: a member's folder is
    deleted when it restarts, so a store given a path in there is exit 2, before anything is written."""
    from runner.store import Store

    Store(tmp_path / "results.duckdb").open()
    (tmp_path / "runs" / "run-1" / "a").mkdir(parents=True)
    for inner in (tmp_path / "runs" / "x.duckdb", tmp_path / "runs" / "run-1" / "a" / "x.duckdb"):
        code, _, err = run_cli("runs", "--store", inner)
        assert code == 2 and "--store" in err and str(tmp_path / "runs") in err, err
        assert not inner.exists()
    (tmp_path / "elsewhere" / "runs").mkdir(parents=True)  # a folder called runs with no store beside it is fine
    Store(tmp_path / "elsewhere" / "runs" / "x.duckdb").open()
