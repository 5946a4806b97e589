"""The process's DuckDB instances: each locked down to one store file, kept between operations.

Starting a DuckDB instance costs some 20 ms, an ATTACH about 1 ms, and an `apply` or a `compare`
opens the store dozens of times; so each process keeps one locked-down in-memory instance per store
path and ATTACHes/DETACHes the file per operation (runner.store.connection).
"""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from pathlib import Path

import duckdb

# DuckDB's side files for a database file: its WAL, and (names differ between DuckDB versions) the
# WAL it writes while checkpointing and the one it recovers from.
SIDE_SUFFIXES = (".wal", ".wal.checkpoint", ".wal.recovery", ".checkpoint.wal", ".recovery.wal")
_MAX_INSTANCES = 8  # per process; a command touches one or two stores, a test session hundreds


def allowed_files(path: Path) -> list[str]:
    """The files a DuckDB instance for the store at `path` (absolute) may touch."""
    return [str(path)] + [str(path) + s for s in SIDE_SUFFIXES]


def locked_instance(path: Path, memory_limit: str | None = None) -> duckdb.DuckDBPyConnection:
    """A new in-memory DuckDB instance that can reach the store at `path` (absolute) and nothing else.

    Extension auto-install/auto-load are off from the start (an SQLite or Parquet file given as the
    store would otherwise make DuckDB download an extension into ~/.duckdb); external access is off
    with only the store's files allowed; nothing spills to a temp folder (a query that needs more
    than `memory_limit` fails instead of writing files); then the configuration is locked.
    Raises duckdb.Error for a `memory_limit` DuckDB does not accept.
    """
    con = duckdb.connect(":memory:", config={"autoinstall_known_extensions": False,
                                             "autoload_known_extensions": False})
    try:
        files = ", ".join("'" + f.replace("'", "''") + "'" for f in allowed_files(path))
        # allowed_paths must be set before external access goes off (the config dict applies them in
        # the other order and fails), and both before the lock.
        con.execute(f"SET allowed_paths = [{files}]")
        con.execute("SET temp_directory = ''")
        # Checkpoint at each write's commit instead of logging it to the WAL and checkpointing at
        # DETACH: the rows are written once instead of twice (same end state, same durability).
        con.execute("SET checkpoint_threshold = '0KB'")
        if memory_limit is not None:
            con.execute("SET memory_limit = ?", [memory_limit])
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
    except BaseException:
        con.close()
        raise
    return con


_instances: OrderedDict[str, duckdb.DuckDBPyConnection] = OrderedDict()
_instance_lock = threading.Lock()
_aliases = itertools.count()


_path_locks: dict[str, threading.RLock] = {}


def path_lock(path: Path) -> threading.RLock:
    """The process's lock for the store at `path` (absolute): one operation at a time per file.

    Each operation ATTACHes the file to the shared instance and DETACHes it after; two threads doing
    that at once would attach one file twice (sweep trials training at once under Ray share the
    driver's store). Re-entrant, so an operation may call another.
    """
    with _instance_lock:
        return _path_locks.setdefault(str(path), threading.RLock())


def _shared_instance(path: Path) -> duckdb.DuckDBPyConnection:
    """The process's instance for the store at `path` (absolute), kept for the next operation.

    An instance's allow-list names one store, so there is one per store path; the least recently used
    is dropped past a few (DuckDB frees it once no cursor of it is left).
    """
    key = str(path)
    with _instance_lock:
        con = _instances.get(key)
        if con is None:
            con = _instances[key] = locked_instance(path)
            while len(_instances) > _MAX_INSTANCES:
                _instances.popitem(last=False)
        _instances.move_to_end(key)
        return con


def _discard_instance(instance: duckdb.DuckDBPyConnection) -> None:
    """Forget and close an instance whose state can no longer be trusted (a DETACH that failed).

    Closing it releases any file it still holds, so the next operation starts from a fresh instance
    instead of meeting "file handle conflict" from a store that could not be detached.
    """
    with _instance_lock:
        for key, con in list(_instances.items()):
            if con is instance:
                del _instances[key]
    try:
        instance.close()
    except duckdb.Error:
        pass


def _detach(instance: duckdb.DuckDBPyConnection, alias: str) -> None:
    """Detach a store (checkpointing it and releasing its lock) through a fresh cursor.

    A fresh cursor, because the one the block used may be unusable: after a failed checkpoint DuckDB
    refuses every statement, USE included, on a connection whose default database was invalidated.
    """
    cur = instance.cursor()
    try:
        cur.execute(f"DETACH {alias}")
    finally:
        cur.close()
