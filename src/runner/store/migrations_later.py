"""The store's migrations after m010, continuing the list of runner.store.migrations (a module of its
own because that one reached the size a module may have). The same rules: append only, never edit
one that has shipped, and say in its docstring why it exists. runner.store.connection imports this
module, so `MIGRATIONS` is complete wherever a store is opened.
"""

from __future__ import annotations

from runner.store.migrations import MIGRATIONS, migration

__all__ = ["MIGRATIONS"]


@migration
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
