"""The `runner` command line. The only place that turns a RunnerError into a message and an exit code."""

from __future__ import annotations

import csv
import io
import json
import sys
from enum import Enum
from functools import wraps
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .errors import InputError, RunnerError

app = typer.Typer(
    help="Declarative fine-tuning runs for text classifiers, with every epoch and prediction kept in DuckDB.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)
# Piped output (CI logs, `| less`) gets wide tables rather than rich's 80-column default.
if not out.is_terminal:
    out = Console(width=160)

STORE_OPT = typer.Option("results.duckdb", "--store", help="The DuckDB results file.")
PLUGINS_OPT = typer.Option(None, "--plugins", help="Plugins directory (default: plugins/ beside the spec).")


class Format(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"


def handle_errors(fn):
    """Translate library errors into a message on stderr and the error's exit code."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except RunnerError as e:
            err.print(Text("error: ", style="bold red") + Text(str(e)), highlight=False, soft_wrap=True)
            raise typer.Exit(e.exit_code) from None

    return wrapper


def _quiet_libraries() -> None:
    import logging
    import os
    import warnings

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.getLogger("transformers").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="transformers")
    warnings.filterwarnings("ignore", module="torch")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:
        pass


@app.command()
@handle_errors
def apply(
    spec: Path = typer.Argument(..., help="The spec TOML file."),
    store: Path = STORE_OPT,
    plugins: Optional[Path] = PLUGINS_OPT,
    force: bool = typer.Option(False, "--force", help="Start a new run even if this spec already has one."),
):
    """Validate the spec, train every member not yet complete, store everything, then SWA and ensemble."""
    _quiet_libraries()
    from .progress import TrainingProgress
    from .run import apply as run_apply

    result = run_apply(spec, store, plugins, force=force, progress=TrainingProgress(err),
                       say=lambda s: err.print(s, highlight=False, markup=False))
    if result.run_id and result.status != "up-to-date":
        from .report import summary_table

        out.print(summary_table(store, result.run_id))
    if result.status == "failed":
        raise typer.Exit(1)


@app.command()
@handle_errors
def validate(
    spec: Path = typer.Argument(..., help="The spec TOML file."),
    plugins: Optional[Path] = PLUGINS_OPT,
    check_models: bool = typer.Option(True, "--check-models/--no-check-models",
                                      help="Check that each member's model can be reached."),
):
    """Parse and resolve the spec, load its data, instantiate plugin options; print the resolved spec."""
    _quiet_libraries()
    from .run import plan

    p = plan(spec, plugins, check_models=check_models)
    out.print_json(json.dumps(p.resolved.to_dict()))
    d = p.data
    sizes = ", ".join(f"{k} {len(v)}" for k, v in d.splits.items())
    counts = d.class_counts("train")
    shares = ", ".join(f"{n} {c / sum(counts):.1%}" for n, c in zip(d.label_names, counts))
    err.print(f"[green]ok[/] {spec}: {len(p.resolved.members)} members; data {d.dataset_id}: {sizes}; "
              f"train classes: {shares}; spec hash {p.spec_hash[:12]}", highlight=False)


@app.command()
@handle_errors
def plugins(
    plugins: Optional[Path] = typer.Option(None, "--plugins", help="Plugins directory (default: ./plugins)."),
    format: Format = typer.Option(Format.table, "--format"),
):
    """List every registered backbone, loss, dataset and metric, and where it came from."""
    from .plugins import KINDS, SINGULAR, default_plugins_dir, load_registry

    pdir = plugins if plugins is not None else default_plugins_dir(None)
    if plugins is not None and not plugins.is_dir():
        raise InputError(f"--plugins {plugins}: not a directory")
    registry = load_registry(pdir)
    rows = []
    for kind in KINDS:
        for name in registry.names(kind):
            c = registry.get(kind, name)
            opts = ", ".join(c.options.model_fields) if c.options is not None else ""
            rows.append([SINGULAR[kind], name, c.origin, opts])
    emit(["kind", "name", "origin", "options"], rows, format, title="Registered components")


@app.command()
@handle_errors
def runs(store: Path = STORE_OPT, format: Format = typer.Option(Format.table, "--format")):
    """One line per run in the store."""
    from .store import Store

    st = Store(store).open(create=False)
    cols, rows = st.query(
        """
        SELECT r.run_id, r.name, r.status,
               count(m.member) FILTER (WHERE m.status = 'finished') || '/' || count(m.member) AS members,
               r.dataset_id, strftime(r.started_at, '%Y-%m-%d %H:%M:%S') AS started,
               CAST(round(epoch(r.finished_at - r.started_at), 1) AS DECIMAL(10, 1)) AS seconds
        FROM runs r LEFT JOIN members m USING (run_id)
        GROUP BY r.run_id, r.name, r.status, r.dataset_id, r.started_at, r.finished_at ORDER BY r.started_at
        """
    )
    emit(cols, rows, format, title=f"Runs in {store}")


@app.command()
@handle_errors
def sql(
    query: str = typer.Argument(..., help="SQL to run against the store (read-only)."),
    store: Path = STORE_OPT,
    format: Format = typer.Option(Format.table, "--format"),
    allow_write: bool = typer.Option(False, "--allow-write", help="Allow statements that change the store."),
):
    """Run SQL against the store, read-only unless --allow-write, and print the result."""
    from .sqlguard import run_sql

    cols, rows = run_sql(store, query, allow_write=allow_write)
    emit(cols, rows, format)


@app.command()
@handle_errors
def compare(
    run: Optional[str] = typer.Argument(None, help="Run id (default: the latest run)."),
    store: Path = STORE_OPT,
    format: Format = typer.Option(Format.table, "--format"),
):
    """The selection-strategy table: each member and the ensemble under every strategy."""
    from .compare import compare as build, render
    from .store import Store

    c = build(Store(store).open(create=False), run)
    if format == Format.table:
        out.print(render(c))
    else:
        records = c.records()
        cols = list(records[0]) if records else []
        emit(cols, [list(r.values()) for r in records], format)


@app.command()
@handle_errors
def ensemble(
    run: Optional[str] = typer.Argument(None, help="Run id (default: the latest run)."),
    weights: str = typer.Option("equal", "--weights", help="'equal', 'fit', or comma-separated weights."),
    members: Optional[str] = typer.Option(None, "--members", help="Comma-separated members (default: all)."),
    checkpoint: str = typer.Option("selected", "--checkpoint",
                                   help="Which checkpoint of each member: selected, swa, last, best_eval_loss, "
                                        "best_eval_accuracy, best_eval_f1_macro."),
    name: Optional[str] = typer.Option(None, "--name", help="Name of the ensemble (its checkpoint in the store)."),
    store: Path = STORE_OPT,
    format: Format = typer.Option(Format.table, "--format"),
):
    """Add an ensemble to a finished run from its stored probabilities (no model is run) and print it."""
    from .ensemble import build_ensemble
    from .store import Store

    if weights in ("equal", "fit"):
        w: str | list[float] = weights
    else:
        try:
            w = [float(x) for x in weights.split(",") if x.strip()]
        except ValueError:
            raise InputError(f"--weights {weights!r}: give 'equal', 'fit', or numbers such as 0.5,0.3,0.2") from None
    member_list = [m.strip() for m in members.split(",") if m.strip()] if members else None
    ens = build_ensemble(Store(store).open(create=False), run, checkpoint, w, member_list, name=name)
    cols = ["ensemble", "member", "checkpoint", "weight"]
    rows = [[ens.name, m, c, float(x)] for m, c, x in zip(ens.members, ens.checkpoints, ens.weights)]
    emit(cols, rows, format, title=f"Ensemble {ens.name} of run {ens.run_id} ({ens.method} weights)")
    if format == Format.table:
        mt = Table(title="Metrics")
        mt.add_column("metric")
        mt.add_column("value", justify="right")
        for k, v in ens.metrics.items():
            mt.add_row(k, f"{v:.4f}")
        out.print(mt)


@app.command()
@handle_errors
def plot(
    run: Optional[str] = typer.Argument(None, help="Run id (default: the latest run)."),
    store: Path = STORE_OPT,
    out: Path = typer.Option(None, "--out", help="PNG file to write (default: <run_id>.png beside the store)."),
):
    """Learning curves and predicted class shares of a run, as a PNG."""
    from .ensemble import run_info
    from .plot import plot_run
    from .store import Store

    st = Store(store).open(create=False)
    if out is None:
        out = store.parent / f"{run_info(st, run)['run_id']}.png"
    path = plot_run(st, run, out)
    out_console = Console(stderr=True)
    out_console.print(f"wrote {path}", highlight=False)


def emit(cols, rows, format: Format, title: str | None = None) -> None:
    if format == Format.csv:
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(cols)
        w.writerows(rows)
        sys.stdout.write(buf.getvalue())
    elif format == Format.json:
        sys.stdout.write(json.dumps([dict(zip(cols, r)) for r in rows], default=str, indent=1) + "\n")
    else:
        table = Table(title=title)
        for c in cols:
            table.add_column(str(c), overflow="fold")  # long values (plugin paths) wrap, never cut off
        for r in rows:
            table.add_row(*[_cell(v) for v in r])
        out.print(table)


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4f}"
    if isinstance(v, list):
        return "[" + ", ".join(_cell(x) for x in v) + "]"
    return str(v)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
