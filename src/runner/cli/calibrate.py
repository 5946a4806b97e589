"""`runner calibrate`: temperature scaling and prior correction from stored probabilities."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from runner.cli.app import PLUGINS_OPT, RUN_ARG, STORE_OPT, Format, _read_registry, command, emit, say, show


@command
def calibrate(
    run: Optional[str] = RUN_ARG,
    strategy: Optional[str] = typer.Option(
        None, "--strategy",
        help="Calibrate each member's checkpoint under this selection strategy (and their SWA checkpoints, and "
             "the spec's ensemble over it); default: the strategy the run selected with (its spec's selection "
             "metric); `runner plugins` lists them."),
    method: str = typer.Option(
        "temperature", "--method",
        help="`temperature` (one scalar T: softmax(log p / T)) or `temperature+bias` (T and a per-class bias, a "
             "prior correction: softmax(log p / T + b))."),
    store: Path = STORE_OPT,
    plugins: Optional[Path] = PLUGINS_OPT,
    format: Format = typer.Option(Format.table, "--format"),
):
    """Fit a calibration on a finished run's stored validation probabilities (no model is run), store it,
    and print validation and test log-loss, ECE and class shares before and after."""
    # start-up time (runner.cli)
    from runner.analysis.compare_calibration import render
    from runner.posthoc.calibrate import calibrate as fit_all
    from runner.posthoc.calibrate import check_method, plan, stored, true_shares
    from runner.store import Store

    check_method(method)
    registry = _read_registry(plugins, store, run)
    p = plan(Store(store).open_read(), run, strategy, registry)  # every bad input is found before a write
    st = Store(store).open(create=False)
    if p.build_ensemble:
        say(f"building the spec's ensemble over {p.strategy} from the stored probabilities first")
    done = fit_all(st, p, method, registry)
    say(f"stored {len(done)} calibration{'s' if len(done) != 1 else ''} of run {p.run.run_id} in {store}: table "
        f"`calibrations`, and `metrics` rows named <metric>@{method} (and <metric>@none, before)")
    keys = {(c.kind, c.member, c.checkpoint, c.method) for c in done}
    rows = [c for c in stored(st, p.run) if (c.kind, c.member, c.checkpoint, c.method) in keys]
    if format in (Format.table, Format.markdown):
        true = true_shares(st, p.run)
        split = "test" if "test" in true else "valid"
        show(render(rows, p.run.label_names, list(true[split]), split,
                    f"Run {p.run.run_id}: {method} calibration fitted on valid ({p.strategy})"), format)
    else:
        records = []
        for c in rows:
            rec = {"kind": c.kind, "member": c.member, "checkpoint": c.checkpoint, "method": c.method,
                   "temperature": c.temperature, "bias": c.bias}
            rec.update(c.metrics)
            records.append(rec)
        cols = list(dict.fromkeys(k for r in records for k in r))
        emit(cols, [[r.get(k) for k in cols] for r in records], format)
