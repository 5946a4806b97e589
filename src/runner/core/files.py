"""What a path that is no regular file is, in words, for the errors about files runner reads.

A data file, an `[adapt] extra` file or predict's INPUT must be a regular file: runner hashes its
content (a run's dataset id, an adaptation's key, an input's split name) and reads it again when a
run resumes, which a named pipe (FIFO), a device or a socket cannot give twice. They are refused
(exit 2) naming the file, rather than read once or waited on.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

KINDS = ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
         (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
WHY = ("runner hashes a file's content and reads it again when a run resumes, which a stream cannot give twice; "
       "save it to a file first")


def special_kind(path: str | os.PathLike) -> str | None:
    """'a named pipe (FIFO)', 'a character device', ... for such a path (links followed); None for a
    regular file, a folder, or a path that does not exist."""
    try:
        mode = os.stat(Path(path)).st_mode
    except (OSError, ValueError):
        return None
    return next((what for test, what in KINDS if test(mode)), None)
