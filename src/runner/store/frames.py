"""What a notebook reads of a store, as Arrow tables straight from DuckDB (no row-by-row copy): the runs,
a run's `epochs`, and its predictions joined to their examples."""

from __future__ import annotations

import pyarrow as pa

from runner.store.rows import arrow_result


class Frames:
    """Methods of `Store` (runner.store.store): they use its `connect`."""

    def _arrow(self, sql: str, params: list | None = None) -> pa.Table:
        with self.connect(write=False) as con:
            return arrow_result(con, sql, params)

    def runs_arrow(self) -> pa.Table:
        """One row per run, oldest first: id, name, status, members finished/all, dataset, times, links."""
        return self._arrow(
            "SELECT r.run_id, r.name, r.status, (SELECT count(*) FILTER (WHERE m.status = 'finished') FROM members m "
            "WHERE m.run_id = r.run_id) AS members_finished, (SELECT count(*) FROM members m WHERE m.run_id = r.run_id) "
            "AS members, json_extract_string(r.spec, '$.selection.resolved.metric') AS metric, r.dataset_id, "
            "r.started_at, r.finished_at, r.parent_run_id, r.repeat_group, r.repeat_index FROM runs r "
            "ORDER BY r.started_at, r.run_id")

    def epochs_arrow(self, run_id: str) -> pa.Table:
        """The `epochs` view's rows of the run: a column per split and metric, by member and epoch."""
        return self._arrow("SELECT * FROM epochs WHERE run_id = ? ORDER BY member, epoch", [run_id])

    def predictions_arrow(self, run_id: str, member: str | None, split: str | None, checkpoint: str) -> pa.Table:
        """Each example's stored prediction with its text and label. `checkpoint`: a checkpoint name
        (`epoch-3`, `swa`), `selected` (each member's selected one), or a strategy with stored picks."""
        where = ["p.run_id = ?", "p.kind = 'member'"]
        params: list = [run_id]
        if member is not None:
            where.append("p.member = ?")
            params.append(member)
        if split is not None:
            where.append("p.split = ?")
            params.append(split)
        if checkpoint == "selected":
            where.append("p.checkpoint = (SELECT m.selected_checkpoint FROM members m WHERE m.run_id = p.run_id "
                         "AND m.member = p.member)")
        else:
            where.append("(p.checkpoint = ? OR p.checkpoint = (SELECT s.checkpoint FROM selections s WHERE "
                         "s.run_id = p.run_id AND s.member = p.member AND s.strategy = ?))")
            params += [checkpoint, checkpoint]
        return self._arrow(
            "SELECT p.member, p.checkpoint, p.epoch, p.split, p.idx, e.text, e.label, p.pred, p.probs "
            "FROM predictions p JOIN runs r ON r.run_id = p.run_id LEFT JOIN examples e ON "
            "e.dataset_id = r.dataset_id AND e.split = p.split AND e.idx = p.idx "
            f"WHERE {' AND '.join(where)} ORDER BY p.member, p.split, p.idx", params)
