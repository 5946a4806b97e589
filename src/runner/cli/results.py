"""Commands that read a store: `runner runs`, `sql`, `compare`, `ensemble` and `plot`."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from runner.cli.app import PLUGINS_OPT, RUN_ARG, STORE_OPT, Format, _registry, command, emit, err, note, say, show
from runner.errors import InputError


@command
def runs(store: Path = STORE_OPT, format: Format = typer.Option(Format.table, "--format")):
    """One line per run in the store."""
    # start-up time (runner.cli)
    from runner.store import Store

    st = Store(store).open_read()
    cols, rows = st.run_lines()
    emit(cols, rows, format, title=f"Runs in {store}")
    note(st.notice)  # an older store, read through an upgraded copy; said last, so a failure stays one paragraph


@command
def sql(
    query: str = typer.Argument(..., help="SQL to run against the store (read-only)."),
    store: Path = STORE_OPT,
    format: Format = typer.Option(Format.table, "--format"),
    allow_write: bool = typer.Option(False, "--allow-write", help="Allow statements that change the store."),
    timeout: float = typer.Option(60.0, "--timeout", help="Stop the query after this many seconds."),
    memory_limit: Optional[str] = typer.Option(
        None, "--memory-limit",
        help="DuckDB memory cap for the query, a size (2GB) or a share of RAM (10%); default 25% of RAM, "
             "leaving the rest to a training run beside it."),
):
    """Run SQL against the store, read-only unless --allow-write, and print the result.

    A table shows the first rows only; csv and json stream every row.
    """
    # start-up time (runner.cli)
    from runner.store.sqlguard import sql_query

    table_rows = 1000
    with sql_query(store, query, allow_write=allow_write, timeout=timeout, memory=memory_limit) as result:
        cols = result.columns
        if format in (Format.table, Format.markdown):
            rows = result.fetch(table_rows + 1)
            emit(cols, rows[:table_rows], format)
            if len(rows) > table_rows:
                err.print(f"note: showing the first {table_rows} rows; add a LIMIT, or use --format csv or json "
                          "for every row.", highlight=False, markup=False)
        elif format == Format.csv:
            w = csv.writer(sys.stdout)
            w.writerow(cols)
            for batch in result.batches():
                w.writerows(batch)
        else:
            sys.stdout.write("[")
            sep = "\n "
            for batch in result.batches():
                for r in batch:
                    sys.stdout.write(sep + json.dumps(dict(zip(cols, r)), default=str))
                    sep = ",\n "
            sys.stdout.write("\n]\n" if sep != "\n " else "]\n")
        note(result.notice)  # said last, so that a failure stays one paragraph


@command
def compare(
    run: Optional[str] = RUN_ARG,
    other: Optional[str] = typer.Argument(
        None, metavar="[B]", help="A second run (id or name): compare RUN (A) with it, B - A on the same test "
                                  "examples with paired intervals (over seeds too when both have replicas)."),
    store: Path = STORE_OPT,
    plugins: Optional[Path] = PLUGINS_OPT,
    strategies: Optional[str] = typer.Option(None, "--strategies",
                                             help="Comma-separated strategies to show (default: every registered "
                                                  "one; `runner plugins` lists them)."),
    format: Format = typer.Option(Format.table, "--format"),
):
    """The selection-strategy table: each member and the ensemble under every registered strategy.

    A run with replicas (`repeats = N`) also gets each strategy over its seeds (mean ± sd) and paired
    bootstrap intervals of its test accuracy minus the run's selected strategy's.
    """
    # start-up time (runner.cli)
    from runner.analysis.compare import compare as build
    from runner.analysis.compare import render
    from runner.store import Store

    registry = _registry(None, plugins)
    st = Store(store).open_read()
    wanted = [s.strip() for s in strategies.split(",") if s.strip()] if strategies else None
    if other is not None:
        return _compare_two(st, run, other, registry, wanted, format)
    c = build(st, st.run(run), registry, wanted)
    if format in (Format.table, Format.markdown):
        show(render(c), format)
    else:
        records = c.records()
        cols = list(dict.fromkeys(k for r in records for k in r))  # a replica's rows over seeds add columns
        records = [{k: r.get(k) for k in cols} for r in records]
        emit(cols, [list(r.values()) for r in records], format)
    unregistered = sorted(st.metric_names(c.run_id) - set(registry.names("metrics")) - {"loss"})
    if unregistered:
        note(f"run {c.run_id} stored metrics no loaded plugin registers ({', '.join(unregistered)}): their strategies "
             "are not shown; pass --plugins DIR with the plugins the run was trained with")
    note(st.notice)  # an older store: ensembles built here went to its in-memory copy, never to the file


def _compare_two(st, a: str | None, b: str, registry, wanted, format) -> None:
    # start-up time (runner.cli)
    from runner.analysis.compare_runs import compare_runs

    if wanted:
        unknown = [s for s in wanted if s != "selected" and registry.selection(s) is None]
        if unknown:
            raise InputError(f"--strategies: {', '.join(unknown)} is not a registered strategy; one of: selected, "
                             + ", ".join(registry.names("selections")))
    c = compare_runs(st, st.run(a), st.run(b), registry, wanted, ref_b=f"B {b!r}")
    if format in (Format.table, Format.markdown):
        show(c.render(), format)
    else:
        records = c.records()
        cols = list(records[0]) if records else ["model", "strategy"]
        emit(cols, [list(r.values()) for r in records], format)
    note(st.notice)


def parse_weights(weights: str) -> str | list[float]:
    import math

    if weights in ("equal", "fit"):
        return weights
    try:
        w = [float(x) for x in weights.split(",") if x.strip()]
    except ValueError:
        w = []
    if not w or any(not math.isfinite(x) or x < 0 for x in w) or sum(w) <= 0:
        raise InputError(f"--weights {weights!r}: give 'equal', 'fit', or finite non-negative numbers, not all "
                         "zero, such as 0.5,0.3,0.2")
    return w


@command
def ensemble(
    run: Optional[str] = RUN_ARG,
    weights: str = typer.Option("equal", "--weights", help="'equal', 'fit', or comma-separated weights."),
    members: Optional[str] = typer.Option(None, "--members", help="Comma-separated members (default: all)."),
    checkpoint: str = typer.Option("selected", "--checkpoint",
                                   help="Which checkpoint of each member: `selected` (the spec's [selection]) or "
                                        "any registered selection strategy (`runner plugins` lists them)."),
    name: Optional[str] = typer.Option(None, "--name", help="Name of the ensemble (its `member` in the store)."),
    store: Path = STORE_OPT,
    plugins: Optional[Path] = PLUGINS_OPT,
    format: Format = typer.Option(Format.table, "--format"),
):
    """Add an ensemble to a finished run from its stored probabilities (no model is run) and print it."""
    import re

    # start-up time (runner.cli)
    from runner.posthoc.ensemble import build_ensemble
    from runner.spec.models import NAME_PATTERN
    from runner.store import Store

    w = parse_weights(weights)
    if name is not None and not re.match(NAME_PATTERN, name):
        raise InputError(f"--name {name!r}: a name is a letter or digit, then letters, digits, _ . or - "
                         "(at most 100 characters)")
    member_list = [m.strip() for m in members.split(",") if m.strip()] if members else None
    registry = _registry(None, plugins)
    st = Store(store).open(create=False)
    ens = build_ensemble(st, st.run(run), registry, checkpoint, w, member_list, name=name)
    cols = ["ensemble", "strategy", "member", "checkpoint", "weight"]
    rows = [[ens.name, ens.strategy, m, c, float(x)] for m, c, x in zip(ens.members, ens.checkpoints, ens.weights)]
    emit(cols, rows, format, title=f"Ensemble {ens.name} of run {ens.run_id} ({ens.method} weights)")
    if format in (Format.table, Format.markdown):
        mt = Table(title="Metrics")
        mt.add_column("metric")
        mt.add_column("value", justify="right")
        for k, v in ens.metrics.items():
            mt.add_row(k, f"{v:.4f}")
        if format == Format.markdown:
            sys.stdout.write("\n")
        show(mt, format)


@command
def plot(
    ref: Optional[str] = typer.Argument(
        None, metavar="RUN|SWEEP",
        help="A run id or run name (its latest run), else a sweep id or the sweep spec's name (its latest "
             "sweep): a run is tried first, then a sweep. Default: the latest run (with --sweep, the latest sweep)."),
    sweep: bool = typer.Option(False, "--sweep", help="Read the argument as a sweep only (for a sweep whose name a "
                                                      "run also has); with no argument, the latest sweep."),
    store: Path = STORE_OPT,
    out: Path = typer.Option(None, "--out", help="PNG file to write (default: <run_id>.png, or <sweep_id>.png, "
                                                 "beside the store); .pdf and .svg work too."),
):
    """Learning curves and predicted class shares of a run, or a sweep's objective by trial and one slice per
    parameter, as a PNG."""
    # start-up time (runner.cli)
    from runner.analysis.plot import FIGURE_SUFFIXES, is_plot, plot_run, target
    from runner.analysis.sweep_plot import load, plot_sweep
    from runner.store import Store
    from runner.store.writes import file_target

    st = Store(store).open_read()
    kind, record, aside = target(st, ref, sweep)
    stem = record.run_id if kind == "run" else record["sweep_id"]
    data = load(st, record) if kind == "sweep" else None  # a sweep with no finished trial: exit 2, before --out
    if out is None:
        out = store.parent / f"{stem}.png"
    out = file_target(out, "--out", suffixes=FIGURE_SUFFIXES, recognise=is_plot, store=store,
                      made_by="an image `runner plot` wrote", example=f"{stem}.png")
    if kind == "run":
        plot_run(st, record, out)
    else:
        plot_sweep(data, out)
    say(f"wrote {out.given}")
    note(aside)
    note(st.notice)  # an older store, read through an upgraded copy in memory




@command
def report(
    ref: Optional[str] = typer.Argument(
        None, metavar="[RUN|SWEEP]",
        help="A run id or run name (its latest run), else a sweep id or the sweep spec's name (its latest sweep), "
             "as `runner plot` reads it. Default: the latest run (with --sweep, the latest sweep)."),
    sweep: bool = typer.Option(False, "--sweep", help="Read the argument as a sweep only; with no argument, the "
                                                      "latest sweep."),
    store: Path = STORE_OPT,
    plugins: Optional[Path] = PLUGINS_OPT,
    out: Path = typer.Option(None, "--out", help="HTML file to write (default: <run_id>.html, or <sweep_id>.html, "
                                                 "beside the store). An existing file is replaced only when it is an "
                                                 "earlier report."),
):
    """One self-contained HTML page of a run or a sweep (no network: plots embedded, style inline): the spec,
    the members and their status, the strategies table with the best values marked, learning curves and class
    shares, SWA and ensemble weights; a sweep's trials, best params and re-scoring table; a refit's or a
    calibration's before and after. Readable on a phone, printable."""
    # start-up time (runner.cli)
    from runner.analysis.plot import target
    from runner.analysis.report import build, is_report
    from runner.store import Store
    from runner.store.writes import file_target, write_text

    registry = _registry(None, plugins)
    st = Store(store).open_read()
    kind, record, aside = target(st, ref, sweep)
    stem = record.run_id if kind == "run" else record["sweep_id"]
    if out is None:
        out = store.parent / f"{stem}.html"
    out = file_target(out, "--out", suffixes=(".html", ".htm"), recognise=is_report, store=store,
                      made_by="a page `runner report` wrote", example="report.html")
    text = build(st, kind, record, registry)
    write_text(out, text)
    say(f"wrote {out.given} ({len(text.encode()) / 1e6:.1f} MB, self-contained: open it in any browser, offline)")
    note(aside)
    note(st.notice)
