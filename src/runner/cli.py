"""The `runner` command line. Every command ends through runner.failures (exit 0, 1 or 2, never a
traceback on screen); the library raises, this module prints."""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from . import failures
from .errors import InputError

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
PLUGINS_OPT = typer.Option(None, "--plugins", help="Plugins directory (default: plugins/ beside the spec, or "
                                                   "beside its folder when that folder is called specs).")
RUN_ARG = typer.Argument(None, help="Run id, or a run name (its latest run); default: the latest run.")
GLOBAL_FLAGS = ("--debug", "--verbose")


class Format(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"


def _print_error(text: str) -> None:
    err.print(Text("error: ", style="bold red") + Text(text), highlight=False, soft_wrap=True)


def _print_traceback(text: str) -> None:
    err.print(Text(text, style="dim"), highlight=False, soft_wrap=True)


def command(fn):
    """Register a CLI command that ends as runner.failures says."""
    return app.command()(failures.guarded(fn, _print_error, _print_traceback))


def say(text: str) -> None:
    err.print(text, highlight=False, markup=False, soft_wrap=True)


def note(text: str | None) -> None:
    if text:
        err.print(f"note: {text}", highlight=False, markup=False, soft_wrap=True)


@app.callback()
def main_options(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks on screen (they always go to a log)."),
    verbose: bool = typer.Option(False, "--verbose", help="Say more about what runner is doing."),
):
    """Declarative fine-tuning runs for text classifiers, with every epoch and prediction kept in DuckDB."""
    failures.context.debug = debug or os.environ.get("RUNNER_DEBUG", "") not in ("", "0")
    failures.context.verbose = verbose


def _quiet_libraries() -> None:
    import logging
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
    try:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()  # "Writing model shards" bars between rich's progress lines
    except ImportError:
        pass


def _registry(spec: Path | None, plugins: Path | None):
    from .plugins import describe_loaded, load_registry, plugins_dir_for

    registry = load_registry(plugins_dir_for(spec, plugins))
    loaded = describe_loaded(registry)
    if loaded:
        say(loaded)
    return registry


@command
def apply(
    spec: Path = typer.Argument(..., help="The spec TOML file."),
    store: Path = STORE_OPT,
    plugins: Optional[Path] = PLUGINS_OPT,
    force: bool = typer.Option(False, "--force", help="Start a new run even if this spec already has one."),
):
    """Validate the spec (a dry run of everything but training), train every member not yet complete,
    store everything, then SWA and ensemble."""
    _quiet_libraries()
    from .progress import TrainingProgress
    from .run import apply as run_apply

    result = run_apply(spec, store, plugins, force=force, progress=TrainingProgress(err), say=say,
                       verbose=failures.context.verbose)
    if result.run_id and result.status != "up-to-date":
        from .report import summary_table
        from .store import Store

        out.print(summary_table(Store(store), Store(store).run(result.run_id)))
    if result.status == "failed":
        raise typer.Exit(1)


@command
def validate(
    spec: Path = typer.Argument(..., help="The spec TOML file."),
    store: Path = STORE_OPT,
    plugins: Optional[Path] = PLUGINS_OPT,
    check_models: bool = typer.Option(True, "--check-models/--no-check-models",
                                      help="Build each member's model and push a batch of each split through "
                                           "it (the dry run); --no-check-models checks the spec and data only."),
):
    """The dry run of `apply`: the spec, the data, each member's model, Trainer, optimizer and one batch of
    each split, and the store; nothing is written. Prints the resolved spec."""
    _quiet_libraries()
    from .plugins import describe_loaded
    from .run import validate as run_validate

    p = run_validate(spec, store, plugins, check_models=check_models)
    loaded = describe_loaded(p.registry)
    if loaded:
        say(loaded)
    out.print_json(json.dumps(p.resolved.to_dict()))
    d = p.data
    sizes = ", ".join(f"{k} {len(v)}" for k, v in d.splits.items())
    counts = d.class_counts("train")
    shares = ", ".join(f"{n} {c / sum(counts):.1%}" for n, c in zip(d.label_names, counts))
    err.print(f"[green]ok[/] {spec}: {len(p.resolved.members)} members; data {d.dataset_id}: {sizes}; "
              f"train classes: {shares}; spec hash {p.spec_hash[:12]}", highlight=False)


@command
def plugins(
    spec: Optional[Path] = typer.Argument(None, help="A spec: list what it would load (its plugins/ folder)."),
    plugins: Optional[Path] = typer.Option(None, "--plugins", help="Plugins directory to load."),
    format: Format = typer.Option(Format.table, "--format"),
):
    """List every registered backbone, loss, dataset, metric and selection strategy, and where it came from."""
    from .plugins import KINDS, SINGULAR

    if spec is not None and not spec.is_file():
        raise InputError(f"SPEC {spec}: no such file")
    registry = _registry(spec, plugins)
    rows = []
    for kind in KINDS:
        for name in registry.names(kind):
            c = registry.get(kind, name)
            options = getattr(c, "options", None)
            detail = ", ".join(options.model_fields) if options is not None else ""
            if kind == "metrics":
                detail = "higher is better" if c.greater_is_better else "lower is better"
            elif kind == "selections":
                detail = c.description
            rows.append([SINGULAR[kind], name, c.origin, detail])
    cols = ["kind", "name", "origin", "options / details"]
    if format != Format.table:
        emit(cols, rows, format)
    else:
        # the origin (a plugin file's path) is what a user looks for: it gets the width, details fold
        table = Table(title="Registered components")
        widest = max((len(r[2]) for r in rows), default=10)
        for c in cols:
            table.add_column(c, overflow="fold", min_width=min(widest, 90) if c == "origin" else None)
        for r in rows:
            table.add_row(*r)
        out.print(table)
    if spec is None and plugins is None and Path("plugins").is_dir():
        note("./plugins was not loaded: plugins are loaded from beside a spec (give SPEC) or with --plugins DIR")


@command
def runs(store: Path = STORE_OPT, format: Format = typer.Option(Format.table, "--format")):
    """One line per run in the store."""
    from .store import Store

    st = Store(store).open_read()
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
    from .sqlguard import sql_query

    table_rows = 1000
    with sql_query(store, query, allow_write=allow_write, timeout=timeout, memory=memory_limit) as result:
        cols = result.columns
        if format == Format.table:
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
    store: Path = STORE_OPT,
    plugins: Optional[Path] = PLUGINS_OPT,
    strategies: Optional[str] = typer.Option(None, "--strategies",
                                             help="Comma-separated strategies to show (default: every registered "
                                                  "one; `runner plugins` lists them)."),
    format: Format = typer.Option(Format.table, "--format"),
):
    """The selection-strategy table: each member and the ensemble under every registered strategy."""
    from .compare import compare as build, render
    from .store import Store

    registry = _registry(None, plugins)
    st = Store(store).open_read()
    wanted = [s.strip() for s in strategies.split(",") if s.strip()] if strategies else None
    c = build(st, st.run(run), registry, wanted)
    if format == Format.table:
        out.print(render(c))
    else:
        records = c.records()
        cols = list(records[0]) if records else []
        emit(cols, [list(r.values()) for r in records], format)
    unregistered = sorted(st.metric_names(c.run_id) - set(registry.names("metrics")) - {"loss"})
    if unregistered:
        note(f"run {c.run_id} stored metrics no loaded plugin registers ({', '.join(unregistered)}): their strategies "
             "are not shown; pass --plugins DIR with the plugins the run was trained with")
    note(st.notice)  # an older store: ensembles built here went to its in-memory copy, never to the file


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

    from .ensemble import build_ensemble
    from .spec.models import NAME_PATTERN
    from .store import Store

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
    if format == Format.table:
        mt = Table(title="Metrics")
        mt.add_column("metric")
        mt.add_column("value", justify="right")
        for k, v in ens.metrics.items():
            mt.add_row(k, f"{v:.4f}")
        out.print(mt)


@command
def plot(
    run: Optional[str] = RUN_ARG,
    store: Path = STORE_OPT,
    out: Path = typer.Option(None, "--out", help="PNG file to write (default: <run_id>.png beside the store)."),
):
    """Learning curves and predicted class shares of a run, as a PNG."""
    from .plot import plot_run
    from .store import Store

    st = Store(store).open_read()
    record = st.run(run)
    if out is None:
        out = store.parent / f"{record.run_id}.png"
    if out.is_dir():
        raise InputError(f"--out {out}: is a folder; give a file name such as {out / (record.run_id + '.png')}")
    if out.suffix.lower() not in (".png", ".pdf", ".svg"):
        raise InputError(f"--out {out}: give a .png, .pdf or .svg file name")
    if out.exists() and out.resolve() == store.resolve():
        raise InputError(f"--out {out}: is the store itself; give another file name")
    if not out.parent.is_dir():
        raise InputError(f"--out {out}: the folder {out.parent} does not exist")
    if not os.access(out.parent, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise InputError(f"--out {out}: cannot be written (check the permissions of {out.parent})")
    path = plot_run(st, record, out)
    say(f"wrote {path}")
    note(st.notice)  # an older store, read through an upgraded copy in memory


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
    # --debug and --verbose are options of `runner` itself; accept them after the command too
    # (`runner apply x.toml --debug`), as a user types them.
    argv = sys.argv[1:]
    flags = [a for a in argv if a in GLOBAL_FLAGS]
    rest = [a for a in argv if a not in GLOBAL_FLAGS]
    app(args=flags + rest, prog_name="runner")


if __name__ == "__main__":
    main()
