"""Store migrations m009 to m012: the confusion view, where a run was trained, how each member's
tokenizer met the data, and predictions keyed by checkpoint with fixed-size probabilities.

This file holds four: start m013_m016.py for the next one.

Never edit one that has shipped (runner.store.migrations says why).
"""

from __future__ import annotations


def m009_confusion(con) -> None:
    """The `confusion` view: how often each true `label` was predicted as `pred`, per run, kind, member,
    checkpoint and split, for predictions of labelled examples (input-<hash> splits too), with the run's
    label names; a pair never seen has no row. The SQL twin of runner.core.maths.confusion."""
    con.execute(
        "CREATE VIEW confusion AS SELECT p.run_id, p.kind, p.member, p.checkpoint, p.split, e.label, p.pred, "
        "r.label_names ->> e.label AS label_name, r.label_names ->> p.pred AS pred_name, count(*) AS n "
        "FROM predictions p JOIN runs r USING (run_id) JOIN examples e ON e.dataset_id = r.dataset_id "
        "AND e.split = p.split AND e.idx = p.idx WHERE e.label IS NOT NULL GROUP BY ALL")


def m010_run_environment(con) -> None:
    """Where a run was trained: `runs.environment` (JSON) holds the versions of runner, Python, torch,
    transformers and duckdb, the git commit of the spec's folder, the host and device names, and the
    spec file and plugins folder `apply` read (runner.core.environment). NULL for older runs."""
    con.execute("ALTER TABLE runs ADD COLUMN environment JSON")


def m011_token_stats(con) -> None:
    """`token_stats`: how each member's tokenizer met each split of the run's data, measured by the dry
    run before training (runner.data.token_stats): `texts`, `tokens` (the texts' own tokens, before
    truncation), `unknown` (how many are the unknown token; NULL for a tokenizer without one) and
    `texts_with_unknown`, `truncated` (texts longer than `max_length` with the special tokens) and
    `longest`. A pretrained vocabulary can cover the task's text badly, and nothing else shows it.
    """
    con.execute(
        """
        CREATE TABLE token_stats (
            run_id VARCHAR NOT NULL,
            member VARCHAR NOT NULL,
            split VARCHAR NOT NULL,
            max_length INTEGER NOT NULL,
            texts INTEGER NOT NULL,
            tokens BIGINT NOT NULL,
            unknown BIGINT,
            texts_with_unknown INTEGER,
            truncated INTEGER NOT NULL,
            longest INTEGER NOT NULL
        )
        """
    )


def m012_checkpoints_and_fixed_size_probabilities(con) -> None:
    """Predictions at sweep scale: a `checkpoints` table and a rows table per class count.

    The `predictions` table repeated run_id, kind, member, checkpoint, epoch and split as strings in
    every row, and its `probs` was a variable-length FLOAT[]. Now:

    - `checkpoints`: one row per (run_id, kind, member, checkpoint, epoch, split) that has
      predictions, with a small integer key `ckpt` (numbered in insertion order, so a checkpoint's rows
      are one contiguous stretch that DuckDB's zone maps find) and its `num_labels`;
    - `predictions_<k>` (one per class count k a run has): `ckpt`, `idx`, `pred` and `probs FLOAT[k]`,
      a fixed-size array that reads back as one numpy block, ordered by ckpt and idx;
    - `predictions` becomes a view over them with the old table's columns and types (probs as
      FLOAT[]), so SQL written against the table keeps working unchanged.

    Existing rows are moved over; the old table goes. (bench/store_layouts.py measured the candidates.)
    """
    con.execute(
        """
        CREATE TABLE checkpoints (
            ckpt INTEGER NOT NULL,
            run_id VARCHAR NOT NULL,
            kind VARCHAR NOT NULL,
            member VARCHAR NOT NULL,
            checkpoint VARCHAR NOT NULL,
            epoch INTEGER,
            split VARCHAR NOT NULL,
            num_labels INTEGER NOT NULL
        );
        INSERT INTO checkpoints
        SELECT (row_number() OVER (ORDER BY run_id, kind, member, checkpoint, epoch, split))::INTEGER,
               run_id, kind, member, checkpoint, epoch, split, num_labels
        FROM (SELECT run_id, coalesce(kind, 'member') AS kind, member, checkpoint, epoch, split,
                     max(len(probs)) AS num_labels
              FROM predictions GROUP BY ALL);
        """
    )
    counts = [r[0] for r in con.execute("SELECT DISTINCT num_labels FROM checkpoints ORDER BY 1").fetchall()]
    for k in counts:
        con.execute(f"CREATE TABLE predictions_{k} (ckpt INTEGER NOT NULL, idx INTEGER NOT NULL, "
                    f"pred SMALLINT NOT NULL, probs FLOAT[{k}] NOT NULL)")
        con.execute(
            f"INSERT INTO predictions_{k} SELECT c.ckpt, p.idx, p.pred, p.probs::FLOAT[{k}] FROM predictions p "
            "JOIN checkpoints c ON c.run_id = p.run_id AND c.kind = coalesce(p.kind, 'member') AND "
            "c.member = p.member AND c.checkpoint = p.checkpoint AND c.epoch IS NOT DISTINCT FROM p.epoch "
            f"AND c.split = p.split WHERE c.num_labels = {k} ORDER BY c.ckpt, p.idx")
    rows = " UNION ALL ".join(f"SELECT ckpt, idx, pred, probs::FLOAT[] AS probs FROM predictions_{k}" for k in counts)
    rows = rows or "SELECT NULL::INTEGER AS ckpt, NULL::INTEGER AS idx, NULL::SMALLINT AS pred, NULL::FLOAT[] AS probs WHERE false"
    con.execute("DROP TABLE predictions")
    con.execute("CREATE VIEW predictions AS SELECT c.run_id, c.member, c.checkpoint, c.epoch, c.split, p.idx, p.pred, "
                f"p.probs, c.kind FROM checkpoints c JOIN ({rows}) p ON p.ckpt = c.ckpt")


STEPS = [m009_confusion, m010_run_environment, m011_token_stats, m012_checkpoints_and_fixed_size_probabilities]
