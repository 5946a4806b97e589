"""Store files of every kind a command may be given, built for real: missing, a folder, garbage,
text, SQLite, another program's DuckDB, truncated, from a newer or an older runner, in a read-only
folder (tests/store/test_store_safety.py, tests/contract/test_bad_inputs.py)."""

from __future__ import annotations

import os
import subprocess
from datetime import datetime
from pathlib import Path

import duckdb
import pytest

from runner.store import Store
from runner.store.connection import now
from runner.store.migrations import MIGRATIONS


def make_store(path: Path, kind: str) -> None:
    """Make the store `kind` at `path` (the kinds of tests/contract/test_bad_inputs.py's docstring)."""
    if kind == "none":
        return
    if kind == "directory":
        path.mkdir(parents=True)
        return
    if kind == "garbage":
        path.write_bytes(bytes((i * 7919 + 13) % 251 for i in range(8192)))
        return
    if kind == "zero-bytes":
        path.write_bytes(b"")
        return
    if kind == "text":
        path.write_text("run,accuracy\nbaseline,0.81\n", encoding="utf-8")
        return
    if kind == "sqlite":
        import sqlite3

        con = sqlite3.connect(path)
        con.execute("CREATE TABLE runs (run_id TEXT, accuracy REAL)")
        con.execute("INSERT INTO runs VALUES ('baseline', 0.81)")
        con.commit()
        con.close()
        return
    if kind == "foreign":
        con = duckdb.connect(str(path))
        con.execute("CREATE TABLE invoices (id INTEGER, amount DOUBLE)")
        con.execute("INSERT INTO invoices VALUES (1, 9.5)")
        con.close()
        return
    if kind == "old-schema":
        make_old_store(path)
        return
    if kind.startswith("read-only-folder"):
        path.parent.mkdir(parents=True, exist_ok=True)
        if kind == "read-only-folder":
            Store(path).open()
        make_read_only(path.parent)
        return
    store = Store(path).open()
    if kind == "newer-schema":
        with store.transaction() as con:
            con.execute("INSERT INTO _migrations VALUES (?, ?)", ["m999_from_the_future", now()])
    if kind.startswith("truncated"):
        for i in range(3):  # several blocks, as a few epochs make them
            with store.transaction() as con:
                con.execute(f"INSERT INTO examples SELECT 'd{i}', 'train', range, md5(range::varchar), 0 "
                            "FROM range(100000)")
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2] if kind == "truncated" else data[: 12 * 1024])


def make_old_store(path: Path) -> None:
    """A store as the first runner wrote it: only m001, with one finished run."""
    con = duckdb.connect(str(path))
    MIGRATIONS[0](con)
    con.execute("CREATE TABLE _migrations (name VARCHAR NOT NULL, applied_at TIMESTAMP NOT NULL)")
    con.execute("INSERT INTO _migrations VALUES (?, ?)", [MIGRATIONS[0].__name__, datetime(2024, 1, 1)])
    con.execute("INSERT INTO runs VALUES ('old-run', 'old', '{}', 'abc', 'd1', 'finished', ?, ?)",
                [datetime(2024, 1, 1), datetime(2024, 1, 2)])
    con.execute("INSERT INTO members VALUES ('old-run', 'm', 'scratch', NULL, 1, 'finished')")
    con.execute("INSERT INTO metrics VALUES ('old-run', 'm', 'epoch-1', 1, 'valid', 'accuracy', 0.5)")
    con.close()


_read_only: list[Path] = []


def make_read_only(folder: Path) -> None:
    """Make `folder` refuse new files, even to root (mode 555, or `chattr +i` for root, who ignores
    modes; the test is skipped where neither works). A test that calls it must call undo_read_only()."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
    elif subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("running as root without chattr +i: no folder can be made read-only here")
    _read_only.append(folder)


def undo_read_only() -> None:
    while _read_only:
        folder = _read_only.pop()
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(folder)], capture_output=True)
        folder.chmod(0o755)


