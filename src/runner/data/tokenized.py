"""The tokenization cache: every split of a dataset tokenized once per tokenizer and max_length.

Members that share a tokenizer (the quickstart's two scratch BERTs train the same vocabulary), the
validation dry run and the training that follows it, a sweep's trials, `repeats` replicas and a
re-run all tokenize the same texts with the same tokenizer. `encoded_splits` does it once:

- the key is a hash of the data (`PreparedData.dataset_id`, a content hash of every split's texts
  and labels), the tokenizer's content (its whole `tokenizers` JSON: vocabulary, normalizer,
  pre-tokenizer, post-processor, added tokens; plus the special tokens, padding and truncation
  sides and input names), `max_length`, and how runner calls it (`FORMAT`). A slow tokenizer (no
  `backend_tokenizer`) has no cheap content to hash and is never cached;
- in process: the last few tokenizations are kept in memory (`MEMORY_LIMIT` bytes), read-only;
- on disk, beside the store: `tokenized/<key>/` with one `.npy` file per split and input (the
  tokens of all rows concatenated, int32) plus the row offsets, and `tokenized.json`. Written into
  `<key>.partial/` and renamed into place under a lock, so a reader never sees half a folder; read
  with `allow_pickle=False`. `stores.txt` lists the stores that used it, and `runner gc` removes
  a folder once none of them has a run on its dataset (`gc_plan`).

The cache is only ever a shortcut: a folder that cannot be written or read (a read-only disk, a
worker without the store's folder) means tokenizing in memory, never a failed run. What comes back
is what `tokenizer(texts, truncation=True, max_length=...)` returns, so training is bit-identical
with and without it (tests/data/test_tokenized.py).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import OrderedDict
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np

from runner.core.locks import file_lock
from runner.errors import StoreError
from runner.store import caches
from runner.store.checkpoints import remove_under
from runner.store.filecheck import TOKENIZED

FORMAT = "runner-tokenized-1"  # also names the call: tokenizer(texts, truncation=True, max_length=L)
TOKENIZED_DIR = TOKENIZED
INFO = "tokenized.json"
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
MEMORY_LIMIT = 1 << 30  # bytes of tokens kept in process; the oldest go first
# RUNNER_TOKENIZED_CACHE=0 turns the cache off (both levels): for benchmarks and comparisons
ENV_SWITCH = "RUNNER_TOKENIZED_CACHE"


@dataclass(frozen=True)
class Encoded:
    """One split tokenized, in split order, unpadded: row i is `arrays[name][offsets[i]:offsets[i + 1]]`."""

    arrays: dict[str, np.ndarray]
    offsets: np.ndarray  # int64, len(rows) + 1

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def nbytes(self) -> int:
        return self.offsets.nbytes + sum(a.nbytes for a in self.arrays.values())


def tokenize(tokenizer, texts: list[str], max_length: int) -> Encoded:
    """The split as runner tokenizes it (truncated to `max_length`, never padded), flattened.

    The tokenizer is left as it was: a fast tokenizer's call leaves its truncation on the backend,
    which then goes into every saved tokenizer.json, so a member whose tokens came from the cache
    would ship other files than one that tokenized them."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    before = (backend.truncation, backend.padding) if backend is not None else None
    enc = tokenizer(list(texts), truncation=True, max_length=max_length)
    if backend is not None:
        _restore(backend, *before)
    rows = {k: enc[k] for k in INPUTS if k in enc}
    lengths = np.fromiter((len(r) for r in rows["input_ids"]), dtype=np.int64, count=len(texts))
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    total = int(offsets[-1])
    arrays = {}
    for k, v in rows.items():
        flat = np.fromiter(chain.from_iterable(v), dtype=np.int64, count=total)
        small = flat.size == 0 or (flat.min() >= np.iinfo(np.int32).min and flat.max() <= np.iinfo(np.int32).max)
        arrays[k] = _frozen(flat.astype(np.int32) if small else flat)
    return Encoded(arrays, _frozen(offsets))


def _restore(backend, truncation: dict | None, padding: dict | None) -> None:
    if truncation is None:
        backend.no_truncation()
    else:
        backend.enable_truncation(**truncation)
    if padding is None:
        backend.no_padding()
    else:
        backend.enable_padding(**padding)


def _frozen(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False  # shared between members: nobody may change it in place
    return a


def tokenizer_fingerprint(tokenizer) -> str | None:
    """A hash of everything that decides the ids a tokenizer gives a text, or None (a slow tokenizer)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    content = json.loads(backend.to_str())
    # the truncation and padding a previous call left set on the backend: every call sets its own
    content.pop("truncation", None)
    content.pop("padding", None)
    h = hashlib.sha256(json.dumps(content, sort_keys=True).encode())
    around = {
        "class": type(tokenizer).__name__,
        "special": tokenizer.special_tokens_map,
        "padding_side": tokenizer.padding_side,
        "truncation_side": getattr(tokenizer, "truncation_side", None),
        "inputs": list(tokenizer.model_input_names),
        "split_special_tokens": getattr(tokenizer, "split_special_tokens", None),
        "add_prefix_space": getattr(tokenizer, "add_prefix_space", None),
    }
    h.update(json.dumps(around, sort_keys=True, default=str).encode())
    return h.hexdigest()


def cache_key(dataset_id: str, fingerprint: str, max_length: int) -> str:
    blob = json.dumps({"format": FORMAT, "dataset": dataset_id, "tokenizer": fingerprint,
                       "max_length": max_length}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def root_for(store_path: Path) -> Path:
    """tokenized/ beside the store (runner.store.caches)."""
    return caches.root_for(store_path, TOKENIZED_DIR)


def enabled() -> bool:
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "false", "no", "off")


# -- in process ---------------------------------------------------------------------------------


class _Memory:
    def __init__(self, limit: int):
        self.limit = limit
        self.entries: OrderedDict[str, dict[str, Encoded]] = OrderedDict()

    def get(self, key: str) -> dict[str, Encoded] | None:
        if key in self.entries:
            self.entries.move_to_end(key)
        return self.entries.get(key)

    def put(self, key: str, splits: dict[str, Encoded]) -> None:
        self.entries[key] = splits
        self.entries.move_to_end(key)
        while len(self.entries) > 1 and sum(_size(s) for s in self.entries.values()) > self.limit:
            self.entries.popitem(last=False)

    def clear(self) -> None:
        self.entries.clear()


def _size(splits: dict[str, Encoded]) -> int:
    return sum(e.nbytes for e in splits.values())


MEMORY = _Memory(MEMORY_LIMIT)


# -- the entry point ----------------------------------------------------------------------------


@dataclass
class Lookup:
    """What `encoded_splits` did, for the caller's log and for tests: `source` is "memory", "disk",
    "tokenized" (a miss) or "uncached" (the cache is off, or the tokenizer cannot be fingerprinted)."""

    key: str | None
    source: str
    folder: Path | None = None


def encoded_splits(tokenizer, data, max_length: int, root: Path | None = None,
                   store_path: Path | None = None, write: bool = True) -> tuple[dict[str, Encoded], Lookup]:
    """Every split of `data` (a runner.data.prepare.PreparedData) tokenized, from the cache when it has it.
    `root`: the `tokenized/` folder beside the store (None: in process only); `store_path`: the
    store recorded as a user of the folder; `write=False` only reads the folder (a DDP follower:
    rank 0 writes). A `root` whose store folder does not exist here (a Ray worker on another node
    without shared storage) is not created: that process keeps its tokens in memory."""
    if root is not None and not root.parent.is_dir():
        root = None
    fingerprint = tokenizer_fingerprint(tokenizer) if enabled() else None
    if fingerprint is None:
        return _tokenize_all(tokenizer, data, max_length), Lookup(None, "uncached")
    key = cache_key(data.dataset_id, fingerprint, max_length)
    sizes = {name: len(s) for name, s in data.splits.items()}
    splits, source = MEMORY.get(key), "memory"
    if splits is not None and {n: len(e) for n, e in splits.items()} != sizes:
        splits = None  # another PreparedData under the same id (never from runner.data.prepare): tokenize it
    folder = root / key if root is not None else None
    if splits is None and folder is not None:
        splits, source = _read(folder, sizes), "disk"
    if splits is None:
        splits, source = _tokenize_all(tokenizer, data, max_length), "tokenized"
    MEMORY.put(key, splits)
    if folder is not None and not write:
        folder = folder if source == "disk" else None
    elif folder is not None:
        info = {"format": FORMAT, "key": key, "dataset_id": data.dataset_id, "tokenizer": fingerprint,
                "max_length": max_length, "splits": sizes}
        if not _write(folder, splits, info, store_path):
            folder = None
    return splits, Lookup(key, source, folder)


def _tokenize_all(tokenizer, data, max_length: int) -> dict[str, Encoded]:
    return {name: tokenize(tokenizer, split.texts, max_length) for name, split in data.splits.items()}


# -- on disk ------------------------------------------------------------------------------------


def _files(split: str, names) -> dict[str, str]:
    return {"offsets": f"{split}.offsets.npy", **{k: f"{split}.{k}.npy" for k in names}}


def _read(folder: Path, sizes: dict[str, int]) -> dict[str, Encoded] | None:
    """The folder's splits, or None when it is absent, from another format, or does not match."""
    try:
        info = json.loads((folder / INFO).read_text())
        if info.get("format") != FORMAT or info.get("splits") != sizes:
            return None
        out = {}
        for split, names in info["inputs"].items():
            files = _files(split, names)
            offsets = np.load(folder / files["offsets"], allow_pickle=False)
            arrays = {k: _frozen(np.load(folder / files[k], allow_pickle=False)) for k in names}
            if len(offsets) != sizes[split] + 1 or any(len(a) != offsets[-1] for a in arrays.values()):
                return None
            out[split] = Encoded(arrays, _frozen(offsets))
        return out if set(out) == set(sizes) else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _write(folder: Path, splits: dict[str, Encoded], info: dict[str, Any], store_path: Path | None) -> bool:
    """Write the folder once (`.partial` + rename under a lock) and note the store; False when the
    disk refuses (the tokenization in memory still serves this process)."""
    root = folder.parent
    try:
        if not (folder / INFO).is_file():
            with file_lock(caches.lock_path(root, folder.name), f"tokenization {folder.name}", wait_s=120):
                if not (folder / INFO).is_file():
                    partial = root / f"{folder.name}.partial"
                    if partial.exists():  # left by a process that died while writing it
                        remove_under(partial, root)
                    partial.mkdir(parents=True)
                    inputs = {}
                    for split, enc in splits.items():
                        files = _files(split, enc.arrays)
                        np.save(partial / files["offsets"], enc.offsets, allow_pickle=False)
                        for k, a in enc.arrays.items():
                            np.save(partial / files[k], a, allow_pickle=False)
                        inputs[split] = list(enc.arrays)
                    (partial / INFO).write_text(json.dumps({**info, "inputs": inputs}, indent=1))
                    os.replace(partial, folder)
        if store_path is not None:
            caches.note_store(folder, store_path)
        return True
    except (OSError, StoreError, ValueError):
        return False


# -- gc -----------------------------------------------------------------------------------------


def gc_plan(store, held=None) -> tuple[list[caches.GcEntry], list[Path]]:
    """Every tokenized folder beside `store` with the stores that still have a run on its dataset, and
    the leftover `.partial` folders (no process resumes a tokenization: they are removable)
    (runner.store.caches.gc_plan)."""
    return caches.gc_plan(store, root_for(store.path), INFO, key_of=_dataset_of, keys_in=lambda s: s.dataset_ids(),
                          held=held)


def _dataset_of(folder: Path) -> str | None:
    try:
        return json.loads((folder / INFO).read_text())["dataset_id"]
    except (OSError, ValueError, KeyError, TypeError):
        return None  # unreadable: kept unless no store listed in it exists any more
