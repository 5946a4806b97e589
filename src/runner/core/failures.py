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
- exit 130 on Ctrl-C (SIGINT), 143 on SIGTERM (`signals_interrupt` turns it into the same
  interruption): a run being trained is marked `failed` (interrupted) rather than left `running`, and
  the message names the command that resumes it (`interrupted_run`, `resume_with`).

No Python traceback reaches the screen otherwise. The library raises; the CLI (runner.cli.app) is
the one place that catches, and asks this module what the exception means. Where the library knows
which run an exception escaped from, it says so with `in_run`, so the traceback lands in that run's
log.
"""

from __future__ import annotations

import errno
import os
import signal
import tempfile
import threading
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from runner.errors import RunnerError, Terminated

DISK_FULL = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}
_RUN_DIR = "runner_run_dir"  # the attribute `in_run` sets on an exception that escapes a run
_RUN_ID = "runner_interrupted_run"  # the run an interruption stopped (`interrupted_run`)
_RESUME = "runner_resume"  # the command that resumes it (`resume_with`)


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


@contextmanager
def signals_interrupt() -> Iterator[None]:
    """While the block runs (in the main thread), SIGTERM raises `Terminated`, a KeyboardInterrupt, as
    Ctrl-C does: the code it stops cleans up (a transaction rolls back, a run is marked interrupted)
    instead of the process vanishing mid-write."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum, frame):
        raise Terminated()

    before = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def signal_name(exc: BaseException) -> str:
    return getattr(exc, "signal_name", "SIGINT")


def interrupted_run(exc: BaseException, run_id: str) -> None:
    """Record on an interruption that it stopped run `run_id` (which the caller marked failed)."""
    if getattr(exc, _RUN_ID, None) is None:
        setattr(exc, _RUN_ID, run_id)


@contextmanager
def resume_with(command: str) -> Iterator[None]:
    """An interruption escaping the block says that `command` resumes its run (the CLI knows the command
    line: `apply --force` is resumed without `--force`, which would start yet another run)."""
    try:
        yield
    except KeyboardInterrupt as e:
        if getattr(e, _RESUME, None) is None:
            setattr(e, _RESUME, command)
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
        return _interrupted(exc), _interruption(exc), False
    if isinstance(exc, OSError) and exc.errno in DISK_FULL:
        where = f" while writing {exc.filename}" if exc.filename else ""
        return 1, (f"disk full (or file size limit reached){where}; nothing more was committed; free space and "
                   "re-run the command (`runner apply` resumes)"), False
    if isinstance(exc, MemoryError):
        return 1, ("out of memory; a smaller batch_size or max_length, or fewer examples, needs less; "
                   "`runner apply` resumes from the last stored epoch"), False
    return 1, f"{type(exc).__name__}: {exc}", True


def _interrupted(exc: BaseException) -> int:
    """128 + the signal's number, as a shell reports a process a signal ended: 130 for SIGINT, 143 SIGTERM."""
    return 128 + int(getattr(signal, signal_name(exc), signal.SIGINT))


def _interruption(exc: BaseException) -> str:
    name, run_id, resume = signal_name(exc), getattr(exc, _RUN_ID, None), getattr(exc, _RESUME, None)
    if run_id is None:
        return f"interrupted ({name}); what was stored so far is kept, and the same command resumes"
    how = f"`{resume}` resumes it" if resume else "the command that trained it (without --force) resumes it"
    return (f"interrupted ({name}): run {run_id} is marked failed (interrupted); what was stored so far is kept, "
            f"and {how} from its last stored epoch")
