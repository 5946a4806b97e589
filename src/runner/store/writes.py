"""The one guarded writer: every file or folder a user names for runner to write goes through here
(`runner plot --out`, `report --out`, `predict --output`, `export DIR`, `schema --out`), as every
delete goes through runner.store.checkpoints.remove_under.

A target is checked before the command does its work (`file_target`, `folder_target`: InputError,
exit 2, naming the option and the path, nothing written) and again just before it is written. Refused:

- the store, its WAL and temporary folder, and anything inside the runs/, adapted/ or tokenized/
  folder of a store (a DuckDB file beside the folder), or inside a runner checkpoint (a folder
  holding runner.json), since an export ships that folder's files;
- a spec or a plugin file (.toml, .py): runner writes neither;
- a symbolic link (to anything, or dangling), a file with other hard links, a folder where a file is
  meant, a non-empty folder where a folder is meant, a socket or a block device;
- an existing non-empty file that the command did not write (each command recognises its own
  output: a mark in the file, or its format); an empty file holds nothing to lose and is replaced
  (`mktemp` makes one); a read-only file; a folder that cannot be written.

Files are written to a temporary file in the same folder and renamed over the name when complete
(`write_file`), so a failure leaves what was there, and a rename never writes through a link. A FIFO
or a character device (/dev/stdout, /dev/null) holds nothing and is written as it is. A folder is
filled beside its destination and renamed into place (`publish_folder`), with the mode a plain
`mkdir` would give it.

This lives in the store layer because it knows the store's layout (the file, its WAL, the folders
beside it), which the commands above it (analysis, use, cli) share, as the guarded delete does.
"""

from __future__ import annotations

import io
import os
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Callable, Iterable

from runner.errors import InputError
from runner.store.checkpoints import RUNNER_JSON, remove_under
from runner.store.filecheck import STORE_FOLDERS, _can_write_folder, store_folder_of

NEVER_WRITTEN = {".toml": "a spec", ".py": "a plugin file"}
_NAME_MAX = 255


@dataclass(frozen=True)
class Target:
    """A checked destination. `path`: where it lands (the folder resolved, the name kept); `given`: as
    the user wrote it; `replaces`: an existing file (an earlier output, or empty) is replaced;
    `stream`: a FIFO or a character device, written in place."""

    given: Path
    path: Path
    option: str
    replaces: bool = False
    stream: bool = False
    _recheck: Callable[[], "Target"] | None = field(default=None, repr=False, compare=False)


def file_target(path: str | os.PathLike, option: str, *, suffixes: Iterable[str] | None = None,
                recognise: Callable[[Path], bool] | None = None, made_by: str = "one runner wrote",
                store: str | os.PathLike | None = None, protect: Iterable[tuple[str, str | os.PathLike]] = (),
                example: str = "output") -> Target:
    """The file `path` (given as `option`) checked for writing; InputError with what to do otherwise.

    `suffixes`: the names allowed (lower case, with the dot); `recognise(path)`: whether an existing file
    is an earlier output of the command (`made_by` says what that is: "a page `runner report` wrote");
    `store`: the store whose file and folders are refused; `protect`: (what, path) pairs of other files
    never written (INPUT, a spec); `example`: a file name the message suggests for a folder.
    """
    given = Path(path)
    if isinstance(path, str) and path.endswith((os.sep, os.sep + ".", os.sep + "..")):  # Path() would drop it
        raise InputError(f"{option} {_shown(given)}: names a folder ({path!r}); give a file name such as "
                         f"{given / example}. Nothing was written.")
    suffixes = tuple(suffixes) if suffixes is not None else None
    protect = tuple((what, Path(p)) for what, p in protect if p is not None)

    def check() -> Target:
        return _file_target(given, option, suffixes, recognise, made_by, store, protect, example, check)

    return check()


def _file_target(given: Path, option: str, suffixes, recognise, made_by: str, store, protect, example: str,
                 check) -> Target:
    def refuse(why: str) -> InputError:
        return InputError(f"{option} {_shown(given)}: {why}. Nothing was written.")

    _check_name(given, refuse)
    parent = _parent(given, refuse)
    final = parent / given.name
    st_ = _lstat(final, refuse)
    if given.name in ("", ".", "..") or (st_ is not None and stat.S_ISDIR(st_.st_mode)):
        raise refuse(f"is a folder; give a file name such as {given / example}")
    if suffixes is not None and given.suffix.lower() not in suffixes:
        names = ", ".join(suffixes[:-1]) + (" or " if len(suffixes) > 1 else "") + suffixes[-1]
        raise refuse(f"give a {names} file name")
    if given.suffix.lower() in NEVER_WRITTEN:
        raise refuse(f"a {given.suffix} file is {NEVER_WRITTEN[given.suffix.lower()]}, which runner never writes; "
                     "give another file name")
    _refuse_protected(final, st_, store, protect, refuse)
    if st_ is None:
        if not _can_write_folder(parent):
            raise refuse(f"cannot be written: the folder {parent} is not writable")
        return Target(given, final, option, _recheck=check)
    mode = st_.st_mode
    if stat.S_ISLNK(mode):
        raise refuse(f"is a symbolic link (to {os.readlink(final)}); runner never writes through a link: name the "
                     "file itself, or a new file")
    if stat.S_ISFIFO(mode) or stat.S_ISCHR(mode):
        return Target(given, final, option, stream=True, _recheck=check)
    if not stat.S_ISREG(mode):
        raise refuse("is not a regular file (a socket or a device); give a file name")
    if st_.st_nlink > 1:
        raise refuse(f"the file has {st_.st_nlink - 1} other name(s) (hard links), so it is also another file "
                     "(the store, a spec, a user's file); runner replaces no such file: give a new file name")
    if st_.st_size > 0 and (recognise is None or not recognise(final)):
        raise refuse(f"the file exists and is not {made_by}; nothing is overwritten but an earlier output of the "
                     "command: give another file name, or remove it first")
    if not mode & 0o222:
        raise refuse("the file is read-only; make it writable, or give another file name")
    if not _can_write_folder(parent):
        raise refuse(f"cannot be written: the folder {parent} is not writable")
    return Target(given, final, option, replaces=True, _recheck=check)


def folder_target(path: str | os.PathLike, option: str = "DIR", *, store: str | os.PathLike | None = None) -> Target:
    """The folder `path` checked for `publish_folder`: a new folder, or an empty one (replaced)."""
    given = Path(path)

    def check() -> Target:
        return _folder_target(given, option, store, check)

    return check()


def _folder_target(given: Path, option: str, store, check) -> Target:
    def refuse(why: str) -> InputError:
        return InputError(f"{option} {_shown(given)}: {why}. Nothing was written.")

    _check_name(given, refuse)
    here = Path.cwd().resolve()
    absolute = Path(os.path.abspath(given))
    existing = absolute.parent
    while not _exists(existing, refuse) and existing != existing.parent:
        existing = existing.parent
    if _exists(existing, refuse) and not existing.is_dir():
        raise refuse(f"cannot be created: {existing} is a file")
    final = Path(os.path.realpath(existing)) / absolute.relative_to(existing)
    st_ = _lstat(final, refuse)
    if final == here or final in here.parents:
        raise refuse("is the current folder (or holds it); give a new folder name")
    _refuse_protected(final, st_, store, (), refuse)
    replaces = False
    if st_ is not None:
        if stat.S_ISLNK(st_.st_mode):
            raise refuse(f"is a symbolic link (to {os.readlink(final)}); give a new folder name")
        if not stat.S_ISDIR(st_.st_mode):
            raise refuse("exists and is a file; give a new folder name")
        if any(final.iterdir()):
            raise refuse("exists and is not empty; give a new folder name")
        replaces = True
    if not _can_write_folder(Path(os.path.realpath(existing))):
        raise refuse(f"cannot be created: {existing} is not a writable folder")
    return Target(given, final, option, replaces=replaces, _recheck=check)


def write_file(target: Target, write: Callable[[IO], None], text: bool = False) -> Path:
    """Write through a temporary file in the target's folder, renamed over the name when complete
    (a stream is written as it is); `write(f)` gets a binary file, or with `text` a UTF-8 text file
    without newline translation. Returns where it was written."""
    target = target._recheck() if target._recheck is not None else target
    if target.stream:
        with open(target.path, "wb") as raw:
            _call(write, raw, text)
        return target.path
    folder = target.path.parent
    old = _lstat(target.path, lambda why: InputError(f"{target.option} {target.given}: {why}"))
    mode = stat.S_IMODE(old.st_mode) if old is not None else 0o666 & ~_umask()
    fd, name = tempfile.mkstemp(prefix=f".{target.path.name[:80]}.", suffix=".runner-tmp", dir=folder)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as raw:
            os.fchmod(raw.fileno(), mode)
            _call(write, raw, text)
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, target.path)
    finally:
        if os.path.lexists(tmp):  # the temporary file this call made, left only when writing failed
            remove_under(tmp, folder)
    return target.path


def write_text(target: Target, content: str) -> Path:
    return write_file(target, lambda f: f.write(content), text=True)


def publish_folder(target: Target, fill: Callable[[Path], None]) -> Path:
    """Fill a new folder beside the target (`fill(folder)`) and rename it into place when complete; an
    interrupted fill leaves nothing at the target. The folder gets the mode `mkdir` would give it."""
    target = target._recheck() if target._recheck is not None else target
    parent = target.path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"{target.option} {target.given}: cannot create the folder {parent} ({e.strerror}). "
                         "Nothing was written.") from None
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.path.name[:80]}.", suffix=".runner-tmp", dir=parent))
    try:
        fill(tmp)
        os.chmod(tmp, 0o777 & ~_umask())
        try:
            os.rename(tmp, target.path)  # replaces an empty folder; refuses anything else
        except OSError as e:
            raise InputError(f"{target.option} {target.given}: appeared while it was being written "
                             f"({e.strerror}); give a new folder name. Nothing was written.") from None
    finally:
        if tmp.exists():  # the folder this call made, only when something failed before the rename
            remove_under(tmp, parent)
    return target.path


# -- the checks ---------------------------------------------------------------------------------------


def _shown(path: Path) -> str:
    text = str(path)
    return text if len(text) <= 160 else text[:120] + "..."


def _check_name(given: Path, refuse) -> None:
    text = str(given)
    if "\x00" in text:
        raise refuse("contains a NUL byte")
    long = [p for p in given.parts if len(os.fsencode(p)) > _NAME_MAX]
    if long:
        raise refuse(f"a file or folder name is too long ({len(os.fsencode(long[0]))} bytes; at most {_NAME_MAX})")


def _exists(path: Path, refuse) -> bool:
    try:
        return os.path.lexists(path)
    except (OSError, ValueError) as e:
        raise refuse(f"not a usable path ({getattr(e, 'strerror', None) or e})") from None


def _lstat(path: Path, refuse) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as e:  # too long a path, a file where a folder is expected, no permission
        raise refuse(f"cannot be used ({e.strerror})") from None


def _parent(given: Path, refuse) -> Path:
    """The folder that will hold `given`, resolved (a link to a folder is followed): it must exist."""
    folder = given.parent if str(given.parent) else Path(".")
    try:
        st_ = os.stat(folder)
    except FileNotFoundError:
        raise refuse(f"the folder {folder} does not exist") from None
    except OSError as e:
        raise refuse(f"the folder {folder} cannot be used ({e.strerror})") from None
    if not stat.S_ISDIR(st_.st_mode):
        raise refuse(f"{folder} is not a folder")
    return Path(os.path.realpath(folder))


def _same(st_: os.stat_result | None, other: Path) -> bool:
    try:
        o = os.stat(other)
    except (OSError, ValueError):
        return False
    return st_ is not None and (st_.st_dev, st_.st_ino) == (o.st_dev, o.st_ino)


def _refuse_protected(final: Path, st_: os.stat_result | None, store, protect, refuse) -> None:
    """The store's file, side files and folders, the files in `protect`, and any store's folders or a
    checkpoint, whether the target exists or not."""
    if store is not None:
        store_path = Path(os.path.realpath(store))
        for side, what in (("", "the store"), (".wal", "the store's write-ahead log"),
                           (".tmp", "the store's temporary folder")):
            p = Path(str(store_path) + side)
            if final == p or _same(st_, p) or (side == ".tmp" and p in final.parents):
                raise refuse(f"is {what} ({p}); give another name")
        for name in STORE_FOLDERS:
            root = Path(os.path.realpath(store_path.parent / name))
            if final == root or root in final.parents:
                raise refuse(f"is inside {root}, which runner keeps for the store {store} (checkpoints and caches "
                             "that runner cleans up); give a name outside it")
    for what, p in protect:
        if final == Path(os.path.realpath(p)) or _same(st_, p):
            raise refuse(f"is {what} itself; give another name")
    folder = store_folder_of(final)
    if folder is not None:
        raise refuse(f"is inside {folder}, which runner keeps for the store beside it (checkpoints and caches "
                     "that runner cleans up); give a name outside it")
    for d in final.parents:
        if (d / RUNNER_JSON).is_file():
            raise refuse(f"is inside {d}, a runner checkpoint (an export ships its files); give a name outside it")


def _call(write, raw, text: bool) -> None:
    if not text:
        write(raw)
        return
    wrapper = io.TextIOWrapper(raw, encoding="utf-8", newline="")
    try:
        write(wrapper)
        wrapper.flush()
    finally:
        wrapper.detach()


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
