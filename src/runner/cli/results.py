"""Commands that read a store: `runner runs`, `sql`, `compare`, `ensemble` and `plot`."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from runner.cli.app import (
    PLUGINS_OPT,
    RUN_ARG,
    STORE_OPT,
    Format,
    _read_registry,
    command,
    emit,
    err,
    note,
    say,
    show,
)
from runner.errors import InputError


@command
def runs(store: Path = STORE_OPT, format: Format = typer.Option(Format.table, "--format"),
         long: bool = typer.Option(False, "--long", "-l",
                                   help="Also each run's name, dataset, seconds, refit link and where it was trained "
                                        "(versions, git commit, host, device).")):
    """One line per run in the store: status, members finished, and the spec's selection metric on
    validation for the ensemble and the best member."""
    # start-up time (runner.cli)
    from runner.store import Store

    st = Store(store).open_read()
    cols, rows = st.run_lines(long=long)
    if long:
        cols, rows = _with_environment(cols, rows)
        if format in (Format.table, Format.markdown):
            show([_run_card(dict(zip(cols, r))) for r in rows] or Table(title=f"No runs in {store}"), format)
        else:
            emit(cols, rows, format)
    elif format in (Format.table, Format.markdown) and len({r[cols.index("metric")] for r in rows}) == 1:
        # one metric for every run (the usual case): said once, in the title, so the table fits 100 columns
        i = cols.index("metric")
        emit(cols[:i] + cols[i + 1:], [r[:i] + r[i + 1:] for r in rows], format,
             title=f"Runs in {store} (ensemble and best member: {rows[0][i]} on valid)")
    else:
        emit(cols, rows, format, title=f"Runs in {store} (ensemble and best member: the metric on valid)")
    note(st.notice)  # an older store, read through an upgraded copy; said last, so a failure stays one paragraph


def _with_environment(cols: list[str], rows: list[tuple]) -> tuple[list[str], list[tuple]]:
    """The `environment` JSON column as one column per key (`runner`, `torch`, `git_commit`, `host`...)."""
    i = cols.index("environment")
    envs = [json.loads(r[i]) if isinstance(r[i], str) else (r[i] or {}) for r in rows]
    keys = list(dict.fromkeys(k for env in envs for k in env))
    return (cols[:i] + cols[i + 1:] + keys,
            [r[:i] + r[i + 1:] + tuple(env.get(k) for k in keys) for r, env in zip(rows, envs)])


def _run_card(row: dict) -> Table:
    """One run of `runs --long` as a two-column table (fits a narrow terminal, however many keys)."""
    table = Table(title=f"Run {row['run_id']}", show_header=False, title_justify="left")
    table.add_column("key", style="bold")
    table.add_column("value", overflow="fold")
    for key, value in row.items():
        if key != "run_id" and value is not None:
            table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    return table


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
                                             help="Comma-separated strategies to show (default: the spec's, swa, "
                                                  "last and best_eval_loss; csv and json: every registered one; "
                                                  "`runner plugins` lists them)."),
    all_strategies: bool = typer.Option(False, "--all", help="Every registered strategy."),
    columns: Optional[str] = typer.Option(None, "--columns",
                                          help="Comma-separated columns, such as eval_log_loss,eval_objective,"
                                               "test_accuracy,tvd,shares (an unknown name lists them all). Default: "
                                               "the spec's selection metric, test accuracy, F1 and log loss, tvd, "
                                               "shares; csv and json: every base column."),
    classes: bool = typer.Option(False, "--classes", help="Per class instead: the confusion matrix and each class's "
                                                          "precision, recall and F1 of every row (default: the "
                                                          "spec's strategy only)."),
    split: Optional[str] = typer.Option(None, "--split", help="With --classes: the split (test, valid, or a stored "
                                                              "prediction's input-<hash>; default: test)."),
    format: Format = typer.Option(Format.table, "--format"),
):
    """The selection-strategy table: each member and the ensemble under the spec's strategy, swa, last and
    best_eval_loss (--all: every registered strategy). Strategies that pick the same checkpoints share a block.

    A run with replicas (`repeats = N`) also gets each strategy over its seeds (mean ± sd) and paired
    bootstrap intervals of its test accuracy minus the run's selected strategy's. Reads only: ensembles
    that `apply` did not store are computed in memory.
    """
    # start-up time (runner.cli)
    from runner.analysis import columns as cols
    from runner.analysis.compare import compare as build
    from runner.analysis.compare import default_strategies, render
    from runner.store import Store

    if all_strategies and strategies:
        raise InputError("--all and --strategies: give one of them")
    if split is not None and not classes:
        raise InputError("--split: goes with --classes (the strategies table measures class shares on test)")
    registry = _read_registry(plugins, store, run)
    chosen = cols.parse(columns, registry) if columns is not None else None
    st = Store(store).open_read()
    wanted = [s.strip() for s in strategies.split(",") if s.strip()] if strategies else None
    if other is not None:
        if classes or chosen or all_strategies:
            raise InputError("--classes, --columns and --all: not with two runs (compare A B)")
        return _compare_two(st, run, other, registry, wanted, format)
    record = st.run(run)
    if wanted is None and not all_strategies:  # csv and json: every strategy, as the rows to query
        if classes:
            wanted = [record.selected_strategy]
        elif format in (Format.table, Format.markdown):
            wanted = default_strategies(record, registry)
    c = build(st, record, registry, wanted or None, chosen, seeds=not classes)
    if classes:
        _classes(c, split, format)
    elif format in (Format.table, Format.markdown):
        show(render(c), format)
    else:
        records = c.records()
        keys = list(dict.fromkeys(k for r in records for k in r))  # a replica's rows over seeds add columns
        records = [{k: r.get(k) for k in keys} for r in records]
        emit(keys, [list(r.values()) for r in records], format)
    unregistered = sorted(st.metric_names(c.run_id) - set(registry.names("metrics")) - {"loss"})
    if unregistered:
        trained = st.environment(c.run_id).get("plugins")
        note(f"run {c.run_id} stored metrics no loaded plugin registers ({', '.join(unregistered)}): their strategies "
             "are not shown; pass --plugins DIR with the plugins the run was trained with"
             + (f" ({trained})" if trained else ""))
    note(st.notice)  # an older store, read through an upgraded copy in memory


def _classes(c, split: str | None, format: Format) -> None:
    """`runner compare --classes`: a confusion matrix with per-class precision, recall and F1 per row."""
    # start-up time (runner.cli)
    from runner.analysis.classes import class_reports
    from runner.analysis.classes import render as render_classes

    split = split or c.dist_split
    reports = class_reports(c.results, c.rows, split)
    if not reports:
        known = sorted(c.results.store.prediction_splits(c.run_id))
        raise InputError(f"--split {split!r}: run {c.run_id} has no predictions with labels on it (its splits with "
                         f"predictions: {', '.join(known) or 'none'})")
    if format in (Format.table, Format.markdown):
        show([render_classes(r, c.run_id, caption=r is reports[-1]) for r in reports], format)
    else:
        records = [rec for r in reports for rec in r.records()]
        emit(list(records[0]), [list(r.values()) for r in records], format)


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
    registry = _read_registry(plugins, store, run)
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
    """Learning curves, predicted class shares and the spec's model's confusion matrix of a run, or a sweep's
    objective by trial and one slice per parameter, as a PNG."""
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
    """One self-contained HTML page of a run or a sweep (no network: plots embedded, style inline): the plots
    first (learning curves, class shares, the confusion matrix), the members and their status, the strategies
    table with the best values marked, per-class precision and recall, SWA and ensemble weights, the spec; a
    sweep's trials, best params and re-scoring table; a refit's or a calibration's before and after. Readable
    on a phone, printable. Writes nothing to the store."""
    # start-up time (runner.cli)
    from runner.analysis.plot import target
    from runner.analysis.report import build, is_report
    from runner.store import Store
    from runner.store.writes import file_target, write_text

    registry = _read_registry(plugins, store, ref)
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
