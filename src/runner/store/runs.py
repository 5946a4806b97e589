"""Runs and their members: creating, finding and reading them as typed records; refit runs linked to
their parent; replicas of a spec over member seeds (`repeats`)."""

from __future__ import annotations

import json

from runner.core.records import RunRecord
from runner.errors import InputError
from runner.store.connection import now


class Runs:
    """Methods of `Store` (runner.store.store): they use its `transaction`, `query` and `query_dicts`."""

    def latest_run_for(self, spec_hash: str) -> dict | None:
        if not self.exists():
            return None
        rows = self.query_dicts(
            "SELECT * FROM runs WHERE spec_hash = ? ORDER BY started_at DESC, run_id DESC LIMIT 1", [spec_hash]
        )
        return rows[0] if rows else None

    def run_ids(self) -> list[str]:
        return [r["run_id"] for r in self.query_dicts("SELECT run_id FROM runs")]

    def dataset_ids(self) -> set[str]:
        """The datasets this store's runs trained on (what keeps a tokenized/ folder from `runner gc`)."""
        return {r[0] for r in self.query("SELECT DISTINCT dataset_id FROM runs")[1]}

    def run(self, ref: str | None = None) -> RunRecord:
        """A run as a typed record: by id, or by name (the latest run of that name), or the latest run."""
        if ref is None:
            rows = self.query_dicts("SELECT * FROM runs ORDER BY started_at DESC, run_id DESC LIMIT 1")
            if not rows:
                raise InputError(f"{self.path}: the store has no runs yet; `runner apply SPEC` makes one")
        else:
            rows = self.query_dicts("SELECT * FROM runs WHERE run_id = ?", [ref]) or self.query_dicts(
                "SELECT * FROM runs WHERE name = ? ORDER BY started_at DESC, run_id DESC LIMIT 1", [ref])
            if not rows:
                known = ", ".join(self.run_ids()) or "none"
                raise InputError(f"RUN {ref!r}: no run with that id or name in {self.path} (runs: {known})")
        return RunRecord.from_rows(rows[0], self.members(rows[0]["run_id"]))

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
        return self.query_dicts("SELECT * FROM members WHERE run_id = ? ORDER BY started_at NULLS LAST, member",
                                [run_id])

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

    # -- refits: a run retrained on train+valid, linked to its parent ---------------------

    def create_refit_run(self, run_id: str, name: str, spec: dict, spec_hash: str, dataset_id: str,
                         label_names: list[str], parent_run_id: str, strategy: str) -> None:
        """A refit run, created with its link to the parent in the same transaction."""
        with self.transaction() as con:
            con.execute(
                "INSERT INTO runs (run_id, name, spec, spec_hash, dataset_id, status, started_at, label_names, "
                "parent_run_id, refit_strategy) VALUES (?, ?, ?, ?, ?, 'running', ?, ?, ?, ?)",
                [run_id, name, json.dumps(spec), spec_hash, dataset_id, now(), json.dumps(label_names),
                 parent_run_id, strategy],
            )

    def refit_runs(self, parent_run_id: str) -> list[dict]:
        """The refits of a run (run_id, refit_strategy, status), oldest first."""
        return self.query_dicts("SELECT run_id, refit_strategy, status FROM runs WHERE parent_run_id = ? "
                                "ORDER BY started_at, run_id", [parent_run_id])

    # -- repeats: replicas of a spec over member seeds -------------------------------------

    def set_repeat(self, run_id: str, group: str, index: int) -> None:
        """Mark a run as replica `index` of `group` (runs.repeat_group / repeat_index)."""
        with self.transaction() as con:
            con.execute("UPDATE runs SET repeat_group = ?, repeat_index = ? WHERE run_id = ?", [group, index, run_id])

    def replicas(self, run_id: str) -> list[str]:
        """The run ids of the run's repeat group, by repeat_index (just the run when it has no group)."""
        rows = self.query("SELECT r.run_id FROM runs r JOIN runs me ON r.repeat_group = me.repeat_group "
                          "WHERE me.run_id = ? ORDER BY r.repeat_index, r.run_id", [run_id])[1]
        return [r[0] for r in rows] or [run_id]


    def run_lines(self) -> tuple[list[str], list[tuple]]:
        """(columns, rows) of `runner runs`: one line per run, oldest first."""
        return self.query(
            """
            SELECT r.run_id, r.name, r.status,
                   count(m.member) FILTER (WHERE m.status = 'finished') || '/' || count(m.member) AS members,
                   r.dataset_id, strftime(r.started_at, '%Y-%m-%d %H:%M:%S') AS started,
                   CAST(round(epoch(r.finished_at - r.started_at), 1) AS DECIMAL(10, 1)) AS seconds
            FROM runs r LEFT JOIN members m USING (run_id)
            GROUP BY r.run_id, r.name, r.status, r.dataset_id, r.started_at, r.finished_at ORDER BY r.started_at
            """
        )

    def find_run_id(self, ref: str) -> str | None:
        """The id of a run whose id or name is `ref`, if any (without raising, unlike `run`)."""
        rows = self.query("SELECT run_id FROM runs WHERE run_id = ? OR name = ? LIMIT 1", [ref, ref])[1]
        return rows[0][0] if rows else None

    def recent_run_ids(self) -> list[str]:
        """Every run id, newest first."""
        return [r[0] for r in self.query("SELECT run_id FROM runs ORDER BY started_at DESC")[1]]

    def member_adapt_keys(self, run_id: str) -> dict[str, str | None]:
        """member -> the adaptation it started from (None: it did not adapt)."""
        return dict(self.query("SELECT member, adapt_key FROM members WHERE run_id = ?", [run_id])[1])
