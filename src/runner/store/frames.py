"""What a notebook reads of a store, as Arrow tables straight from DuckDB (no row-by-row copy): the runs,
a run's `epochs`, and its predictions joined to their examples."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from runner.store.rows import arrow_result

# the general form (through the `predictions` view), for what the fast path in predictions_arrow does not cover
PREDICTIONS_SQL = ("SELECT p.member, p.checkpoint, p.epoch, p.split, p.idx, e.text, e.label, p.pred, p.probs "
                   "FROM predictions p JOIN runs r ON r.run_id = p.run_id LEFT JOIN examples e ON "
                   "e.dataset_id = r.dataset_id AND e.split = p.split AND e.idx = p.idx "
                   "WHERE {where} ORDER BY p.member, p.epoch NULLS LAST, p.checkpoint, p.split, p.idx")



def assemble(keys: list[tuple], rows: pa.Table, examples: pa.Table) -> pa.Table:
    """predictions_arrow's table from its parts, with Arrow's vectorised take instead of a join and a sort
    in DuckDB: `keys` (ckpt, k, member, checkpoint, epoch, split) in the order wanted, `rows` (ckpt, idx,
    pred, probs) as stored (by key, then idx), `examples` (split, idx, text, label) by split and idx."""
    ckpt = _np(rows.column("ckpt"))
    idx = _np(rows.column("idx"))
    if np.any(ckpt[1:] < ckpt[:-1]) or np.any((idx[1:] <= idx[:-1]) & (ckpt[1:] == ckpt[:-1])):
        first = np.lexsort((idx, ckpt))
        rows, ckpt, idx = rows.take(first), ckpt[first], idx[first]
    wanted = np.array([k[0] for k in keys])
    lo, hi = np.searchsorted(ckpt, wanted, "left"), np.searchsorted(ckpt, wanted, "right")
    counts = hi - lo
    order = np.concatenate([np.arange(a, b) for a, b in zip(lo, hi)]) if len(keys) else np.zeros(0, np.int64)
    if len(order) != len(ckpt) or np.any(order != np.arange(len(order))):
        rows, idx = rows.take(order), idx[order]
    which = np.repeat(np.arange(len(keys)), counts)  # each row's key
    # each row's example: its split's block of `examples` (contiguous, by idx), then its idx in that block
    encoded = examples.column("split").combine_chunks().dictionary_encode()
    names = encoded.dictionary.to_pylist()
    ex_split, ex_idx = _np(encoded.indices), _np(examples.column("idx"))
    row_split = np.array([names.index(k[5]) if k[5] in names else -1 for k in keys], dtype=np.int64)[which]
    pos = np.full(len(idx), -1, dtype=np.int64)
    for j in range(len(names)):
        block = np.flatnonzero(ex_split == j)
        mine = np.flatnonzero(row_split == j)
        if np.array_equal(ex_idx[block], np.arange(len(block))):  # a split's examples are 0..n-1: no search
            at = np.minimum(idx[mine], len(block) - 1)
            hit = (idx[mine] >= 0) & (idx[mine] < len(block))
        else:
            at = np.minimum(np.searchsorted(ex_idx[block], idx[mine]), len(block) - 1)
            hit = ex_idx[block][at] == idx[mine]
        pos[mine[hit]] = block[0] + at[hit] if np.array_equal(block, np.arange(block[0], block[0] + len(block))) \
            else block[at[hit]]
    # text, member, checkpoint and split repeat: dictionary-encoded (pandas Categorical, polars
    # Categorical), each distinct string stored once instead of copied into every row
    found = pa.array(pos.astype(np.int32), mask=pos < 0)

    def categories(values: list, codes: np.ndarray, missing: np.ndarray | None = None) -> pa.DictionaryArray:
        unique = list(dict.fromkeys(values))
        remap = np.array([unique.index(v) for v in values], dtype=np.int32)
        return pa.DictionaryArray.from_arrays(pa.array(remap[codes], mask=missing), pa.array(unique, pa.string()))

    text = examples.column("text").combine_chunks().dictionary_encode()
    codes = _np(text.indices)[np.maximum(pos, 0)] if len(pos) else np.zeros(0, np.int32)
    return pa.table({
        "member": categories([k[2] for k in keys], which), "checkpoint": categories([k[3] for k in keys], which),
        "epoch": pa.array([k[4] for k in keys], pa.int32()).take(pa.array(which)),
        "split": categories([k[5] for k in keys], which), "idx": rows.column("idx"),
        "text": pa.DictionaryArray.from_arrays(pa.array(codes.astype(np.int32), mask=pos < 0), text.dictionary),
        "label": examples.column("label").take(found), "pred": rows.column("pred"), "probs": rows.column("probs"),
    })


def _np(column) -> np.ndarray:
    """A primitive Arrow column as numpy, without pyarrow's pandas-backed ChunkedArray path."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    return column.to_numpy(zero_copy_only=False)


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
            # by member, then as stored (epoch by epoch, each split as written): the rows' own order
            keys = con.execute(f"SELECT c.ckpt, c.num_labels, c.member, c.checkpoint, c.epoch, c.split, r.dataset_id "
                               f"FROM checkpoints c JOIN runs r ON r.run_id = c.run_id WHERE {' AND '.join(where)} "
                               "ORDER BY c.member, c.ckpt", params).fetchall()
            dataset = [k[6] for k in keys[:1]]
            if len({k[1] for k in keys}) != 1:  # nothing (or, never in practice, mixed class counts)
                return arrow_result(con, PREDICTIONS_SQL.format(where=" AND ".join(where).replace("c.", "p.")), params)
            ids = sorted(k[0] for k in keys)
            rows = arrow_result(con, f"SELECT ckpt, idx, pred, probs FROM predictions_{keys[0][1]} WHERE ckpt BETWEEN ? "
                                     "AND ? AND list_contains(?, ckpt)", [ids[0], ids[-1], ids])
            splits = sorted({k[5] for k in keys})
            examples = arrow_result(con, "SELECT split, idx, text, label FROM examples WHERE dataset_id = ? AND "
                                         "list_contains(?, split) ORDER BY split, idx", [dataset[0], splits])
        return assemble(keys, rows, examples)
