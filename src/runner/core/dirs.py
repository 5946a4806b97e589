"""Nothing under $HOME: the caches libraries keep there by default (matplotlib's font list and config,
Triton's compiled kernels) go to a folder of runner's own in the temporary directory instead, unless
the user named one (MPLCONFIGDIR, TRITON_CACHE_DIR). The CLI calls `keep_caches_out_of_home` before
any command runs.

The one exception is the Hugging Face Hub cache (HF_HOME, ~/.cache/huggingface): a spec that names a
Hub model downloads it there, which is where the user's models already are and what offline mode reads.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

DEFAULTS = {"MPLCONFIGDIR": "matplotlib", "TRITON_CACHE_DIR": "triton"}


def keep_caches_out_of_home() -> None:
    for variable, name in DEFAULTS.items():
        if not os.environ.get(variable):
            os.environ[variable] = str(runner_temp(name))


def runner_temp(name: str) -> Path:
    """`<tmp>/runner-<uid>/<name>`, made private (0700); when that folder is not this user's own (made by
    someone else, or a link), a fresh temporary folder instead."""
    uid = os.getuid() if hasattr(os, "getuid") else None
    base = Path(tempfile.gettempdir()) / f"runner-{uid if uid is not None else os.getlogin()}"
    try:
        base.mkdir(mode=0o700, exist_ok=True)
        st = os.lstat(base)
        if not stat.S_ISDIR(st.st_mode) or (uid is not None and st.st_uid != uid) or st.st_mode & 0o077:
            raise PermissionError(f"{base} is not this user's private folder")
        folder = base / name
        folder.mkdir(mode=0o700, exist_ok=True)
        if folder.is_symlink() or not folder.is_dir():
            raise PermissionError(f"{folder} is not a folder")
        return folder
    except OSError:
        return Path(tempfile.mkdtemp(prefix=f"runner-{name}-"))
