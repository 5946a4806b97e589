"""`runner gc`: remove the caches beside a store that no run references any more: the adapted
encoders ([adapt], runner.train.adapt) and the tokenized splits (runner.data.tokenized)."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import typer
from rich.table import Table

from runner.cli.app import STORE_OPT, command, err, out, say


@command
def gc(
    store: Path = STORE_OPT,
    dry_run: bool = typer.Option(False, "--dry-run", help="List what would be removed; remove nothing."),
):
    """Remove the adapted/ and tokenized/ folders beside the store that no run references.

    Each folder lists the stores that used it (stores.txt). An adapted encoder is kept while any of
    them that still exists has a member with its adapt_key; a tokenization while any of them has a
    run on its dataset (or a store cannot be read, to be safe). A folder a running apply is writing or
    recording (its lock is held) is kept. Interrupted adaptations (`<key>.partial`) are kept: the next
    `runner apply` resumes them; an interrupted tokenization nobody is writing is removed (it is redone
    in seconds).
    """
    # start-up time (runner.cli)
    from runner.data import tokenized
    from runner.store import Store
    from runner.train import adapt

    st = Store(store).open_read()
    # each entry's lock, held from the plan to the removal: an apply that is writing, renaming or
    # recording an entry holds it too (runner.store.caches), so nothing it will use is collected
    with ExitStack() as held:
        try:
            adapted, adapt_partial = adapt.gc_plan(st, None if dry_run else held)
            tokens, token_partial = tokenized.gc_plan(st, None if dry_run else held)
        finally:
            st.close()
        _collect(adapted, adapt.root_for(st.path), "adapted encoders", dry_run)
        for p in adapt_partial:
            err.print(f"{p.name}: an interrupted adaptation, kept (the next `runner apply` of its spec resumes it)",
                      highlight=False)
        _collect(tokens, tokenized.root_for(st.path), "tokenized splits", dry_run, leftovers=token_partial)


def _collect(entries, root: Path, what: str, dry_run: bool, leftovers=()) -> None:
    # start-up time (runner.cli)
    from runner.store.checkpoints import remove_under

    table = Table(title=f"{what} in {root}", title_style="bold")
    for col in ("key", "MB", "used by", "action"):
        table.add_column(col, justify="right" if col == "MB" else "left")
    freed = 0
    for e in entries:
        if e.used_by:
            action = "kept"
        else:
            action = "would remove" if dry_run else "removed"
            if not dry_run:
                remove_under(e.path, root)
            freed += e.size
        users = ", ".join(e.used_by) if e.used_by else "no run"
        table.add_row(e.key, f"{e.size / 1e6:.1f}", users, action)
    for p in leftovers:  # interrupted writes: nothing resumes them
        size = sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
        table.add_row(p.name, f"{size / 1e6:.1f}", "interrupted", "would remove" if dry_run else "removed")
        if not dry_run:
            remove_under(p, root)
        freed += size
    if entries or leftovers:
        out.print(table)
    verb = "would free" if dry_run else "freed"
    if entries or leftovers or what == "adapted encoders":
        say(f"{sum(1 for e in entries if not e.used_by)} of {len(entries)} {what} unreferenced; "
            f"{verb} {freed / 1e6:.1f} MB.")
