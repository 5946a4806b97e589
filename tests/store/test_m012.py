"""Migration m012 (a `checkpoints` table, probabilities in fixed-size arrays, `predictions` a view) on a
store written by runner before it (tests/fixtures/store_before_m012, exported as text): every
table and view shows the same rows after the migration as before, the read commands work on it, and
it takes new writes, a run with another number of classes included."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import numpy as np
import pytest
from store_dumps import imported

from runner.store import Store

# what a user reads: the tables the migration leaves as they were, and the views (predictions now one)
READ = ["runs", "members", "examples", "metrics", "predictions", "selections", "epochs", "confusion",
        "ensemble_weights", "inputs", "calibrations", "sweeps", "trials", "trial_params", "token_stats"]


def rows_and_types(path: Path) -> dict[str, tuple[list, list]]:
    """name -> (column names and types, every row in order) of each table and view in READ."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        out = {}
        for name in READ:
            cur = con.execute(f"SELECT * FROM {name} ORDER BY ALL")
            rows = cur.fetchall()
            types = con.execute(f"SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM {name})").fetchall()
            out[name] = (types, rows)
        return out
    finally:
        con.close()


@pytest.fixture(scope="module")
def before_after(tmp_path_factory) -> tuple[dict, dict, Path]:
    folder = tmp_path_factory.mktemp("m012")
    path = imported("store_before_m012", folder / "results.duckdb")
    shutil.copy(path, folder / "unmigrated.duckdb")
    before = rows_and_types(path)
    store = Store(path).open()  # migrates in place
    assert store.pending_migrations() == []
    store.close()
    return before, rows_and_types(path), path


def test_every_table_and_view_shows_the_same_rows_after_the_migration(before_after):
    before, after, path = before_after
    assert len(before["predictions"][1]) == 969  # every split of every checkpoint, ensembles and the input's
    for name in READ:
        assert after[name][0] == before[name][0], f"{name}: columns or types changed"
        assert after[name][1] == before[name][1], f"{name}: rows changed"


def test_the_predictions_sit_in_fixed_size_arrays_keyed_by_checkpoint(before_after):
    _, _, path = before_after
    con = duckdb.connect(str(path), read_only=True)
    try:
        kinds = dict(con.execute("SELECT table_name, table_type FROM information_schema.tables").fetchall())
        assert kinds["predictions"] == "VIEW" and kinds["checkpoints"] == "BASE TABLE"
        assert con.execute("SELECT data_type FROM information_schema.columns WHERE table_name = 'predictions_4' "
                           "AND column_name = 'probs'").fetchone()[0] == "FLOAT[4]"
        # one checkpoints row per (run, kind, member, checkpoint, split), its rows stored in key order
        n, distinct = con.execute("SELECT count(*), count(DISTINCT (run_id, kind, member, checkpoint, split)) "
                                  "FROM checkpoints").fetchone()
        assert n == distinct > 0
        keys = [r[0] for r in con.execute("SELECT ckpt FROM predictions_4").fetchall()]
        assert keys == sorted(keys)
    finally:
        con.close()


def test_read_commands_work_on_the_migrated_store_and_on_an_unmigrated_one(before_after, run_cli, tmp_path):
    _, _, path = before_after
    unmigrated = path.parent / "unmigrated.duckdb"
    stamp = unmigrated.read_bytes()
    for store in (path, unmigrated):
        code, out, err = run_cli("compare", "pre-m012", "--store", store, "--format", "csv")
        assert code == 0, err
        assert "swa" in out and "ensemble" in out
        code, out, err = run_cli("sql", "SELECT count(*) AS n FROM predictions", "--store", store, "--format", "csv")
        assert code == 0, err
        assert out.splitlines()[1] == "969"
        code, _, err = run_cli("report", "pre-m012", "--store", store, "--out", tmp_path / f"{store.stem}.html")
        assert code == 0, err
        assert (tmp_path / f"{store.stem}.html").stat().st_size > 1000
    assert unmigrated.read_bytes() == stamp  # a read command reads an older store through a copy in memory


def test_the_migrated_store_takes_new_checkpoints_with_another_number_of_classes(before_after, tmp_path):
    _, _, path = before_after
    copy = tmp_path / "results.duckdb"
    shutil.copy(path, copy)
    store = Store(copy).open()
    probs = np.array([[0.25, 0.75], [0.9, 0.1], [0.5, 0.5]], dtype=np.float32)
    store.log_checkpoint("binary-run", "m", "epoch-1", 1, [("valid", "accuracy", 1.0)],
                         [("valid", np.arange(3, dtype=np.int32), probs)])
    rows = store.query("SELECT idx, pred, probs FROM predictions WHERE run_id = 'binary-run' ORDER BY idx")[1]
    assert [(i, p) for i, p, _ in rows] == [(0, 1), (1, 0), (2, 0)]
    assert np.allclose([r[2] for r in rows], probs)
    assert store.query("SELECT count(*) FROM predictions")[1][0][0] == 969 + 3
    # written again, a checkpoint's rows are replaced, never duplicated
    store.log_checkpoint("binary-run", "m", "epoch-1", 1, [("valid", "accuracy", 1.0)],
                         [("valid", np.arange(3, dtype=np.int32), probs[::-1].copy())])
    assert store.query("SELECT count(*) FROM predictions WHERE run_id = 'binary-run'")[1][0][0] == 3
    with store.probabilities() as reader:
        idx, got = reader.checkpoint("binary-run", "member", "m", "epoch-1", "valid")
    assert idx.tolist() == [0, 1, 2] and np.array_equal(got, probs[::-1])
