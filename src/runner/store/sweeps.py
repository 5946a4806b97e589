"""Sweeps and their trials: one row per sweep and per trial, with each trial's params as rows too
(`trial_params`), mirroring the Optuna study for SQL (runner.search)."""

from __future__ import annotations

import json

from runner.store.connection import now


class Sweeps:
    """Methods of `Store` (runner.store.store): they use its `transaction`, `query` and `query_dicts`."""

    # -- sweeps: one row per sweep and per trial (runner.search.sweep) -------------------------

    def put_sweep(self, sweep_id: str, name: str, spec: dict, storage: str, objective: str, member: str | None,
                  direction: str) -> None:
        """The sweep's row, once (a sweep applied again keeps its first row)."""
        with self.transaction() as con:
            if not con.execute("SELECT 1 FROM sweeps WHERE sweep_id = ?", [sweep_id]).fetchall():
                con.execute("INSERT INTO sweeps VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                            [sweep_id, name, json.dumps(spec), storage, objective, member, direction, now()])

    def put_trial(self, sweep_id: str, number: int, status: str, params: dict, run_id: str | None = None,
                  value: float | None = None, retry_of: int | None = None, value_sd: float | None = None,
                  repeats: int | None = None) -> None:
        """Create or update a trial's row and its `trial_params` rows, in one transaction."""
        with self.transaction() as con:
            old = con.execute("SELECT started_at FROM trials WHERE sweep_id = ? AND number = ?",
                              [sweep_id, number]).fetchall()
            con.execute("DELETE FROM trials WHERE sweep_id = ? AND number = ?", [sweep_id, number])
            con.execute("DELETE FROM trial_params WHERE sweep_id = ? AND number = ?", [sweep_id, number])
            done = now() if status != "running" else None
            con.execute("INSERT INTO trials (sweep_id, number, run_id, status, value, params, retry_of, started_at, "
                        "finished_at, value_sd, repeats) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [sweep_id, number, run_id, status, value, json.dumps(params), retry_of,
                         old[0][0] if old else now(), done, value_sd, repeats])
            rows = [[sweep_id, number, k, float(v) if isinstance(v, (int, float)) else None,
                     json.dumps(v) if not isinstance(v, str) else v] for k, v in params.items()]
            if rows:
                con.executemany("INSERT INTO trial_params VALUES (?, ?, ?, ?, ?)", rows)


    def sweeps(self) -> list[dict]:
        """Every sweep's row, newest first."""
        return self.query_dicts("SELECT * FROM sweeps ORDER BY created_at DESC")

    def find_sweep_id(self, ref: str) -> str | None:
        """The id of the newest sweep whose id or name is `ref`, if any."""
        rows = self.query("SELECT sweep_id FROM sweeps WHERE sweep_id = ? OR name = ? ORDER BY created_at DESC LIMIT 1",
                          [ref, ref])[1]
        return rows[0][0] if rows else None

    def trials(self, sweep_id: str) -> list[dict]:
        """A sweep's trials, by number, with `params` as a dict."""
        rows = self.query_dicts("SELECT * FROM trials WHERE sweep_id = ? ORDER BY number", [sweep_id])
        for t in rows:
            t["params"] = json.loads(t["params"]) if isinstance(t["params"], str) else (t["params"] or {})
        return rows

    def best_trial_run(self, sweep_id: str, maximize: bool) -> str | None:
        """The run of the sweep's best finished trial, or None."""
        order = "DESC" if maximize else "ASC"
        rows = self.query(f"SELECT run_id FROM trials WHERE sweep_id = ? AND status = 'finished' AND run_id IS NOT NULL "
                          f"ORDER BY value {order}, number LIMIT 1", [sweep_id])[1]
        return rows[0][0] if rows else None
