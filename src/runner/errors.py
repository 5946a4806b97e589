"""Errors the library raises and the CLI translates.

The library never prints or exits; it raises one of these. The CLI is the only place that turns them
into a message on stderr and an exit code (2 for bad input, 1 for a failure while running). Anything
else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations

import copy


class RunnerError(Exception):
    """Base class. `exit_code` is what the CLI exits with."""

    exit_code = 1


class InputError(RunnerError):
    """Bad input from the user: a spec, a data file, a plugin, a CLI argument. Exit code 2."""

    exit_code = 2


class SpecError(InputError):
    """One or more problems in a spec file, each as `file: key.path: message`."""

    def __init__(self, path, problems: list[tuple[str, str]]):
        self.path = str(path)
        self.problems = problems
        inline = getattr(path, "inline", False)  # a spec given in Python (runner.spec.inline): key paths only
        where = [] if inline else [self.path]
        lines = [": ".join([*where, *([loc] if loc else []), msg]) for loc, msg in problems]
        n = len(problems)
        head = f"{n} problem{'s' if n != 1 else ''} in {'the spec' if inline else f'spec {self.path}'}:"
        super().__init__(head + "\n" + "\n".join("  " + line for line in lines))


class DataError(InputError):
    """A data file or a dataset loader's input is unusable (missing column, empty text, bad label...)."""


class PluginError(InputError):
    """A plugin failed to import, registered a duplicate name, or has a malformed hook."""


class ModelLoadError(InputError):
    """A backbone's model or tokenizer could not be loaded (offline, typo, private repository...)."""


class StoreError(RunnerError):
    """The store cannot be opened, read or written for a reason of the moment (held by another process
    past the timeout, disk full). Exit code 1. A file that is not a usable store is StoreFileError."""


class StoreFileError(InputError, StoreError):
    """The file given as the store is not a usable runner store: not DuckDB, another program's database,
    damaged or truncated, from a newer runner, a folder, `:memory:`, missing, or not writable where a
    write is needed. Bad input, so exit code 2; raised before anything is written, the file unchanged.
    Also a StoreError, so code that handles any store problem handles this one.
    """


class TrainingError(RunnerError):
    """Training failed for a reason that is not the user's input (e.g. the loss became NaN)."""


class DiskFullError(RunnerError):
    """The disk filled up (or a file size limit was hit) while writing checkpoints. Exit code 1; the
    member is marked failed and a re-run resumes it from its last stored epoch."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an interruption like Ctrl-C's (runner.core.failures.signals_interrupt), so a
    run stopped by a scheduler or `kill` ends the way one stopped by Ctrl-C does."""

    signal_name = "SIGTERM"


class OptionError(ValueError):
    """Raised by a plugin's build function for an option that is wrong given the data.

    For checks an options model cannot make alone (a focal `alpha` whose length is not the number of
    labels). The runner reports it against the spec key, e.g. `loss.alpha: ...`.
    """

    def __init__(self, key: str, message: str):
        self.key = key
        self.message = message
        super().__init__(f"{key}: {message}")


class TrialPruned(Exception):
    """Raised from a member's epoch callback when a sweep's pruner stops the trial (runner.search).
    Not a RunnerError: it ends a trial, not a command."""


class RemoteError(Exception):
    """An error raised in another process (a Ray task, a DDP rank) that could not travel back as itself."""


def portable(e: BaseException) -> BaseException:
    """`e` if another process can rebuild it (to raise it there), else a RemoteError with its message.

    Rebuildable: a built-in exception or one of runner's own (every process imports those; a plugin's
    class may not be importable where the error is raised again), whose state copies the way Ray and
    torch.distributed send it (`type(e)(*e.args)` plus its attributes, as `copy.deepcopy` does)."""
    module = type(e).__module__.split(".")[0]
    if module in ("builtins", "runner"):
        try:
            copy.deepcopy(e)
            return e
        except Exception:
            pass
    return RemoteError(f"{type(e).__name__}: {e}")
