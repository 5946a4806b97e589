"""`runner sql`: read-only SQL over the store, refusing what would write or reach outside it, and
stopping what would run away.

Guards, in order. Before running, each statement's type is checked (only queries pass, unless
`--allow-write`), so the user gets a clear message instead of a DuckDB error. While running, the
store is attached READ_ONLY (an older store is read through a migrated copy in memory, see
`Store.open_read`) in a DuckDB instance of its own that can reach no other file (no ATTACH, COPY to
files, read_csv of other files, INSTALL or LOAD, even with `--allow-write`), whose memory is capped
(`--memory-limit`; nothing spills to disk) and whose query is interrupted after `--timeout` seconds.
"""

from __future__ import annotations

import math
import os
import re
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import duckdb

from runner.errors import InputError
from runner.store import Store

READ_TYPES = {"SELECT", "EXPLAIN"}
CONNECTION_TYPES = {"ATTACH", "DETACH", "TRANSACTION", "SET"}
DEFAULT_TIMEOUT_S = 60.0
# The default memory cap, as a share of the machine's RAM: `runner sql` often runs beside a
# `runner apply`, whose data loading and checkpoints need host memory; DuckDB's own default (80 %)
# could push the training into swap or the OOM killer for one careless query.
DEFAULT_MEMORY_SHARE = 0.25
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)\s*$", re.IGNORECASE)
_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")


def statement_types(sql: str) -> list[str]:
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as e:
        raise InputError(f"runner sql: the query does not parse: {str(e).splitlines()[0]}") from None
    if not statements:
        raise InputError("runner sql: the query is empty")
    return [s.type.name for s in statements]


def _ram_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def memory_limit(text: str | None) -> str:
    """DuckDB's memory_limit for `--memory-limit` (a size such as 2GB or 512MiB, or a share of RAM such
    as 10%); None gives the default, 25 % of RAM (4GB where RAM is unknown)."""
    ram = _ram_bytes()
    if text is None:
        return f"{int(ram * DEFAULT_MEMORY_SHARE) // 2**20}MiB" if ram else "4GB"
    m = _SIZE.match(text)
    if m and float(m.group(1)) > 0:
        return f"{m.group(1)}{m.group(2)}"
    m = _PERCENT.match(text)
    if m and 0 < float(m.group(1)) <= 100 and ram:
        return f"{max(1, int(ram * float(m.group(1)) / 100) // 2**20)}MiB"
    raise InputError(f"--memory-limit {text!r}: give a size such as 2GB or 512MB, or a share of RAM such as 10%")


def check_timeout(timeout: float) -> float:
    if not (math.isfinite(timeout) and timeout > 0):
        raise InputError(f"--timeout {timeout}: give a number of seconds above 0, such as 60")
    return timeout


class SqlResult:
    """An executed query whose rows are fetched on demand, so a huge result is never held in Python
    whole. `notice` is a line for stderr when the store was read through a migrated copy."""

    def __init__(self, cursor, limits, notice: str | None):
        self._cursor = cursor
        self._limits = limits
        self.notice = notice
        self.columns = [d[0] for d in cursor.description] if cursor.description else []

    def fetch(self, n: int) -> list[tuple]:
        """Up to `n` more rows."""
        if not self.columns:
            return []
        with self._limits():
            return self._cursor.fetchmany(n)

    def batches(self, size: int = 10_000) -> Iterator[list[tuple]]:
        """The remaining rows, `size` at a time."""
        while rows := self.fetch(size):
            yield rows


@contextmanager
def sql_query(store_path: str | Path, sql: str, allow_write: bool = False, timeout: float = DEFAULT_TIMEOUT_S,
              memory: str | None = None) -> Iterator[SqlResult]:
    """Run `sql` on the store and yield its result, readable while the block runs.

    Raises InputError (exit 2) for a statement that would write (without `allow_write`) or reach
    another file, a query DuckDB rejects, one that runs past `timeout` seconds or needs more than the
    memory limit (`memory`, see `memory_limit`), and StoreFileError for a store that cannot be read.
    """
    check_timeout(timeout)
    limit = memory_limit(memory)
    types = statement_types(sql)
    if not allow_write:
        bad = [t for t in types if t not in READ_TYPES]
        if bad:
            raise InputError(_read_only(f"refused a {bad[0]} statement"))
    # Statements about the connection rather than the store: runner opens, commits and detaches the
    # store itself, and a DETACH, USE or BEGIN of the user's would leave it unable to.
    connection = [t for t in types if t in CONNECTION_TYPES]
    if connection:
        raise InputError(
            f"runner sql: refused a {connection[0]} statement, even with --allow-write: runner attaches the store, "
            "runs each statement in its own transaction and detaches it; give the statements themselves."
        )
    store = Store(store_path, memory_limit=limit)
    store = store.open(create=False) if allow_write else store.open_read()
    written = "its statement was rolled back" if allow_write else "nothing was written"

    @contextmanager
    def limits():
        try:
            yield
        except duckdb.InterruptException:
            raise InputError(
                f"runner sql: the query ran past --timeout {timeout:g} s and was stopped; {written}. Narrow it "
                "(a WHERE, a LIMIT, fewer joins) or raise --timeout."
            ) from None
        except duckdb.OutOfMemoryException:
            raise InputError(
                f"runner sql: the query needed more memory than --memory-limit {limit} allows and was stopped; "
                f"{written}. Narrow it (a WHERE, a LIMIT, fewer joins) or raise --memory-limit."
            ) from None
        except duckdb.PermissionException as e:
            raise InputError(
                f"runner sql: refused: {str(e).splitlines()[0]}. runner sql reads only the store: files outside "
                "it cannot be read or attached, even with --allow-write."
            ) from None
        except duckdb.Error as e:
            if not allow_write and "read-only mode" in str(e):  # a write inside a query: WITH x AS (DELETE ...)
                raise InputError(_read_only("refused a query that writes (a DELETE, INSERT or UPDATE inside it, "
                                            "such as in a WITH clause); nothing was written")) from None
            raise InputError(f"runner sql: {str(e).splitlines()[0]}") from None

    try:
        with store.connect(write=allow_write) as con:
            # A timer interrupts the connection: DuckDB checks for it between vectors, so even a cross
            # join of billions of rows stops within moments.
            timer = threading.Timer(timeout, con.interrupt)
            timer.daemon = True
            timer.start()
            try:
                with limits():
                    cur = con.execute(sql)
                yield SqlResult(cur, limits, store.notice)
            finally:
                timer.cancel()
    finally:
        store.close()


def _read_only(what: str) -> str:
    return (f"runner sql is read-only: {what}. Queries (SELECT, WITH, SHOW, DESCRIBE, SUMMARIZE, EXPLAIN) are "
            "allowed; statements that write to the store (INSERT, UPDATE, DELETE, CREATE, DROP...) need "
            "--allow-write, and those that reach other files (ATTACH, COPY, INSTALL, LOAD) are refused even with it.")


def run_sql(store_path: str | Path, sql: str, allow_write: bool = False, timeout: float = DEFAULT_TIMEOUT_S,
            memory: str | None = None) -> tuple[list[str], list[tuple]]:
    """(column names, every row) of `sql`; see `sql_query`, which streams instead."""
    with sql_query(store_path, sql, allow_write, timeout, memory) as result:
        rows = [r for batch in result.batches() for r in batch]
        return result.columns, rows
