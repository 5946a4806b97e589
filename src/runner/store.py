"""The results store: one DuckDB file that owns every SQL statement runner writes.

The file is held only while a write is under way: each write opens a connection, does its work in
one transaction and closes, so `runner sql`, `runner compare` or a notebook can read the store while
`runner apply` trains. DuckDB lets one process write or many read; when another process holds the
file, the store waits and retries with a bounded backoff before it gives up with a clear message.
Rows are inserted in batches through Arrow.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import re
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Sequence

import duckdb
import numpy as np
import pyarrow as pa

from .errors import StoreError
from .migrations import MIGRATIONS

LOCK_TIMEOUT_S = float(os.environ.get("RUNNER_STORE_LOCK_TIMEOUT", "120"))
_LOCK_PATTERNS = ("Could not set lock", "Conflicting lock", "database is locked")


def now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _is_lock_error(e: Exception) -> bool:
    return any(p in str(e) for p in _LOCK_PATTERNS)


_instance: duckdb.DuckDBPyConnection | None = None
_instance_lock = threading.Lock()
_aliases = itertools.count()


def _shared_instance() -> duckdb.DuckDBPyConnection:
    """The process's in-memory DuckDB instance that store files are attached to (see Store.connect)."""
    global _instance
    with _instance_lock:
        if _instance is None:
            _instance = duckdb.connect(":memory:")
            # Checkpoint at each write's commit instead of logging it to the WAL and checkpointing at
            # DETACH: the rows are written once instead of twice (same end state, same durability).
            _instance.execute("SET checkpoint_threshold = '0KB'")
        return _instance


def _detach(con: duckdb.DuckDBPyConnection, alias: str) -> None:
    """Detach a store (checkpointing it and releasing its lock), ending a transaction left open first."""
    try:
        con.execute("USE memory")
        con.execute(f"DETACH {alias}")
    except duckdb.Error:
        con.execute("ROLLBACK")
        con.execute("USE memory")
        con.execute(f"DETACH {alias}")


class Store:
    """A results store at `path`. Creating the object touches nothing; `open()` creates/migrates."""

    def __init__(self, path: str | Path, lock_timeout: float | None = None):
        self.path = Path(path)
        self.lock_timeout = LOCK_TIMEOUT_S if lock_timeout is None else lock_timeout

    # -- connections --------------------------------------------------------------------------

    @contextmanager
    def connect(self, write: bool = True, external_access: bool = True) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection held for the block only; waits (bounded) while another process holds the file.

        The file is ATTACHed (and made the default catalog with USE) to one in-memory DuckDB instance
        that the process keeps, then DETACHed at the end of the block, which checkpoints it and
        releases its lock just as closing a connection does. Starting a DuckDB instance costs some
        20 ms (it builds its catalog of built-in functions); an ATTACH costs about 1 ms, and a
        `compare` or an `apply` opens the store dozens of times. A connection that must not reach
        outside the store (`external_access=False`, for `runner sql`) gets an instance of its own,
        since that setting is per instance.
        """
        deadline = time.monotonic() + self.lock_timeout
        delay = 0.05
        while True:
            try:
                con, alias = self._open(write, external_access)
                break
            except duckdb.Error as e:
                if _is_lock_error(e) and time.monotonic() < deadline:
                    time.sleep(delay * (0.5 + random.random()))
                    delay = min(delay * 2, 2.0)
                    continue
                raise self._explain(e) from None
        try:
            yield con
        finally:
            try:
                if alias is not None:
                    _detach(con, alias)
            finally:
                con.close()

    def _open(self, write: bool, external_access: bool) -> tuple[duckdb.DuckDBPyConnection, str | None]:
        if not external_access:
            config = {"enable_external_access": False}
            return duckdb.connect(str(self.path), read_only=not write, config=config), None
        con = _shared_instance().cursor()
        alias = f"runner_store_{next(_aliases)}"
        path = str(self.path).replace("'", "''")
        try:
            con.execute(f"ATTACH '{path}' AS {alias}" + ("" if write else " (READ_ONLY)"))
            con.execute(f"USE {alias}")
        except BaseException:
            con.close()
            raise
        return con, alias

    def _explain(self, e: Exception) -> StoreError:
        msg = str(e)
        if _is_lock_error(e):
            pid = re.search(r"PID (\d+)", msg)
            who = f"process {pid.group(1)}" if pid else "another process"
            return StoreError(
                f"{self.path}: the store is held by {who} and did not become free within "
                f"{self.lock_timeout:.0f} s; close that connection (a notebook or DuckDB shell holding the "
                "file) and try again. Nothing was lost: the rows waiting to be written are kept in memory "
                "until the write fails, and a re-run of `runner apply` resumes."
            )
        if "not a valid DuckDB database file" in msg or "not a DuckDB" in msg or "Serialization" in msg:
            return StoreError(f"{self.path}: not a DuckDB database file (it may belong to another program)")
        return StoreError(f"{self.path}: cannot open the store: {msg.splitlines()[0]}")

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self.connect(write=True) as con:
            con.begin()
            try:
                yield con
            except BaseException:
                con.rollback()
                raise
            con.commit()

    # -- schema -------------------------------------------------------------------------------

    def exists(self) -> bool:
        return self.path.is_file()

    def open(self, create: bool = True) -> "Store":
        """Create the file if asked and apply any migrations it lacks; refuse a newer schema."""
        if not self.exists() and not create:
            raise StoreError(f"{self.path}: no store here yet; `runner apply SPEC` creates it")
        if self.exists() and self.pending_migrations() == [] :
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.transaction() as con:
            self._migrate(con)
        return self

    def _applied(self, con) -> list[str]:
        con.execute("CREATE TABLE IF NOT EXISTS _migrations (name VARCHAR NOT NULL, applied_at TIMESTAMP NOT NULL)")
        return [r[0] for r in con.execute("SELECT name FROM _migrations").fetchall()]

    def pending_migrations(self) -> list[str]:
        """Names not yet applied (read-only peek; raises StoreError for a store from a newer runner)."""
        with self.connect(write=False) as con:
            tables = {r[0] for r in con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database()").fetchall()}
            applied = (
                [r[0] for r in con.execute("SELECT name FROM _migrations").fetchall()] if "_migrations" in tables else []
            )
        if tables and "_migrations" not in tables:  # someone else's database: never add tables to it
            raise StoreError(
                f"{self.path}: a DuckDB database, but not a runner store (it has tables such as "
                f"{sorted(tables)[0]!r} and no _migrations); give --store a new file. The file was not changed."
            )
        self._check_known(applied)
        return [m.__name__ for m in MIGRATIONS if m.__name__ not in applied]

    def _check_known(self, applied: Sequence[str]) -> None:
        known = {m.__name__ for m in MIGRATIONS}
        unknown = [a for a in applied if a not in known]
        if unknown:
            raise StoreError(
                f"{self.path}: the store was written by a newer runner (schema {unknown[-1]}, this runner knows "
                f"up to {MIGRATIONS[-1].__name__}); upgrade runner to use it. The store was not changed."
            )

    def _migrate(self, con) -> None:
        applied = self._applied(con)
        self._check_known(applied)
        for m in MIGRATIONS:
            if m.__name__ not in applied:
                m(con)
                con.execute("INSERT INTO _migrations VALUES (?, ?)", [m.__name__, now()])

    # -- runs and members ---------------------------------------------------------------------

    def latest_run_for(self, spec_hash: str) -> dict | None:
        if not self.exists():
            return None
        rows = self.query_dicts(
            "SELECT * FROM runs WHERE spec_hash = ? ORDER BY started_at DESC, run_id DESC LIMIT 1", [spec_hash]
        )
        return rows[0] if rows else None

    def run_ids(self) -> list[str]:
        return [r["run_id"] for r in self.query_dicts("SELECT run_id FROM runs")]

    def create_run(self, run_id: str, name: str, spec: dict, spec_hash: str, dataset_id: str,
                   label_names: list[str]) -> None:
        with self.transaction() as con:
            con.execute(
                "INSERT INTO runs (run_id, name, spec, spec_hash, dataset_id, status, started_at, label_names) "
                "VALUES (?, ?, ?, ?, ?, 'running', ?, ?)",
                [run_id, name, json.dumps(spec), spec_hash, dataset_id, now(), json.dumps(label_names)],
            )

    def set_run_status(self, run_id: str, status: str, error: str | None = None) -> None:
        finished = now() if status in ("finished", "failed") else None
        with self.transaction() as con:
            con.execute(
                "UPDATE runs SET status = ?, finished_at = ?, error = ? WHERE run_id = ?",
                [status, finished, error, run_id],
            )

    def members(self, run_id: str) -> list[dict]:
        return self.query_dicts("SELECT * FROM members WHERE run_id = ? ORDER BY started_at NULLS LAST", [run_id])

    def start_member(self, run_id: str, member: str, backbone: str, model: str | None, seed: int,
                     options: dict) -> None:
        with self.transaction() as con:
            con.execute("DELETE FROM members WHERE run_id = ? AND member = ?", [run_id, member])
            con.execute(
                "INSERT INTO members (run_id, member, backbone, model, seed, status, options, started_at) "
                "VALUES (?, ?, ?, ?, ?, 'running', ?, ?)",
                [run_id, member, backbone, model, seed, json.dumps(options), now()],
            )

    def finish_member(self, run_id: str, member: str, status: str, selected_checkpoint: str | None = None,
                      error: str | None = None) -> None:
        with self.transaction() as con:
            con.execute(
                "UPDATE members SET status = ?, selected_checkpoint = ?, error = ?, finished_at = ? "
                "WHERE run_id = ? AND member = ?",
                [status, selected_checkpoint, error, now(), run_id, member],
            )

    def set_swa_epochs(self, run_id: str, member: str, epochs: list[int]) -> None:
        with self.transaction() as con:
            con.execute("UPDATE members SET swa_epochs = ? WHERE run_id = ? AND member = ?", [epochs, run_id, member])

    def stored_epochs(self, run_id: str, member: str) -> list[int]:
        rows = self.query_dicts(
            "SELECT DISTINCT epoch FROM metrics WHERE run_id = ? AND member = ? AND checkpoint = 'epoch-' || epoch "
            "ORDER BY epoch",
            [run_id, member],
        )
        return [r["epoch"] for r in rows]

    # -- examples, metrics, predictions -------------------------------------------------------

    def put_examples(self, dataset_id: str, splits: dict[str, Any]) -> int:
        """Store a dataset's examples once per content hash; returns rows written (0 if present)."""
        with self.transaction() as con:
            have = con.execute("SELECT count(*) FROM examples WHERE dataset_id = ?", [dataset_id]).fetchall()[0][0]
            if have:
                return 0
            n = 0
            for split, s in splits.items():
                labels = s.labels.astype(np.int32) if s.labels is not None else pa.nulls(len(s), pa.int32())
                batch = pa.table({
                    "dataset_id": pa.array([dataset_id] * len(s), pa.string()),
                    "split": pa.array([split] * len(s), pa.string()),
                    "idx": pa.array(np.arange(len(s), dtype=np.int32)),
                    "text": pa.array(s.texts, pa.string()),
                    "label": labels if isinstance(labels, pa.Array) else pa.array(labels),
                })
                con.register("batch_examples", batch)
                con.execute("INSERT INTO examples SELECT * FROM batch_examples")
                con.unregister("batch_examples")
                n += len(s)
            return n

    def log_checkpoint(self, run_id: str, member: str, checkpoint: str, epoch: int | None,
                       metrics: Sequence[tuple[str, str, float]],
                       predictions: Sequence[tuple[str, np.ndarray, np.ndarray]]) -> int:
        """Replace a checkpoint's metrics and predictions in one transaction; returns rows written.

        `metrics` is (split, name, value); `predictions` is (split, idx, probs (n, num_labels)).
        Deleting first makes a re-run after a crash idempotent: no row is ever duplicated.
        """
        metric_batch = pa.table({
            "run_id": pa.array([run_id] * len(metrics), pa.string()),
            "member": pa.array([member] * len(metrics), pa.string()),
            "checkpoint": pa.array([checkpoint] * len(metrics), pa.string()),
            "epoch": pa.array([epoch] * len(metrics), pa.int32()),
            "split": pa.array([m[0] for m in metrics], pa.string()),
            "name": pa.array([m[1] for m in metrics], pa.string()),
            "value": pa.array([float(m[2]) for m in metrics], pa.float64()),
        })
        pred_batches = [prediction_batch(run_id, member, checkpoint, epoch, split, idx, probs)
                        for split, idx, probs in predictions]
        with self.transaction() as con:
            con.execute("DELETE FROM metrics WHERE run_id = ? AND member = ? AND checkpoint = ?",
                        [run_id, member, checkpoint])
            con.execute("DELETE FROM predictions WHERE run_id = ? AND member = ? AND checkpoint = ?",
                        [run_id, member, checkpoint])
            con.register("batch_metrics", metric_batch)
            con.execute("INSERT INTO metrics SELECT * FROM batch_metrics")
            con.unregister("batch_metrics")
            for b in pred_batches:
                insert_predictions(con, b)
        return len(metrics) + sum(b.num_rows for b in pred_batches)

    # -- reading ------------------------------------------------------------------------------

    def query(self, sql: str, params: list | None = None, external_access: bool = True):
        """(column names, rows) of a query, on a read-only connection."""
        with self.connect(write=False, external_access=external_access) as con:
            cur = con.execute(sql, params or [])
            cols = [d[0] for d in cur.description] if cur.description else []
            return cols, cur.fetchall()

    def query_dicts(self, sql: str, params: list | None = None) -> list[dict]:
        cols, rows = self.query(sql, params)
        return [dict(zip(cols, r)) for r in rows]


def arrow_result(con, sql: str, params: list | None = None) -> pa.Table:
    """A query's result as an Arrow table, without the extra copy a DB-API cursor makes."""
    rel = con.sql(sql, params=params or None)
    fetch = getattr(rel, "to_arrow_table", None) or rel.arrow
    return fetch()


def prediction_batch(run_id: str, member: str, checkpoint: str, epoch: int | None, split: str,
                     idx: np.ndarray, probs: np.ndarray) -> pa.Table:
    """An Arrow table of prediction rows; `probs` becomes a FLOAT[] list column without a Python loop."""
    n, k = probs.shape
    probs32 = np.ascontiguousarray(probs, dtype=np.float32)
    offsets = pa.array(np.arange(0, (n + 1) * k, k, dtype=np.int32))
    return pa.table({
        "run_id": pa.array([run_id] * n, pa.string()) if n < 1024 else pa.repeat(run_id, n),
        "member": pa.array([member] * n, pa.string()) if n < 1024 else pa.repeat(member, n),
        "checkpoint": pa.array([checkpoint] * n, pa.string()) if n < 1024 else pa.repeat(checkpoint, n),
        "epoch": pa.array(np.full(n, -1 if epoch is None else epoch, dtype=np.int32),
                          mask=np.full(n, epoch is None)),
        "split": pa.array([split] * n, pa.string()) if n < 1024 else pa.repeat(split, n),
        "idx": pa.array(np.asarray(idx, dtype=np.int32)),
        "pred": pa.array(probs32.argmax(axis=1).astype(np.int16)),
        "probs": pa.ListArray.from_arrays(offsets, pa.array(probs32.reshape(-1))),
    })


def insert_predictions(con, batch: pa.Table) -> None:
    con.register("batch_predictions", batch)
    con.execute("INSERT INTO predictions SELECT * FROM batch_predictions")
    con.unregister("batch_predictions")
