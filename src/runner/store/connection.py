"""Opening DuckDB store files safely: the connection layer under `Store`.

Three promises, each kept here and nowhere else:

- Every DuckDB instance runner starts can reach the store file (and DuckDB's own side files for it)
  and nothing else, with extension auto-install/auto-load off, from its first statement, and with its
  configuration locked so no later statement (a `runner sql` query included) can turn that back on.
- A file is never opened read-write before it has been checked read-only: its first 12 KiB are
  sniffed (DuckDB's magic; the blocks its header points at lie inside the file), then it is ATTACHed
  READ_ONLY and its schema and the blocks its tables use are read. Anything that is not a whole
  runner store is refused with `StoreFileError` (exit 2), the file untouched.
- Read commands (`open_read`) never write: a current store is only ever attached READ_ONLY for reads,
  a write through a store opened so is refused (a bug, never the file changed), and a store from an
  older runner is read through a migrated copy in memory.

Speed: starting a DuckDB instance costs some 20 ms, an ATTACH about 1 ms, and an `apply` or a
`compare` opens the store dozens of times; so each process keeps one locked-down in-memory instance
per store path and ATTACHes/DETACHes the file per operation, holding it only while a block runs.
"""

from __future__ import annotations

import os
import random
import re
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Sequence

import duckdb

from runner.errors import StoreError, StoreFileError
from runner.store.filecheck import (
    _can_write_file,
    _can_write_folder,
    _folder_message,
    check_blocks,
    sniff,
    store_folder_of,
)
from runner.store.instances import _aliases, _detach, _discard_instance, _shared_instance, locked_instance, path_lock
from runner.store.migrations import MIGRATIONS

LOCK_TIMEOUT_S = float(os.environ.get("RUNNER_STORE_LOCK_TIMEOUT", "120"))
_LOCK_PATTERNS = ("Could not set lock", "Conflicting lock", "database is locked")
_DISK_FULL_PATTERNS = ("No space left on device", "File too large", "Disk quota exceeded")
_DAMAGE_PATTERNS = ("Could not read enough bytes", "Corrupt database file", "Serialization Error")
COPY_DB = "runner_copy"  # the in-memory catalog an older store is copied into by open_read()



def now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _is_lock_error(e: Exception) -> bool:
    return any(p in str(e) for p in _LOCK_PATTERNS)


def _is_disk_full(e: Exception) -> bool:
    return any(p in str(e) for p in _DISK_FULL_PATTERNS)


def _is_damage(e: Exception) -> bool:
    return any(p in str(e) for p in _DAMAGE_PATTERNS)


class StoreFile:
    """The store file at `path`: safe opening, connections, and the schema's migrations.

    Creating the object touches nothing. `open()` is for commands that write (it creates the file or
    migrates it in place); `open_read()` for commands that only read, and never changes the file.
    `memory_limit` (a DuckDB size such as "4GB") gives this object a DuckDB instance of its own with
    that limit instead of the process's shared one (`runner sql`).
    """

    def __init__(self, path: str | Path, lock_timeout: float | None = None, memory_limit: str | None = None):
        self.path = Path(path)
        self.lock_timeout = LOCK_TIMEOUT_S if lock_timeout is None else lock_timeout
        self.memory_limit = memory_limit
        self.notice: str | None = None  # set by open_read() for a store read through a migrated copy
        self._instance: duckdb.DuckDBPyConnection | None = None  # private: a memory limit or a copy
        self._copy = False  # reads and writes go to the in-memory copy, never to the file
        self._reading = False  # opened by open_read(): a write to the file is a bug, refused
        self._state = "unchecked"  # then "probing" (sniffed, schema being read), then "checked"

    # -- opening --------------------------------------------------------------------------------

    def exists(self) -> bool:
        return self.path.is_file()

    def open(self, create: bool = True) -> "StoreFile":
        """For commands that write: create the file if asked, and apply any migrations it lacks.

        Raises StoreFileError (exit 2, the file unchanged) for a path that is not a usable store: not
        DuckDB, another program's database, damaged, from a newer runner, a folder, `:memory:`, or one
        that cannot be written where a write is needed.
        """
        self._check_location()
        self._reading = False
        if not self.exists():
            if not create:
                raise self._missing()
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise StoreFileError(f"{self.path}: cannot create the folder {self.path.parent} ({e.strerror}); "
                                     "give --store a path in a writable folder. Nothing was changed.") from None
            self.check_writable()
        elif not self.pending_migrations():
            return self
        else:
            self.check_writable()
        with self.transaction() as con:
            self._migrate(con)
        return self

    def open_read(self) -> "StoreFile":
        """For commands that only read: the file is never written, whatever runner wrote it.

        A store from an older runner is copied into memory (ATTACH READ_ONLY, COPY FROM DATABASE) and
        migrated there; `notice` then says so, and every connection, writes included, goes to the copy.
        Raises StoreFileError as `open()` does, and for a store that does not exist.
        """
        self._check_location()
        if not self.exists():
            raise self._missing()
        self._reading = True
        pending = self.pending_migrations()
        if pending:
            self._load_copy()
            self.notice = (
                f"{self.path} was written by an older runner (it lacks {len(pending)} schema migration"
                f"{'s' if len(pending) > 1 else ''}, up to {pending[-1]}); reading an upgraded copy in memory, the "
                "file is not changed. The next `runner apply` with this store upgrades it in place."
            )
        return self

    def check_writable(self) -> None:
        """Raise StoreFileError unless the store can be created or written where it is.

        DuckDB writes side files (its WAL) beside the store, so the folder must be writable too.
        """
        self._check_location()
        folder = self.path.absolute().parent
        if not folder.is_dir():
            raise StoreFileError(f"{self.path}: the folder {folder} does not exist; create it, or give --store "
                                 "a path in an existing folder. Nothing was changed.")
        if self.exists() and not _can_write_file(self.path):
            raise StoreFileError(f"{self.path}: the store file is not writable; fix its permissions, or give "
                                 "--store another file. The file was not changed.")
        if not _can_write_folder(folder):
            what = "write the store" if self.exists() else "create the store"
            raise StoreFileError(f"{self.path}: cannot {what}: the folder {folder} is not writable (DuckDB "
                                 "writes its log file beside the store); give --store a path in a writable "
                                 "folder. Nothing was changed.")

    def close(self) -> None:
        """Drop this object's private instance (an in-memory copy, or one with a memory limit)."""
        if self._instance is not None:
            self._instance.close()
            self._instance = None
            self._copy = False

    def _check_location(self) -> None:
        text = str(self.path)
        if text.startswith(":memory:") or text == "":
            raise StoreFileError(
                f"--store {text!r}: DuckDB's in-memory database keeps nothing for the next command; "
                "runner keeps results in a file. Give a file path such as results.duckdb."
            )
        if re.match(r"[A-Za-z][A-Za-z0-9+.-]+:/", text) or text.startswith("md:"):  # a URL (Path made :// :/)
            raise StoreFileError(f"--store {text}: runner keeps results in a local file; give a file path "
                                 "such as results.duckdb.")
        try:
            is_dir = self.path.is_dir()
            self.path.exists()
        except (OSError, ValueError) as e:  # a name too long for the file system, a NUL byte
            raise StoreFileError(f"--store {text[:200]}{'...' if len(text) > 200 else ''}: not a usable path "
                                 f"({getattr(e, 'strerror', None) or e}); give a shorter file path such as "
                                 "results.duckdb.") from None
        if is_dir:
            raise StoreFileError(_folder_message(self.path))
        inside = store_folder_of(Path(os.path.realpath(self.path.absolute().parent)))
        if inside is not None:
            raise StoreFileError(f"--store {text}: is inside {inside}, the {inside.name}/ folder of the store beside "
                                 "it, which runner fills and cleans up (a member's folder is deleted when it "
                                 "restarts); give a store path outside it. Nothing was changed.")

    def _missing(self) -> StoreFileError:
        return StoreFileError(f"{self.path}: no store here yet; `runner apply SPEC --store {self.path}` "
                              "creates it (or give --store the path of an existing store).")

    def _verify(self) -> None:
        """Sniff the file and read its schema and storage layout read-only, once per object, before any
        other use of it."""
        if self._state != "unchecked" or not self.exists():
            return
        self._check_location()
        block_size = sniff(self.path)
        self._state = "probing"
        try:
            with self.connect(write=False) as con:
                self._schema(con)
                if block_size:
                    check_blocks(con, self.path, block_size)
        except BaseException:
            self._state = "unchecked"
            raise
        self._state = "checked"

    def _load_copy(self) -> None:
        instance = self._instance or locked_instance(self.path.resolve(), self.memory_limit)
        self._instance = instance
        instance.execute(f"ATTACH ':memory:' AS {COPY_DB}")
        try:
            with self.connect(write=False) as con:
                alias = con.execute("SELECT current_database()").fetchone()[0]
                con.execute(f"COPY FROM DATABASE {alias} TO {COPY_DB}")
        except duckdb.OutOfMemoryException:
            self.close()
            raise StoreError(
                f"{self.path} was written by an older runner and is too large to read through an upgraded copy "
                "in memory; `runner apply` with it upgrades it in place (or give `runner sql` a larger "
                "--memory-limit). The file was not changed."
            ) from None
        self._copy = True
        with self.transaction() as con:
            self._migrate(con)

    # -- connections --------------------------------------------------------------------------

    @contextmanager
    def connect(self, write: bool = True, external_access: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection held for the block only; waits (bounded) while another process holds the file.

        The file is ATTACHed (READ_ONLY unless `write`) and made the default catalog with USE, then
        DETACHed at the end of the block, which checkpoints it and releases its lock just as closing a
        connection does. After `open_read()` of an older store, the connection is to the in-memory copy.
        `external_access` is accepted for old callers and ignored: no connection reaches other files.

        Raises StoreError (exit 1) for a lock held past the timeout or a full disk, StoreFileError
        (exit 2) for a file that is not a sound runner store; other DuckDB errors (a bad query) as they are.
        """
        with path_lock(self.path.resolve()):
            yield from self._connect(write)

    def _connect(self, write: bool) -> Iterator[duckdb.DuckDBPyConnection]:
        if self._copy:
            con = self._instance.cursor()
            try:
                con.execute(f"USE {COPY_DB}")
                yield con
            finally:
                con.close()
            return
        if write and self._reading:
            raise RuntimeError(f"{self.path} was opened for reading (open_read) and a write was attempted; a read "
                               "command never writes. The file was not changed.")
        self._verify()
        deadline = time.monotonic() + self.lock_timeout
        delay = 0.05
        while True:
            try:
                instance, con, alias = self._open(write)
                break
            except duckdb.Error as e:
                if _is_lock_error(e) and time.monotonic() < deadline:
                    time.sleep(delay * (0.5 + random.random()))
                    delay = min(delay * 2, 2.0)
                    continue
                raise self._explain(e) from None
        done = False
        try:
            yield con
            done = True
        except duckdb.Error as e:
            if _is_disk_full(e) or _is_damage(e):
                raise self._explain(e) from None
            raise
        finally:
            con.close()  # rolls back a transaction left open
            try:
                _detach(instance, alias)
            except duckdb.Error as e:
                # The instance may still hold the file (its checkpoint failed): never use it again.
                self._forget(instance)
                if done:  # else the block's own error is the one to report
                    raise self._explain(e) from None

    def _open(self, write: bool) -> tuple[duckdb.DuckDBPyConnection, duckdb.DuckDBPyConnection, str]:
        """(instance, cursor, alias) with the file attached and in USE."""
        if not self.exists() and (not write or self._state == "probing"):
            raise self._missing()
        path = self.path.resolve()
        if self.memory_limit is not None and self._instance is None:
            self._instance = locked_instance(path, self.memory_limit)
        instance = self._instance or _shared_instance(path)
        con = instance.cursor()
        alias = f"runner_store_{next(_aliases)}"
        quoted = str(path).replace("'", "''")
        try:
            con.execute(f"ATTACH '{quoted}' AS {alias}" + ("" if write else " (READ_ONLY)"))
        except BaseException:
            con.close()
            raise
        try:
            con.execute(f"USE {alias}")
        except BaseException:
            con.close()
            _detach(instance, alias)
            raise
        return instance, con, alias

    def _forget(self, instance: duckdb.DuckDBPyConnection) -> None:
        if instance is self._instance:
            self._instance = None
            self._copy = False
        _discard_instance(instance)

    def _explain(self, e: Exception) -> StoreError:
        """The error to raise for a DuckDB error met while opening or writing the store."""
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
        if _is_disk_full(e):
            # DuckDB may have made the failing write durable in its WAL before the checkpoint that failed
            # ("COMMIT succeeded and is durable"), or not at all: either way nothing after it is kept.
            return StoreError(
                f"disk full (or file size limit reached) while writing {self.path}; nothing was committed past "
                "the last complete write; free space and re-run `runner apply` to resume."
            )
        if "external extensions" in msg or "not a valid DuckDB database file" in msg:
            return StoreFileError(f"{self.path}: not a DuckDB database file (DuckDB: {_first_line(msg)}); give "
                                  "--store a runner store or a new file name. The file was not changed.")
        if _is_damage(e) or self._state == "probing":
            return StoreFileError(
                f"{self.path}: the store is damaged or cannot be read (DuckDB: {_first_line(msg)}). Restore it "
                "from a backup, or give --store another file. The file was not changed."
            )
        # The file passed its checks, so this is not the user's input: a fault of the moment.
        return StoreError(f"{self.path}: cannot open the store: {_first_line(msg)}")

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A write connection inside one transaction: committed at the end of the block, else rolled back."""
        with self.connect(write=True) as con:
            con.begin()
            try:
                yield con
            except BaseException:
                con.rollback()
                raise
            con.commit()

    # -- schema -------------------------------------------------------------------------------

    def pending_migrations(self) -> list[str]:
        """Names not yet applied (read-only peek). Raises StoreFileError for a file that is missing, not
        a runner store, damaged, or from a newer runner."""
        self._check_location()
        if not self.exists() and not self._copy:
            raise self._missing()
        self._verify()
        with self.connect(write=False) as con:
            applied = self._schema(con)
        return [m.__name__ for m in MIGRATIONS if m.__name__ not in applied]

    def _schema(self, con) -> list[str]:
        """The migrations the store has applied; refuses another program's database and a newer schema."""
        names = {r[0] for r in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() "
            "UNION ALL SELECT view_name FROM duckdb_views() "
            "WHERE database_name = current_database() AND NOT internal").fetchall()}
        applied = (
            [r[0] for r in con.execute("SELECT name FROM _migrations").fetchall()] if "_migrations" in names else []
        )
        if names and "_migrations" not in names:  # someone else's database: never add tables to it
            raise StoreFileError(
                f"{self.path}: a DuckDB database, but not a runner store (it has tables such as "
                f"{sorted(names)[0]!r} and no _migrations); give --store a new file. The file was not changed."
            )
        self._check_known(applied)
        return applied

    def _applied(self, con) -> list[str]:
        con.execute("CREATE TABLE IF NOT EXISTS _migrations (name VARCHAR NOT NULL, applied_at TIMESTAMP NOT NULL)")
        return [r[0] for r in con.execute("SELECT name FROM _migrations").fetchall()]

    def _check_known(self, applied: Sequence[str]) -> None:
        known = {m.__name__ for m in MIGRATIONS}
        unknown = [a for a in applied if a not in known]
        if unknown:
            raise StoreFileError(
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


def _first_line(msg: str) -> str:
    return msg.strip().splitlines()[0] if msg.strip() else "no message"
