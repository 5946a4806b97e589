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

    def predictions_arrow(self, run_id: str, member: str | None, split: str | None,
                          checkpoint: str | None) -> pa.Table:
        """Each example's stored prediction with its text and label, `probs` a fixed-size list (one
        numpy block away). `checkpoint`: a checkpoint name (`epoch-3`, `swa`), `selected` (each member's
        selected one), a strategy with stored picks, or None for every checkpoint of the members."""
        where = ["c.run_id = ?", "c.kind = 'member'"]
        params: list = [run_id]
        if member is not None:
            where.append("c.member = ?")
            params.append(member)
        if split is not None:
            where.append("c.split = ?")
            params.append(split)
        if checkpoint == "selected":
            where.append("c.checkpoint = (SELECT m.selected_checkpoint FROM members m WHERE m.run_id = c.run_id "
                         "AND m.member = c.member)")
        elif checkpoint is not None:
            where.append("(c.checkpoint = ? OR c.checkpoint = (SELECT s.checkpoint FROM selections s WHERE "
                         "s.run_id = c.run_id AND s.member = c.member AND s.strategy = ?))")
            params += [checkpoint, checkpoint]
        with self.connect(write=False) as con:
            counts = [r[0] for r in con.execute("SELECT DISTINCT num_labels FROM checkpoints WHERE run_id = ?",
                                                [run_id]).fetchall()]
            # a run has one number of classes: its rows table keeps probs fixed-size (the view's are FLOAT[])
            rows = f"predictions_{counts[0]}" if len(counts) == 1 else "predictions"
            key = "p.ckpt = c.ckpt" if len(counts) == 1 else ("p.run_id = c.run_id AND p.kind = c.kind AND p.member = "
                                                              "c.member AND p.checkpoint = c.checkpoint AND p.split = c.split")
            return arrow_result(
                con,
                "SELECT c.member, c.checkpoint, c.epoch, c.split, p.idx, e.text, e.label, p.pred, p.probs "
                f"FROM checkpoints c JOIN {rows} p ON {key} JOIN runs r ON r.run_id = c.run_id LEFT JOIN examples e "
                "ON e.dataset_id = r.dataset_id AND e.split = c.split AND e.idx = p.idx "
                f"WHERE {' AND '.join(where)} ORDER BY c.member, c.epoch NULLS LAST, c.checkpoint, c.split, p.idx", params)
