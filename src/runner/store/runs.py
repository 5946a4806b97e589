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
                   label_names: list[str], environment: dict | None = None) -> None:
        """A new run; `environment`: where it trains (runner.core.environment)."""
        with self.transaction() as con:
            con.execute(
                "INSERT INTO runs (run_id, name, spec, spec_hash, dataset_id, status, started_at, label_names, "
                "environment) VALUES (?, ?, ?, ?, ?, 'running', ?, ?, ?)",
                [run_id, name, json.dumps(spec), spec_hash, dataset_id, now(), json.dumps(label_names),
                 json.dumps(environment) if environment is not None else None],
            )

    def environment(self, run_id: str) -> dict:
        """Where the run was trained, as `runs.environment` holds it (empty for a run stored before it was)."""
        rows = self.query("SELECT environment FROM runs WHERE run_id = ?", [run_id])[1]
        value = rows[0][0] if rows else None
        return json.loads(value) if isinstance(value, str) else dict(value or {})

    def set_run_status(self, run_id: str, status: str, error: str | None = None) -> None:
        finished = now() if status in ("finished", "failed") else None
        with self.transaction() as con:
            con.execute(
                "UPDATE runs SET status = ?, finished_at = ?, error = ? WHERE run_id = ?",
                [status, finished, error, run_id],
            )

    def runs_by_id(self, run_ids: list[str]) -> dict[str, RunRecord]:
        """run_id -> its record, for many runs in two queries (a sweep's trials)."""
        rows = self.query_dicts("SELECT * FROM runs WHERE list_contains(?, run_id)", [list(run_ids)])
        members: dict[str, list[dict]] = {}
        for m in self.query_dicts("SELECT * FROM members WHERE list_contains(?, run_id) "
                                  "ORDER BY run_id, started_at NULLS LAST, member", [list(run_ids)]):
            members.setdefault(m["run_id"], []).append(m)
        return {r["run_id"]: RunRecord.from_rows(r, members.get(r["run_id"], [])) for r in rows}

    def replicas_of(self, run_ids: list[str]) -> dict[str, list[str]]:
        """run_id -> `replicas(run_id)`, for many runs in one query."""
        out: dict[str, list[str]] = {rid: [] for rid in run_ids}
        for me, other in self.query("SELECT me.run_id, r.run_id FROM runs r JOIN runs me ON r.repeat_group = "
                                    "me.repeat_group WHERE list_contains(?, me.run_id) ORDER BY me.run_id, "
                                    "r.repeat_index, r.run_id", [list(run_ids)])[1]:
            out[me].append(other)
        return {rid: ids or [rid] for rid, ids in out.items()}

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

    def mark_interrupted(self, run_id: str, why: str) -> None:
        """A run stopped by a signal: its members still `running` and the run become `failed` with `why`,
        so nothing is left looking alive; a re-run of `apply` resumes them from their stored epochs."""
        with self.transaction() as con:
            con.execute("UPDATE members SET status = 'failed', error = ?, finished_at = ? "
                        "WHERE run_id = ? AND status = 'running'", [why, now(), run_id])
            con.execute("UPDATE runs SET status = 'failed', error = ?, finished_at = ? WHERE run_id = ?",
                        [why, now(), run_id])

    def put_token_stats(self, run_id: str, stats: dict[str, list[dict]]) -> None:
        """member -> its tokenizer over each split (rows of runner.data.token_stats.SplitTokens.as_row),
        replacing what the run held for those members."""
        cols = ("split", "max_length", "texts", "tokens", "unknown", "texts_with_unknown", "truncated", "longest")
        with self.transaction() as con:
            for member, rows in stats.items():
                con.execute("DELETE FROM token_stats WHERE run_id = ? AND member = ?", [run_id, member])
                if rows:
                    con.executemany(f"INSERT INTO token_stats (run_id, member, {', '.join(cols)}) VALUES "
                                    f"(?, ?, {', '.join('?' for _ in cols)})",
                                    [[run_id, member, *(r[c] for c in cols)] for r in rows])

    def token_stats(self, run_id: str) -> list[dict]:
        """The run's `token_stats` rows, by member (in training order) and split."""
        return self.query_dicts(
            "SELECT t.* FROM token_stats t LEFT JOIN members m USING (run_id, member) WHERE t.run_id = ? "
            "ORDER BY m.started_at NULLS LAST, t.member, CASE t.split WHEN 'train' THEN 0 WHEN 'valid' THEN 1 "
            "WHEN 'test' THEN 2 ELSE 3 END, t.split", [run_id])

    def set_swa_epochs(self, run_id: str, member: str, epochs: list[int]) -> None:
        with self.transaction() as con:
            con.execute("UPDATE members SET swa_epochs = ? WHERE run_id = ? AND member = ?", [epochs, run_id, member])

    # -- refits: a run retrained on train+valid, linked to its parent ---------------------

    def create_refit_run(self, run_id: str, name: str, spec: dict, spec_hash: str, dataset_id: str,
                         label_names: list[str], parent_run_id: str, strategy: str,
                         environment: dict | None = None) -> None:
        """A refit run, created with its link to the parent in the same transaction."""
        with self.transaction() as con:
            con.execute(
                "INSERT INTO runs (run_id, name, spec, spec_hash, dataset_id, status, started_at, label_names, "
                "parent_run_id, refit_strategy, environment) VALUES (?, ?, ?, ?, ?, 'running', ?, ?, ?, ?, ?)",
                [run_id, name, json.dumps(spec), spec_hash, dataset_id, now(), json.dumps(label_names),
                 parent_run_id, strategy, json.dumps(environment) if environment is not None else None],
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


    def run_lines(self, long: bool = False) -> tuple[list[str], list[tuple]]:
        """(columns, rows) of `runner runs`: one line per run, oldest first, with the spec's selection
        metric on validation for its ensemble and for its best member (at the member's selected checkpoint).
        `long` adds the name, dataset, seconds, refit link and where it was trained (`runs.environment`)."""
        name = "r.name, " if long else ""
        more = (", r.dataset_id, CAST(round(epoch(r.finished_at - r.started_at), 1) AS DECIMAL(10, 1)) AS seconds, "
                "r.parent_run_id, r.refit_strategy, r.environment") if long else ""
        return self.query(
            f"""
            WITH r AS (
                SELECT *, json_extract_string(spec, '$.selection.resolved.metric') AS metric,
                       coalesce(json_extract_string(spec, '$.selection.resolved.greater_is_better'), 'true')
                           = 'true' AS greater,
                       CASE coalesce(json_extract_string(spec, '$.ensemble.checkpoint'), 'selected')
                           WHEN 'selected' THEN json_extract_string(spec, '$.selection.resolved.strategy')
                           ELSE json_extract_string(spec, '$.ensemble.checkpoint') END AS ensemble_strategy
                FROM runs),
            v AS (  -- the metric on valid of every member's selected checkpoint and of the spec's ensemble
                SELECT x.run_id, x.kind, x.member, x.value
                FROM metrics x JOIN r ON x.run_id = r.run_id AND x.split = 'valid'
                     AND x.name = substr(r.metric, length('eval_') + 1)
                LEFT JOIN members m ON m.run_id = x.run_id AND m.member = x.member
                WHERE (x.kind = 'member' AND x.checkpoint = m.selected_checkpoint)
                   OR (x.kind = 'ensemble' AND x.member = 'ensemble' AND x.checkpoint = r.ensemble_strategy)),
            best AS (
                SELECT v.run_id, CASE WHEN any_value(r.greater) THEN arg_max(v.member, v.value)
                                      ELSE arg_min(v.member, v.value) END AS member,
                       CASE WHEN any_value(r.greater) THEN max(v.value) ELSE min(v.value) END AS value
                FROM v JOIN r USING (run_id) WHERE v.kind = 'member' GROUP BY v.run_id)
            SELECT r.run_id, {name}r.status,
                   (SELECT count(*) FILTER (WHERE m.status = 'finished') || '/' || count(*)
                    FROM members m WHERE m.run_id = r.run_id) AS members,
                   r.metric,
                   (SELECT round(any_value(v.value), 4) FROM v WHERE v.run_id = r.run_id AND v.kind = 'ensemble')
                       AS ensemble,
                   best.member || ' ' || printf('%.4f', best.value) AS best_member,
                   strftime(r.started_at, '%Y-%m-%d %H:%M') AS started{more}
            FROM r LEFT JOIN best USING (run_id) ORDER BY r.started_at, r.run_id
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
