"""Which prediction layout should the store use? Candidate DuckDB layouts for the same prediction rows,
measured side by side in one invocation: insert rows/s, bytes per row, and the read of one
checkpoint's probabilities back as a (rows x classes) numpy array.

The rows are those of bench/replay.py's synthetic run (Dirichlet probabilities of 4 classes, in
float32, example ids 0..n-1 per checkpoint and split). Each layout gets a fresh file, one connection
and one transaction per checkpoint (both splits), so what differs is the layout alone:

- `rows`: the layout before the `checkpoints` table: every row repeats run_id, kind, member,
  checkpoint, epoch and split as strings (bound as parameters of the insert), probs a FLOAT[] list;
- `key+list`: a `checkpoints` table (run, kind, member, checkpoint, epoch, split -> ckpt INTEGER)
  and one rows table (ckpt, idx, pred, probs FLOAT[]);
- `key+array`: the same with probs a fixed-size FLOAT[4] (one rows table per class count);
- `key+array, no pred`: as `key+array` without the stored argmax (the view would compute it);
- `bare`: DuckDB's own Arrow insert of the rows (ckpt, idx, pred, probs FLOAT[4]) into one bare
  table, no checkpoints table: the baseline.

A warm-up pass (one small `bare` file, not reported) runs first so that no layout pays DuckDB's and
Arrow's first-use costs.

    python bench/store_layouts.py                     # 20 checkpoints x 2 splits x 50,000 rows
    python bench/store_layouts.py --checkpoints 4     # quicker
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

K = 4


def batches(n_ckpt: int, n: int, seed: int = 0):
    """(ckpt, epoch, split, idx, probs) for each checkpoint and split."""
    rng = np.random.default_rng(seed)
    labels = rng.choice(K, n)
    for c in range(n_ckpt):
        for s, split in enumerate(("valid", "test")):
            alpha = np.full((n, K), 0.7)
            alpha[np.arange(n), labels] += 1.0 + 0.1 * c
            g = rng.standard_gamma(alpha)
            yield 2 * c + s + 1, c % 10 + 1, split, np.arange(n, dtype=np.int32), (g / g.sum(1, keepdims=True)).astype(
                np.float32)


def arrow_rows(idx, probs, fixed: bool, pred: bool = True) -> pa.Table:
    n = len(idx)
    flat = pa.array(probs.reshape(-1))
    arr = (pa.FixedSizeListArray.from_arrays(flat, K) if fixed
           else pa.ListArray.from_arrays(pa.array(np.arange(0, (n + 1) * K, K, dtype=np.int32)), flat))
    cols = {"idx": pa.array(idx)}
    if pred:
        cols["pred"] = pa.array(probs.argmax(1).astype(np.int16))
    cols["probs"] = arr
    return pa.table(cols)


def run_layout(name: str, path: Path, n_ckpt: int, n: int) -> dict:
    con = duckdb.connect(str(path))
    if name == "bare":
        con.execute(f"CREATE TABLE rows_ (ckpt INTEGER NOT NULL, idx INTEGER NOT NULL, pred SMALLINT NOT NULL, "
                    f"probs FLOAT[{K}] NOT NULL)")
    elif name == "rows":
        con.execute("CREATE TABLE predictions (run_id VARCHAR NOT NULL, member VARCHAR NOT NULL, checkpoint VARCHAR "
                    "NOT NULL, epoch INTEGER, split VARCHAR NOT NULL, idx INTEGER NOT NULL, pred SMALLINT NOT NULL, "
                    "probs FLOAT[] NOT NULL, kind VARCHAR)")
    else:
        probs = "FLOAT[]" if name == "key+list" else f"FLOAT[{K}]"
        pred = "" if name == "key+array, no pred" else "pred SMALLINT NOT NULL, "
        con.execute(f"CREATE TABLE rows_ (ckpt INTEGER NOT NULL, idx INTEGER NOT NULL, {pred}probs {probs} NOT NULL)")
        con.execute("CREATE TABLE checkpoints (ckpt INTEGER NOT NULL, run_id VARCHAR NOT NULL, kind VARCHAR NOT NULL, "
                    "member VARCHAR NOT NULL, checkpoint VARCHAR NOT NULL, epoch INTEGER, split VARCHAR NOT NULL, "
                    "num_labels INTEGER NOT NULL)")
    rows, spent = 0, 0.0
    pending = []
    for ckpt, epoch, split, idx, p in batches(n_ckpt, n):
        pending.append((ckpt, epoch, split, idx, p))
        if len(pending) < 2:
            continue
        t0 = time.perf_counter()
        con.begin()
        for ckpt_, epoch_, split_, idx_, p_ in pending:
            if name == "bare":
                con.register("b", arrow_rows(idx_, p_, fixed=True))
                con.execute("INSERT INTO rows_ SELECT ?::INTEGER, idx, pred, probs FROM b", [ckpt_])
            elif name == "rows":
                con.register("b", arrow_rows(idx_, p_, fixed=False))
                con.execute("INSERT INTO predictions BY NAME SELECT ?::VARCHAR AS run_id, ?::VARCHAR AS kind, "
                            "?::VARCHAR AS member, ?::VARCHAR AS checkpoint, ?::INTEGER AS epoch, ?::VARCHAR "
                            "AS split, idx, pred, probs FROM b",
                            ["bench-run-2024", "member", "m03", f"epoch-{epoch_}", epoch_, split_])
            else:
                con.execute("INSERT INTO checkpoints VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                            [ckpt_, "bench-run-2024", "member", "m03", f"epoch-{epoch_}", epoch_, split_, K])
                has_pred = name != "key+array, no pred"
                con.register("b", arrow_rows(idx_, p_, fixed=name != "key+list", pred=has_pred))
                con.execute(f"INSERT INTO rows_ SELECT ?::INTEGER, idx, {'pred, ' if has_pred else ''}probs "
                            "FROM b", [ckpt_])
            con.unregister("b")
        con.commit()
        spent += time.perf_counter() - t0
        rows += sum(len(x[3]) for x in pending)
        pending = []
    con.execute("CHECKPOINT")
    con.close()
    size = path.stat().st_size
    # read one checkpoint back as numpy, through Arrow
    con = duckdb.connect(str(path), read_only=True)
    target = n_ckpt  # a checkpoint in the middle
    t0 = time.perf_counter()
    for _ in range(5):
        if name == "rows":
            t = con.sql("SELECT idx, probs FROM predictions WHERE run_id = ? AND kind = 'member' AND member = ? "
                        "AND checkpoint = ? AND split = ?",
                        params=["bench-run-2024", "m03", f"epoch-{(target - 1) // 2 % 10 + 1}", "valid"]).to_arrow_table()
        else:
            t = con.sql("SELECT idx, probs FROM rows_ WHERE ckpt = ?", params=[target]).to_arrow_table()
        a = t.column("probs").combine_chunks().flatten().to_numpy().reshape(-1, K)
    read_s = (time.perf_counter() - t0) / 5
    con.close()
    assert a.shape[1] == K
    return {"layout": name, "rows": rows, "insert_rows_per_s": round(rows / spent),
            "bytes_per_row": round(size / rows, 2), "read_one_rows_per_s": round(len(a) / read_s)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoints", type=int, default=20)
    ap.add_argument("--examples", type=int, default=50_000)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="runner-layouts-"))
    try:
        run_layout("bare", work / "warm-up.duckdb", 1, 1000)
        out = []
        for name in ("bare", "rows", "key+list", "key+array", "key+array, no pred"):
            r = run_layout(name, work / f"{name.replace('+', '_').replace(', ', '_')}.duckdb", args.checkpoints,
                           args.examples)
            out.append(r)
            print(f"{name:20s} {r['insert_rows_per_s']:>12,} rows/s  {r['bytes_per_row']:6.2f} B/row  "
                  f"read one checkpoint {r['read_one_rows_per_s']:>12,} rows/s", flush=True)
        print(json.dumps(out))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
