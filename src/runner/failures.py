"""How a command ends: the one place that turns an exception into a message, an exit code and a log.

Every `runner` command ends in exactly one of:

- exit 0;
- exit 2: bad input (spec, data, plugin, store file, argument), one paragraph naming the file or
  argument and the key, raised before anything was written (`InputError` and its subclasses);
- exit 1: a fault no check could predict (a non-finite loss, a full disk, a store held by another
  process), saying what happened and what to do; a re-run of `runner apply` resumes;
- exit 1 with `internal error: ...` for an exception nobody expected (a bug in runner or a plugin):
  its traceback goes to a log file whose path is printed (`runs/<run_id>/_error.log` once a run
  exists, else a file in the system's temporary folder), and to the screen only with `--debug`;
- exit 130 on Ctrl-C, which a re-run resumes like any interruption.

No Python traceback reaches the screen otherwise.
"""

from __future__ import annotations

import errno
import os
import tempfile
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import wraps
from pathlib import Path

from .errors import RunnerError

DISK_FULL = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}


@dataclass
class Context:
    """What the command knows about where it is: set by the library as it goes."""

    run_dir: Path | None = None  # runs/<run_id>/ once `apply` has a run
    debug: bool = False  # --debug: tracebacks on screen too
    verbose: bool = False  # --verbose: messages a user does not need every time


context = Context()


def write_log(text: str) -> Path | None:
    """Write `text` to the run's error log (appending), or to a new temporary file; its path."""
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    entry = f"--- {stamp} (pid {os.getpid()}) ---\n{text}\n"
    if context.run_dir is not None:
        try:
            context.run_dir.mkdir(parents=True, exist_ok=True)
            path = context.run_dir / "_error.log"
            with path.open("a", encoding="utf-8") as f:
                f.write(entry)
            return path
        except OSError:
            pass
    try:
        fd, name = tempfile.mkstemp(prefix="runner-error-", suffix=".log")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(entry)
        return Path(name)
    except OSError:
        return None


def message_for(exc: BaseException) -> tuple[int, str, bool]:
    """(exit code, message, is_internal) for an exception that ended a command."""
    if isinstance(exc, RunnerError):
        return exc.exit_code, str(exc), False
    if isinstance(exc, KeyboardInterrupt):
        return 130, "interrupted; what was stored so far is kept, and the same command resumes", False
    if isinstance(exc, OSError) and exc.errno in DISK_FULL:
        where = f" while writing {exc.filename}" if exc.filename else ""
        return 1, (f"disk full (or file size limit reached){where}; nothing more was committed; free space and "
                   "re-run the command (`runner apply` resumes)"), False
    if isinstance(exc, MemoryError):
        return 1, ("out of memory; a smaller batch_size or max_length, or fewer examples, needs less; "
                   "`runner apply` resumes from the last stored epoch"), False
    return 1, f"{type(exc).__name__}: {exc}", True


def guarded(fn, print_error, print_traceback):
    """Wrap a command so it ends as the module docstring says. `print_error(text)` shows a message,
    `print_traceback(text)` a traceback (only with --debug)."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        import click
        import typer

        context.run_dir = None  # a new command (tests run many in one process) starts with no run
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, click.exceptions.Exit, click.exceptions.Abort, click.ClickException,
                SystemExit):
            raise
        except BaseException as e:  # noqa: BLE001: this is the one place that must see everything
            code, message, internal = message_for(e)
            trace = "".join(traceback.format_exception(e))
            if internal:
                log = write_log(trace)
                where = f"the traceback is in {log}" if log else "the traceback could not be written to a log"
                message = (f"internal error: {message}. This is a bug in runner or in a plugin, not in your input; "
                           f"{where}. Re-running the same command resumes where it stopped.")
            if context.debug:
                print_traceback(trace)
            print_error(message)
            raise typer.Exit(code) from None

    return wrapper
