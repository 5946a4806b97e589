"""The typer app and what every command shares: options, output consoles, and `command`, which makes
a function a command that ends as runner.core.failures says (exit 0, 1 or 2, never a traceback on
screen; the library raises, this module prints).

The commands live in one module per group beside this one; `runner.cli` imports them all.
"""

from __future__ import annotations

import csv
import inspect
import io
import json
import os
import sys
import traceback
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum
from functools import wraps
from pathlib import Path

import typer
from rich.console import Console, ConsoleDimensions
from rich.text import Text

from runner.core import failures
from runner.core.dirs import keep_caches_out_of_home
from runner.errors import InputError
from runner.version import versions


class _PlainFlags:
    """Help that reads well: a flag shows no type (`--force`, not `--force <bool>`)."""

    def format_help(self, ctx, formatter) -> None:
        for param in self.get_params(ctx):
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""
        return super().format_help(ctx, formatter)


class _Command(_PlainFlags, typer.core.TyperCommand):
    pass


class _Group(_PlainFlags, typer.core.TyperGroup):
    pass


def reflow(doc: str | None) -> str | None:
    """A docstring as help: each paragraph one line, for the terminal to wrap at its own width (a
    line of its source ends mid-sentence); lines starting with `- ` stay list items."""
    if not doc:
        return doc
    paragraphs = []
    for paragraph in inspect.cleandoc(doc).split("\n\n"):
        lines: list[str] = []
        for line in paragraph.splitlines():
            if lines and not line.lstrip().startswith("- "):
                lines[-1] += " " + line.strip()
            else:
                lines.append(line.strip())
        paragraphs.append("\n".join(lines))
    return "\n\n".join(paragraphs)


app = typer.Typer(
    help="Declarative fine-tuning runs for text classifiers, with every epoch and prediction kept in DuckDB.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=_Group,
)
class _Console(Console):
    """Piped output (CI logs, `| less`) gets wide tables, 160 columns rather than rich's 80, unless COLUMNS
    says how wide; read at each print, not once when this module is imported."""

    @property
    def size(self):
        if self.is_terminal:
            return super().size
        columns = os.environ.get("COLUMNS", "")
        return ConsoleDimensions(int(columns) if columns.isdigit() else 160, super().size.height)

    @size.setter
    def size(self, new_size) -> None:
        Console.size.fset(self, new_size)


out = _Console()
err = Console(stderr=True)

STORE_OPT = typer.Option("results.duckdb", "--store", help="The DuckDB results file.")
PLUGINS_OPT = typer.Option(None, "--plugins", help="Plugins directory (default: plugins/ beside the spec, or "
                                                   "beside its folder when that folder is called specs).")
SET_OPT = typer.Option(None, "--set", metavar="KEY=VALUE",
                       help="Override one spec key, as a dotted key and a TOML value (loss.gamma=2.5, "
                            "train.epochs=3, members.NAME.train.learning_rate=1e-4); repeatable. The run records "
                            "the result, and a different value is a different spec hash.")


def overrides_of(assignments: list[str] | None) -> tuple:
    """`--set` arguments as (key, value) pairs; exit 2 naming the one that is not KEY=VALUE."""
    # start-up time (runner.cli)
    from runner.spec.keys import KeyPathError, split_assignment

    pairs = []
    for text in assignments or []:
        try:
            pairs.append(split_assignment(text))
        except KeyPathError as e:
            raise InputError(f"--set {text}: {e}") from None
    return tuple(pairs)


RUN_ARG = typer.Argument(None, help="Run id, or a run name (its latest run); default: the latest run.")
GLOBAL_FLAGS = ("--debug", "--verbose")


class Format(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"
    markdown = "markdown"  # GitHub-flavoured pipe tables of the same cells as `table` (runner.analysis.tables)


def _print_error(text: str) -> None:
    err.print(Text("error: ", style="bold red") + Text(text), highlight=False, soft_wrap=True)


def _print_traceback(text: str) -> None:
    err.print(Text(text, style="dim"), highlight=False, soft_wrap=True)


@dataclass
class Options:
    """`runner`'s own options (before or after the command): set once per invocation."""

    debug: bool = False  # --debug: tracebacks on screen too
    verbose: bool = False  # --verbose: messages a user does not need every time


options = Options()


def guarded(fn):
    """`fn` as a command that ends as runner.core.failures says: the one place an exception is caught."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        import click  # typer's own dependency, imported with it

        try:
            with failures.signals_interrupt():  # SIGTERM ends a command as Ctrl-C does, cleanly
                return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, click.exceptions.Exit, click.exceptions.Abort, click.ClickException,
                SystemExit):
            raise
        except BaseException as e:  # noqa: BLE001 - this is the one place that must see everything
            code, message, internal = failures.message_for(e)
            trace = "".join(traceback.format_exception(e))
            if internal:
                log = failures.write_log(trace, failures.run_dir_of(e))
                where = f"the traceback is in {log}" if log else "the traceback could not be written to a log"
                message = (f"internal error: {message}. This is a bug in runner or in a plugin, not in your input; "
                           f"{where}. Re-running the same command resumes where it stopped.")
            if options.debug:
                _print_traceback(trace)
            _print_error(message)
            raise typer.Exit(code) from None

    return wrapper


def command(fn):
    """Register a CLI command that ends as runner.core.failures says."""
    return app.command(cls=_Command, help=reflow(fn.__doc__))(guarded(fn))


def say(text: str) -> None:
    err.print(text, highlight=False, markup=False, soft_wrap=True)


def note(text: str | None) -> None:
    if text:
        err.print(f"note: {text}", highlight=False, markup=False, soft_wrap=True)


def _print_version(asked: bool) -> None:
    if not asked:
        return
    found = versions()
    width = max(len(name) for name in found)
    for name, version in found.items():
        out.print(f"{name:<{width}}  {version}", highlight=False, markup=False)
    raise typer.Exit(0)


@app.callback()
def main_options(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks on screen (they always go to a log)."),
    verbose: bool = typer.Option(False, "--verbose", help="Say more about what runner is doing."),
    version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version,
                                 help="Print runner's version and those of the libraries it trains and stores with."),
):
    """Declarative fine-tuning runs for text classifiers, with every epoch and prediction kept in DuckDB."""
    keep_caches_out_of_home()  # before any command imports a library that caches under $HOME
    options.debug = debug or os.environ.get("RUNNER_DEBUG", "") not in ("", "0")
    options.verbose = verbose


def _registry(spec: Path | None, plugins: Path | None):
    # start-up time (runner.cli)
    from runner.plugins.registry import describe_loaded, load_registry, plugins_dir_for

    registry = load_registry(plugins_dir_for(spec, plugins))
    loaded = describe_loaded(registry)
    if loaded:
        say(loaded)
    return registry


def _read_registry(plugins: Path | None, store: Path | None, ref: str | None = None):
    """The registry of a command that reads a run or sweep (`ref`; None: the latest run): --plugins, else
    the plugins folder the run was trained with when it is ./plugins or plugins/ beside the store
    (runner.plugins.registry.trained_plugins_dir), else the built-ins and entry points."""
    if plugins is None and store is not None:
        plugins = _trained_plugins(Path(store), ref)
    return _registry(None, plugins)


def _trained_plugins(store: Path, ref: str | None) -> Path | None:
    # start-up time (runner.cli)
    from runner.errors import StoreError
    from runner.plugins.registry import trained_plugins_dir
    from runner.store import Store

    try:
        if not Store(store).exists():
            return None
        reader = Store(store).open_read()
        try:
            run_id = reader.find_run_id(ref) if ref is not None else next(iter(reader.recent_run_ids()), None)
            if run_id is None and ref is not None:  # a sweep: the plugins of its trials' runs
                sweep = reader.find_sweep_id(ref)
                run_id = next((t["run_id"] for t in reader.trials(sweep) if t["run_id"]), None) if sweep else None
            return trained_plugins_dir(reader.environment(run_id).get("plugins"), store) if run_id else None
        finally:
            reader.close()
    except (InputError, StoreError, OSError):  # the command reads the store next, and says what is wrong
        return None


def emit(cols, rows, format: Format, title: str | None = None) -> None:
    if format == Format.csv:
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(cols)
        w.writerows(rows)
        sys.stdout.write(buf.getvalue())
    elif format == Format.json:
        sys.stdout.write(json.dumps([dict(zip(cols, r)) for r in rows], default=str, indent=1) + "\n")
    elif format == Format.markdown:
        # built from the values, not through rich, which would read a "[...]" value as markup
        # start-up time (runner.cli)
        from runner.analysis.tables import Cell, markdown_table

        right = [bool(rows) and all(isinstance(r[i], (int, float)) and not isinstance(r[i], bool)
                                    for r in rows if r[i] is not None) and any(r[i] is not None for r in rows)
                 for i in range(len(cols))]
        text = markdown_table([str(c) for c in cols], [[Cell(_cell(v)) for v in r] for r in rows], right)
        sys.stdout.write((f"**{title}**\n\n" if title else "") + text)
    else:
        # start-up time (runner.cli)
        from runner.analysis.tables import table as new_table

        table = new_table(title)
        for i, c in enumerate(cols):
            values = [r[i] for r in rows if r[i] is not None]
            if values and all(isinstance(v, (int, float, Decimal)) and not isinstance(v, bool) for v in values):
                table.add_column(str(c), justify="right", no_wrap=True)  # numbers are never cut
            else:
                table.add_column(str(c), overflow="fold")  # long values (plugin paths) wrap, never cut off
        for r in rows:
            table.add_row(*[_cell(v) for v in r])
        out.print(table)


def show(renderable, format: Format) -> None:
    """What a command prints as rich tables: on the terminal, or (--format markdown) as GFM tables of the
    same cells."""
    if format == Format.markdown:
        # start-up time (runner.cli)
        from runner.analysis.tables import to_markdown

        sys.stdout.write(to_markdown(renderable))
    else:
        for part in renderable if isinstance(renderable, (list, tuple)) else [renderable]:
            out.print(part)


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4f}"
    if isinstance(v, list):
        return "[" + ", ".join(_cell(x) for x in v) + "]"
    return str(v)
