"""`runner sweep`: a stored sweep's trials, best params, importances and re-scoring table."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from runner.cli.app import PLUGINS_OPT, STORE_OPT, Format, _read_registry, command, emit, note, show


@command
def sweep(
    ref: Optional[str] = typer.Argument(None, metavar="[SWEEP]",
                                        help="Sweep id, or the spec's name (its latest sweep); default: the latest."),
    store: Path = STORE_OPT,
    plugins: Optional[Path] = PLUGINS_OPT,
    format: Format = typer.Option(Format.table, "--format"),
):
    """The trials of a sweep sorted by objective, the best params, Optuna's parameter importances, and
    which trial each selection strategy would pick (re-scored from stored predictions, no training)."""
    # start-up time (runner.cli)
    from runner.analysis.sweep_view import load_view, render
    from runner.store import Store

    reader = Store(store).open_read()
    view = load_view(reader, ref, _read_registry(plugins, store, ref))
    if format in (Format.table, Format.markdown):
        show(render(view), format)
    else:
        cols = ["number", "status", "value", "run_id", "params"]
        emit(cols, [[t[c] for c in cols] for t in view.trials], format)
    note(reader.notice)
