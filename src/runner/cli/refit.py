"""`runner refit`: retrain a run's members on train+valid for the epochs a strategy chose."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from runner.cli.app import PLUGINS_OPT, STORE_OPT, _read_registry, command, err, options, out, say
from runner.core.quiet import quiet_libraries


@command
def refit(
    run: Optional[str] = typer.Argument(None, help="Run id, or a run name (its latest run); default: the latest run."),
    strategy: Optional[str] = typer.Option(
        None, "--strategy",
        help="Whose epoch counts to train for: `selected` (the run's own selection, the default) or any registered "
             "selection strategy (`runner plugins` lists them); `swa` trains and averages each member's SWA window."),
    store: Path = STORE_OPT,
    plugins: Optional[Path] = PLUGINS_OPT,
):
    """Retrain a finished run's members on train+valid, each for the epochs the strategy chose; a linked run.

    Each member trains again from scratch with the same seed and settings; test predictions are stored
    every epoch; the ensemble takes the weights fitted on validation in the parent. `runner compare
    PARENT` shows the refit beside it. A killed refit continues when the same command runs again.
    """
    quiet_libraries()
    # start-up time (runner.cli)
    from runner.core.progress import TrainingProgress
    from runner.run.refit import refit as run_refit

    registry = _read_registry(plugins, store, run)
    result = run_refit(store, run, strategy, registry=registry, progress=TrainingProgress(err), say=say,
                       verbose=options.verbose)
    if result.status != "up-to-date":
        # start-up time (runner.cli)
        from runner.analysis.summary import summary_table
        from runner.store import Store

        out.print(summary_table(Store(store), Store(store).run(result.run_id)))
    if result.status == "failed":
        raise typer.Exit(1)
