"""Cache folders beside a store: `adapted/` (masked-LM adaptations, runner.train.adapt) and
`tokenized/` (tokenized splits, runner.data.tokenized). One bookkeeping for both:

- `root_for(store_path, name)`: the cache's folder beside the store, or where it points when it is
  a link (to storage a cluster shares);
- `stores.txt` in each entry lists every store that used it (`note_store`, `stores_using`);
- `gc_plan`: each complete entry with the stores that still use it, and the interrupted
  `<key>.partial` folders, for `runner gc`. A store listed in an entry that cannot be read (locked by
  a writer, another format) counts as using it, and so does an entry whose key cannot be read. A
  `.partial` that is a link is not runner's to remove, and is left alone.
- `lock_path`: each entry's lock (`.<key>.lock`), held by the process that writes the entry, renames
  it into place and records it in its store, and by `runner gc` while it decides and removes: gc never
  sees an entry between its rename and its record, nor removes a `.partial` being written.
"""

from __future__ import annotations

import os
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from runner.core.locks import try_lock
from runner.store import Store

STORES = "stores.txt"
PARTIAL = ".partial"


def root_for(store_path: Path | str, name: str) -> Path:
    """`name`/ beside the store; where it points when it is a link."""
    root = Path(os.path.abspath(store_path)).parent / name
    return root.resolve() if root.is_symlink() else root


def stores_using(folder: Path) -> list[str]:
    """The stores (absolute paths) recorded as using a cache entry."""
    return (folder / STORES).read_text().splitlines() if (folder / STORES).is_file() else []


def note_store(folder: Path, store_path: Path | str) -> None:
    """Record that `store_path` uses `folder` (gc asks every store listed here)."""
    line = os.path.abspath(store_path)
    if line not in stores_using(folder):
        with open(folder / STORES, "a") as f:
            f.write(line + "\n")


@dataclass
class GcEntry:
    key: str
    path: Path
    size: int
    used_by: list[str]  # stores (paths) that still reference it; [] = removable


def lock_path(root: Path, folder_name: str) -> Path:
    """The lock a process holds while it writes, renames or records the entry `folder_name` (or its
    `.partial`), and `runner gc` while it decides about and removes it."""
    return root / f".{folder_name.removesuffix(PARTIAL)}.lock"


def gc_plan(store: Store, root: Path, info: str, key_of: Callable[[Path], str | None],
            keys_in: Callable[[Store], set[str]], held: ExitStack | None = None) -> tuple[list[GcEntry], list[Path]]:
    """Every complete entry of the cache at `root` (a folder holding the file `info`) with the stores
    still using it, and the `.partial` folders nobody is writing. An entry is used by a store when
    `key_of(entry)` is in `keys_in(store)`; a key of None (unreadable) counts as used, and so does an
    entry whose lock a running process holds (it is being written or recorded).

    With `held` (for a gc that removes), each entry's lock is taken into `held` before the stores are
    read, so that what is planned stays true until the caller has removed it and closes `held`; without,
    locks are only looked at (a dry run creates no lock file)."""
    if not root.is_dir():
        return [], []
    here = os.path.abspath(store.path)
    folders, busy, holders = [], {}, {}
    for folder in sorted(root.iterdir()):
        if not folder.is_dir() or folder.is_symlink():
            continue
        lock = lock_path(root, folder.name)  # <key> and <key>.partial share one: taken once
        if lock not in holders:
            if held is not None:
                holders[lock] = held.enter_context(try_lock(lock))
            else:
                with try_lock(lock, create=False) as holder:
                    holders[lock] = holder
        if holders[lock] is not None:
            busy[folder.name] = holders[lock]
        folders.append(folder)
    mine = keys_in(store) if store.exists() else set()  # read after the locks are taken
    entries, partial = [], []
    for folder in folders:
        if folder.name.endswith(PARTIAL):
            if folder.name not in busy:
                partial.append(folder)
            continue
        if not (folder / info).is_file():
            continue
        key = key_of(folder)
        users = [f"{busy[folder.name]} (running)"] if folder.name in busy else []
        for s in dict.fromkeys([here, *stores_using(folder)]):
            if s == here:
                if key is None or key in mine:
                    users.append(s)
                continue
            if not os.path.exists(s):
                continue
            try:
                other = Store(s).open_read()
                try:
                    if key is None or key in keys_in(other):
                        users.append(s)
                finally:
                    other.close()
            except Exception:  # locked by a writer, unreadable, another format: keep the folder
                users.append(s)
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        entries.append(GcEntry(folder.name, folder, size, users))
    return entries, partial
