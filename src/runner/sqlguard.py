"""`runner sql`: read-only SQL over the store, refusing what would write or reach outside it.

Two guards. Before running, each statement's type is checked (only queries pass, unless
`--allow-write`), so the user gets a clear message instead of a DuckDB error. While running, the
connection is read-only and has DuckDB's `enable_external_access` off, which blocks ATTACH, COPY to
files, read_csv/read_parquet of other files, INSTALL and LOAD, whatever the statement looks like.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from .errors import InputError
from .store import Store

READ_TYPES = {"SELECT", "EXPLAIN"}


def statement_types(sql: str) -> list[str]:
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as e:
        raise InputError(f"runner sql: the query does not parse: {str(e).splitlines()[0]}") from None
    if not statements:
        raise InputError("runner sql: the query is empty")
    return [s.type.name for s in statements]


def run_sql(store_path: str | Path, sql: str, allow_write: bool = False):
    store = Store(store_path).open(create=False)
    types = statement_types(sql)
    if not allow_write:
        bad = [t for t in types if t not in READ_TYPES]
        if bad:
            raise InputError(
                f"runner sql is read-only: refused a {bad[0]} statement. Queries (SELECT, WITH, SHOW, DESCRIBE, "
                "SUMMARIZE, EXPLAIN) are allowed; statements that write to the store or reach other files "
                "(INSERT, UPDATE, DELETE, CREATE, DROP, ATTACH, COPY, INSTALL, LOAD, SET...) need --allow-write."
            )
        try:
            return store.query(sql, external_access=False)
        except duckdb.PermissionException as e:
            raise InputError(
                f"runner sql: refused: {str(e).splitlines()[0]}. Reading or attaching files outside the store "
                "needs --allow-write."
            ) from None
        except duckdb.Error as e:
            raise InputError(f"runner sql: {str(e).splitlines()[0]}") from None
    with store.connect(write=True) as con:
        try:
            cur = con.execute(sql)
        except duckdb.Error as e:
            raise InputError(f"runner sql: {str(e).splitlines()[0]}") from None
        cols = [d[0] for d in cur.description] if cur.description else []
        return cols, (cur.fetchall() if cur.description else [])
