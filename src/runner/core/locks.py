"""Advisory file locks that keep two `runner apply` processes from training the same run at once.

DuckDB already lets only one process write the store at a time (runner waits for its turn); these
locks guard what DuckDB cannot see: the run's checkpoints on disk. Locks are `flock`s, so they are
released by the operating system when a process dies, even by SIGKILL: a crashed apply never leaves
a stale lock behind.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from runner.errors import StoreError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; concurrent applies on one run are not guarded
    fcntl = None


@contextmanager
def file_lock(path: Path, what: str, wait_s: float = 0.0) -> Iterator[None]:
    """Hold an exclusive lock on `path` for the block, or raise StoreError naming the holder."""
    if fcntl is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + wait_s
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
                    raise StoreError(
                        f"{what} is in use by runner process {holder} (lock {path}); wait for it to finish, "
                        "or stop it. Nothing was changed."
                    ) from None
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


@contextmanager
def try_lock(path: Path, create: bool = True) -> Iterator[str | None]:
    """Take the lock on `path` without waiting, for the block: yields None when it is held here, or the
    holder (`runner process <pid>`) when another process holds it. With `create=False` a lock file that
    does not exist is not made (nobody holds it: yields None, holding nothing)."""
    if fcntl is None or (not create and not path.exists()):
        yield None
        return
    try:
        fd = os.open(path, os.O_RDWR | (os.O_CREAT if create else 0), 0o644)
    except FileNotFoundError:
        yield None
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            yield f"runner process {holder}" if holder else "another runner process"
            return
        yield None
    finally:
        os.close(fd)
