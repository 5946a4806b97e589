"""How a command ends: what an exception means as a message, an exit code and a log.

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

No Python traceback reaches the screen otherwise. The library raises; the CLI (runner.cli.app) is
the one place that catches, and asks this module what the exception means. Where the library knows
which run an exception escaped from, it says so with `in_run`, so the traceback lands in that run's
log.
"""

from __future__ import annotations

import errno
import os
import tempfile
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from runner.errors import RunnerError

DISK_FULL = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}
_RUN_DIR = "runner_run_dir"  # the attribute `in_run` sets on an exception that escapes a run


@contextmanager
def in_run(run_dir: Path) -> Iterator[None]:
    """Mark any exception escaping the block as having happened in the run at `run_dir`
    (runs/<run_id>/), so its traceback goes to that run's `_error.log` (the innermost run wins)."""
    try:
        yield
    except BaseException as e:
        if getattr(e, _RUN_DIR, None) is None:
            try:
                setattr(e, _RUN_DIR, Path(run_dir))
            except AttributeError:  # an exception type with __slots__
                pass
        raise


def run_dir_of(exc: BaseException) -> Path | None:
    """The run folder `in_run` recorded on `exc`, if any."""
    return getattr(exc, _RUN_DIR, None)


def write_log(text: str, run_dir: Path | None = None) -> Path | None:
    """Write `text` to the run's error log (appending), or to a new temporary file; its path."""
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    entry = f"--- {stamp} (pid {os.getpid()}) ---\n{text}\n"
    if run_dir is not None:
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            path = run_dir / "_error.log"
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
