"""Store migrations m009 to m011: the confusion view, where a run was trained, and how each member's
tokenizer met the data.

Append a new migration here, and to STEPS; start m013_m016.py when this file holds four.

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


STEPS = [m009_confusion, m010_run_environment, m011_token_stats]
