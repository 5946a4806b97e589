"""Where a run trains: what each run records in `runs.environment` (and `runner runs --long` shows).

The versions of runner, Python and the libraries whose behaviour the numbers depend on
(runner.version), the git commit of the spec's folder (read from `.git` itself; `git` is run, with a
timeout, only when the files cannot be read, and its absence is no error), the host name, the device
members train on, and the spec file and plugins folder `apply` read. Every part is best effort: a
value that cannot be found is left out, never an error.
"""

from __future__ import annotations

import platform
import socket
import subprocess
from pathlib import Path
from typing import Any

from runner.version import versions

GIT_TIMEOUT_S = 5.0


def environment(spec_path: Path | None = None, plugins_dir: Path | None = None) -> dict[str, Any]:
    env: dict[str, Any] = dict(versions())
    commit = git_commit(Path(spec_path).resolve().parent) if spec_path is not None else None
    if commit:
        env["git_commit"] = commit
    env["host"] = socket.gethostname() or platform.node()
    env["device"] = device_name()
    if spec_path is not None:
        env["spec"] = str(Path(spec_path).resolve())
    if plugins_dir is not None:
        env["plugins"] = str(Path(plugins_dir).resolve())
    return env


def device_name() -> str:
    """`cuda: NVIDIA H100 80GB HBM3` (and how many), `mps`, or `cpu: <model name>`."""
    try:
        import torch

        if torch.cuda.is_available():
            n = torch.cuda.device_count()
            return f"cuda: {torch.cuda.get_device_name(0)}" + (f" (x{n})" if n > 1 else "")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
    except Exception:  # no torch, or a driver that fails to answer: the CPU is what there is
        pass
    return f"cpu: {_cpu_name()}"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def git_commit(folder: Path) -> str | None:
    """The commit checked out in the git repository holding `folder`, or None (not in one)."""
    found = _git_dir(folder)
    if found is None:
        return None
    try:
        commit = _head_commit(*found)
    except (OSError, ValueError):
        commit = None
    return commit or _git_rev_parse(folder)


def _git_dir(folder: Path) -> tuple[Path, Path] | None:
    """(the repository's git dir, its common dir): `.git` as a folder, or as a file naming one (a worktree,
    a submodule)."""
    for d in (folder, *folder.parents):
        dot = d / ".git"
        try:
            if dot.is_dir():
                return dot, dot
            if dot.is_file():
                text = dot.read_text(errors="replace").strip()
                if not text.startswith("gitdir:"):
                    return None
                git_dir = Path(text.removeprefix("gitdir:").strip())
                git_dir = git_dir if git_dir.is_absolute() else (d / git_dir).resolve()
                common = git_dir
                if (git_dir / "commondir").is_file():
                    common = (git_dir / (git_dir / "commondir").read_text().strip()).resolve()
                return git_dir, common
        except OSError:
            return None
    return None


def _head_commit(git_dir: Path, common: Path) -> str | None:
    head = (git_dir / "HEAD").read_text().strip()
    if not head.startswith("ref:"):
        return head if _is_sha(head) else None
    ref = head.removeprefix("ref:").strip()
    for base in (git_dir, common):
        if (base / ref).is_file():
            sha = (base / ref).read_text().strip()
            return sha if _is_sha(sha) else None
    packed = common / "packed-refs"
    if packed.is_file():
        for line in packed.read_text(errors="replace").splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1] == ref and _is_sha(parts[0]):
                return parts[0]
    return None  # a branch with no commit yet, or refs kept in a format read only by git


def _is_sha(text: str) -> bool:
    return len(text) in (40, 64) and all(c in "0123456789abcdef" for c in text)


def _git_rev_parse(folder: Path) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=GIT_TIMEOUT_S, check=False)
    except (OSError, subprocess.SubprocessError):  # no git, or it hung
        return None
    sha = done.stdout.strip()
    return sha if done.returncode == 0 and _is_sha(sha) else None
