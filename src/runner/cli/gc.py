"""`runner gc`: remove the adapted encoders ([adapt], runner.adapt) that no run references any more."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from . import STORE_OPT, command, err, out, say


@command
def gc(
    store: Path = STORE_OPT,
    dry_run: bool = typer.Option(False, "--dry-run", help="List what would be removed; remove nothing."),
):
    """Remove the adapted/ folders beside the store that no member of any run references.

    Each folder lists the stores that used it (stores.txt); a folder is kept while any of them that
    still exists has a member with its adapt_key (or cannot be read, to be safe). Interrupted
    adaptations (`<key>.partial`) are kept: the next `runner apply` resumes them.
    """
    from ..adapt import gc_plan, root_for
    from ..checkpoints import remove_under
    from ..store import Store

    st = Store(store).open_read()
    try:
        entries, partial = gc_plan(st)
    finally:
        st.close()
    root = root_for(st.path)
    table = Table(title=f"adapted encoders in {root}", title_style="bold")
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
    if entries:
        out.print(table)
    for p in partial:
        err.print(f"{p.name}: an interrupted adaptation, kept (the next `runner apply` of its spec resumes it)",
                  highlight=False)
    verb = "would free" if dry_run else "freed"
    say(f"{sum(1 for e in entries if not e.used_by)} of {len(entries)} adapted encoders unreferenced; "
        f"{verb} {freed / 1e6:.1f} MB.")
