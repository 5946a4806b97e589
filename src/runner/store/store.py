"""The results store: one DuckDB file, and the one place in runner that holds SQL.

The file is held only while a write is under way: each write opens a connection, does its work in
one transaction and closes, so `runner sql`, `runner compare` or a notebook can read the store while
`runner apply` trains. DuckDB lets one process write or many read; when another process holds the
file, the store waits and retries with a bounded backoff before it gives up with a clear message.
Rows are inserted in batches through Arrow.
"""

from __future__ import annotations

from runner.store.adaptations import Adaptations
from runner.store.calibrations import Calibrations
from runner.store.connection import StoreFile
from runner.store.ensembles import Ensembles
from runner.store.frames import Frames
from runner.store.inputs import Inputs
from runner.store.results import Results
from runner.store.runs import Runs
from runner.store.sweeps import Sweeps


class Store(Runs, Results, Ensembles, Sweeps, Calibrations, Inputs, Adaptations, Frames, StoreFile):
    """A results store at `path`. Creating the object touches nothing; `open()` creates/migrates, for
    commands that write; `open_read()` never changes the file, for commands that read.

    Opening, connections, transactions and migrations live in `connection.StoreFile`; each domain's
    writes and named reads in a mixin of its own (runs, results, ensembles, sweeps, calibrations,
    inputs, adaptations; a notebook's Arrow reads in frames); `query` is for `runner sql` and tests.
    """

    def query(self, sql: str, params: list | None = None, external_access: bool = True):
        """(column names, rows) of a query, on a read-only connection."""
        with self.connect(write=False) as con:
            cur = con.execute(sql, params or [])
            cols = [d[0] for d in cur.description] if cur.description else []
            return cols, cur.fetchall()

    def query_dicts(self, sql: str, params: list | None = None) -> list[dict]:
        cols, rows = self.query(sql, params)
        return [dict(zip(cols, r)) for r in rows]
