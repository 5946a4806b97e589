"""How each member's tokenizer met the run's data (table `token_stats`, measured by the dry run before
training: runner.data.token_stats), as the table `runner report` shows."""

from __future__ import annotations

from rich.table import Table

from runner.analysis.tables import table as fit_table
from runner.data.token_stats import TRUNCATED_WARN, UNKNOWN_WARN
from runner.store import Store


def tokens_table(store: Store, run_id: str) -> Table | None:
    """Per member and split: texts, tokens per text, the longest, the unknown token's share of the tokens
    and of the texts, and the texts cut at max_length; a share above the dry run's warning level in red.
    None for a run stored before runner measured it."""
    rows = store.token_stats(run_id)
    if not rows:
        return None
    table = fit_table(title="Tokenizers: each member's tokenizer over each split, before truncation (table token_stats)")
    for col in ("member", "split", "texts", "tokens per text", "longest", "unknown tokens", "texts with unknown",
                "cut at max_length"):
        text = col in ("member", "split")
        table.add_column(col, justify="left" if text else "right", no_wrap=not text)
    previous = None
    for r in rows:
        if previous is not None and r["member"] != previous:
            table.rows[-1].end_section = True
        first = r["member"] != previous
        previous = r["member"]
        texts = r["texts"] or 1
        unknown = r["unknown"] / r["tokens"] if r["unknown"] is not None and r["tokens"] else None
        with_unknown = r["texts_with_unknown"] / texts if r["texts_with_unknown"] is not None else None
        cut = r["truncated"] / texts
        table.add_row(r["member"] if first else "", r["split"], str(r["texts"]), f"{r['tokens'] / texts:.1f}",
                      str(r["longest"]), _share(unknown, UNKNOWN_WARN), _share(with_unknown, None),
                      _share(cut, TRUNCATED_WARN) + f" (at {r['max_length']})")
    return table


def _share(value: float | None, warn: float | None) -> str:
    if value is None:
        return "n/a"
    text = f"{value:.1%}"
    return f"[red]{text}[/]" if warn is not None and value > warn else text
