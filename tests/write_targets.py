"""What tests/store/test_writes.py and tests/contract/test_writes_contract.py share: a folder of decoys
around a store (links, hard links, the store's own files and folders, a checkpoint, a spec, a plugin,
user files, earlier outputs, read-only places, a FIFO), a Hypothesis strategy of paths into it, and an
oracle that says, from the file system alone, whether the guarded writer must refuse a path.

The oracle is written apart from runner.store.writes on purpose: it reads the rules of that module's
docstring and applies them with os.path, so a rule the writer forgets (or applies too widely) shows.
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from hypothesis import strategies as st

LONG = "n" * 260
EARLIER = b"EARLIER OUTPUT\n"  # what the unit tests' recogniser accepts as an earlier output
STORE = "results.duckdb"
CHECKPOINT = "runs/run-1/a/selected"


@dataclass
class Decoys:
    root: Path
    read_only: list[Path]

    def undo(self) -> None:
        for folder in self.read_only:
            if os.geteuid() == 0:
                subprocess.run(["chattr", "-i", str(folder)], capture_output=True)
            folder.chmod(0o755)


def make_decoys(root: Path, suffix: str, earlier: bytes = EARLIER, store_bytes: bytes | None = None) -> Decoys:
    """The decoys in `root` (existing files end in `suffix`, the output kind under test). `store_bytes`:
    the store's content (a real DuckDB file's bytes); else a small DuckDB file is made."""
    root.mkdir(parents=True, exist_ok=True)
    store = root / STORE
    if not store.exists():
        if store_bytes is None:
            import duckdb

            con = duckdb.connect(str(store))
            con.execute("CREATE TABLE runs AS SELECT 1 AS run_id")
            con.close()
        else:
            store.write_bytes(store_bytes)
    (root / f"{STORE}.wal").write_bytes(b"wal bytes")
    ckpt = root / CHECKPOINT
    ckpt.mkdir(parents=True, exist_ok=True)
    if not (ckpt / "runner.json").exists():
        (ckpt / "runner.json").write_text('{"backbone": "scratch"}')
    (root / "adapted" / "k").mkdir(parents=True, exist_ok=True)
    (root / "adapted" / "k" / "adapt.json").write_text("{}")
    (root / "spec.toml").write_text('name = "x"\n')
    (root / "plugins").mkdir(exist_ok=True)
    (root / "plugins" / "p.py").write_text("x = 1\n")
    (root / f"mine{suffix}").write_bytes(b"my own notes\n")
    (root / f"earlier{suffix}").write_bytes(earlier)
    (root / f"empty{suffix}").write_bytes(b"")
    (root / "empty.toml").write_bytes(b"")
    (root / f"ro_file{suffix}").write_bytes(earlier)
    (root / f"ro_file{suffix}").chmod(0o444)
    (root / "sub").mkdir(exist_ok=True)
    (root / "full").mkdir(exist_ok=True)
    (root / "full" / "x.txt").write_text("x")
    (root / "emptydir").mkdir(exist_ok=True)
    os.mkfifo(root / "fifo")
    for name, to in (("link_store", STORE), (f"link_spec{suffix}", "spec.toml"), (f"link_earlier{suffix}",
                     f"earlier{suffix}"), ("link_dir", "sub"), (f"dangling{suffix}", "nowhere"),
                     ("link_runs", "runs")):
        (root / name).symlink_to(to)
    for name, to in ((f"hl_store{suffix}", STORE), (f"hl_earlier{suffix}", f"earlier{suffix}"),
                     (f"hl_mine{suffix}", f"mine{suffix}")):
        os.link(root / to, root / name)
    ro = root / "ro"
    ro.mkdir(exist_ok=True)
    (ro / f"earlier{suffix}").write_bytes(earlier)
    decoys = Decoys(root, [])
    if os.geteuid() != 0:
        ro.chmod(0o555)
        decoys.read_only.append(ro)
    elif subprocess.run(["chattr", "+i", str(ro)], capture_output=True).returncode == 0:
        decoys.read_only.append(ro)
    return decoys


FOLDERS = ["", "", "sub/", "./", "sub/../", "link_dir/", "ro/", "missing/", "full/", "emptydir/", "runs/",
           CHECKPOINT + "/", "adapted/k/", "link_runs/", "spec.toml/", "plugins/", "sub/./"]


def names(suffix: str, others: list[str]) -> st.SearchStrategy[str]:
    stems = ["new", "mine", "earlier", "empty", "ro_file", "link_spec", "link_earlier", "dangling", "hl_store",
             "hl_earlier", "hl_mine", "새 파일"]
    whole = [STORE, f"{STORE}.wal", "link_store", "spec.toml", "empty.toml", "p.py", "fifo", "sub", "full",
             "emptydir", "link_dir", ".", "..", "", LONG + suffix, "runner.json", "x.py"]
    return st.one_of(st.builds(lambda s, x: s + x, st.sampled_from(stems), st.sampled_from([suffix] * 3 + others)),
                     st.sampled_from(whole))


@st.composite
def paths(draw, suffix: str, others: list[str]) -> str:
    """A path relative to the decoys' folder (the working directory), or absolute ("{root}/..." filled in
    by the test)."""
    folder = draw(st.sampled_from(FOLDERS))
    name = draw(names(suffix, others))
    absolute = draw(st.booleans())
    return ("{root}/" if absolute else "") + folder + name


def fill(path: str, root: Path) -> str:
    return path.replace("{root}", str(root))


# -- the oracle ----------------------------------------------------------------------------------------


def _inside_store_folder(final: str, root: Path) -> bool:
    for name in ("runs", "adapted", "tokenized"):
        folder = os.path.realpath(root / name)
        if final == folder or final.startswith(folder + os.sep):
            return True
    return False


def _in_checkpoint(final: str) -> bool:
    d = os.path.dirname(final)
    while True:
        if os.path.isfile(os.path.join(d, "runner.json")):
            return True
        if d == os.path.dirname(d):
            return False
        d = os.path.dirname(d)


def _writable_folder(folder: str) -> bool:
    try:
        fd, name = tempfile.mkstemp(dir=folder)
    except OSError:
        return False
    os.close(fd)
    os.unlink(name)
    return True


def file_refusal(path: str, cwd: Path, root: Path, suffixes: tuple[str, ...] | None, recognised) -> str | None:
    """Why the writer must refuse the file `path` (None: it must write it)."""
    full = os.path.join(cwd, path)
    name = os.path.basename(path)
    if any(len(os.fsencode(p)) > 255 for p in Path(path).parts):
        return "name too long"
    parent = os.path.dirname(full)
    if not os.path.isdir(parent):
        return "no such folder"
    final = os.path.join(os.path.realpath(parent), name)
    if name in ("", ".", "..") or (os.path.isdir(final) and not os.path.islink(final)):
        return "a folder"
    if suffixes is not None and os.path.splitext(name)[1].lower() not in suffixes:
        return "suffix"
    if os.path.splitext(name)[1].lower() in (".toml", ".py"):
        return "spec or plugin"
    store = os.path.realpath(root / STORE)
    if final in (store, store + ".wal"):
        return "the store"
    if _inside_store_folder(final, root) or _in_checkpoint(final):
        return "store folder or checkpoint"
    if os.path.islink(final):
        return "a link"
    if os.path.exists(final):
        st_ = os.lstat(final)
        if stat.S_ISFIFO(st_.st_mode):
            return None
        if st_.st_nlink > 1:
            return "hard link"
        if st_.st_size > 0 and not recognised(Path(final)):
            return "not an earlier output"
        if not st_.st_mode & 0o222:
            return "read-only file"
    if not _writable_folder(os.path.realpath(parent)):
        return "read-only folder"
    return None


def folder_refusal(path: str, cwd: Path, root: Path) -> str | None:
    """Why the writer must refuse the folder `path` for an export (None: it must create it)."""
    full = os.path.abspath(os.path.join(cwd, path))
    if any(len(os.fsencode(p)) > 255 for p in Path(path).parts):
        return "name too long"
    existing = os.path.dirname(full)
    while not os.path.lexists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        return "a file on the way"
    final = os.path.join(os.path.realpath(existing), os.path.relpath(full, existing))
    final = os.path.normpath(final)
    here = os.path.realpath(cwd)
    if final == here or here.startswith(final + os.sep):
        return "the working folder"
    store = os.path.realpath(root / STORE)
    if final in (store, store + ".wal"):
        return "the store"
    if _inside_store_folder(final, root) or _in_checkpoint(os.path.join(final, "x")):
        return "store folder or checkpoint"
    if os.path.islink(final):
        return "a link"
    if os.path.lexists(final):
        if not os.path.isdir(final):
            return "a file"
        if os.listdir(final):
            return "not empty"
    if not _writable_folder(os.path.realpath(existing)):
        return "read-only folder"
    return None


# -- what changed ---------------------------------------------------------------------------------------


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under root: a link's target, a file's content hash, inode and mode, a folder."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            rel = os.path.relpath(p, root)
            st_ = os.lstat(p)
            if stat.S_ISLNK(st_.st_mode):
                out[rel] = ("link", os.readlink(p))
            elif stat.S_ISDIR(st_.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st_.st_mode))
            elif stat.S_ISREG(st_.st_mode):
                with open(p, "rb") as f:
                    out[rel] = ("file", hashlib.sha256(f.read()).hexdigest(), st_.st_ino, stat.S_IMODE(st_.st_mode))
            else:
                out[rel] = ("special", stat.S_IFMT(st_.st_mode))
    return out


def changed(before: dict, after: dict) -> list[str]:
    return sorted({k for k in set(before) | set(after) if before.get(k) != after.get(k)})


# -- budgets ---------------------------------------------------------------------------------------------
# as tests/contract/contract_harness.py: RUNNER_HYPOTHESIS_PROFILE=ci (derandomized) or deep (ten times
# as many, random), times RUNNER_CONTRACT_SCALE


def budget(ci_examples: int):
    from hypothesis import HealthCheck, settings

    profile = os.environ.get("RUNNER_HYPOTHESIS_PROFILE", "ci")
    scale = float(os.environ.get("RUNNER_CONTRACT_SCALE", "1")) * (10 if profile == "deep" else 1)
    return settings(max_examples=max(1, int(ci_examples * scale)), deadline=None, derandomize=profile == "ci",
                    database=None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                           HealthCheck.filter_too_much])
