"""Stores written by earlier runners, kept as text (DuckDB's `EXPORT DATABASE ... (FORMAT csv)` under
tests/fixtures/; a .duckdb file is never committed), made into DuckDB files again for the tests of
the migrations that open them (tests/test_compat.py, tests/store/test_m012.py)."""

from __future__ import annotations

from pathlib import Path

import duckdb

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def imported(dump: str, path: Path) -> Path:
    """tests/fixtures/<dump> imported into a new DuckDB file at `path`, unmigrated."""
    con = duckdb.connect(str(path))
    try:
        con.execute(f"IMPORT DATABASE '{FIXTURES / dump}'")
    finally:
        con.close()
    return path
