"""From a spec's `[data]` table to checked, split, label-encoded examples with a content hash.

A dataset loader (a plugin) returns raw rows per split; everything after that is the same for every
loader: the label set (the rules are in runner.data.labels), fraction splits (stratified and seeded), checks
with errors that name the file, the row and the column, and a `dataset_id` that is the hash of the
content, so two runs over the same examples share one copy of them in the store.

Fraction splits take round(class size x fraction) of each class and leave at least one example of
each class for training. A fraction split that would take no examples, or examples of one class only
(`valid = 0.01` of 20 rows, or 2 rows in all), is an error naming `data.valid`/`data.test`, the sizes,
and the smallest fraction that works; it is never silently enlarged. Every split must hold at least 2
classes; a class may be missing from valid or test.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runner.data.labels import LabelMap, LabelValueError, describe, infer_names, label_key, shown
from runner.errors import DataError, OptionError, SpecError
from runner.plugins.contexts import LoadContext, RawDataset

SPLITS = ("train", "valid", "test")


@dataclass
class Split:
    texts: list[str]
    labels: np.ndarray | None  # int64 label ids, None when the split has no labels (test only)

    def __len__(self) -> int:
        return len(self.texts)


@dataclass
class PreparedData:
    label_names: list[str]
    splits: dict[str, Split]
    dataset_id: str

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    def class_counts(self, split: str = "train") -> list[int]:
        labels = self.splits[split].labels
        return np.bincount(labels, minlength=self.num_labels).tolist() if labels is not None else []


def load_raw(data_spec, registry, spec_path: Path, seed: int, options) -> RawDataset:
    comp = registry.get("datasets", data_spec.source)
    ctx = LoadContext(data=data_spec, base_dir=spec_path.resolve().parent, seed=seed)
    try:
        raw = comp.load(ctx, options)
    except DataError:
        raise
    except OptionError as e:
        raise SpecError(spec_path, [(f"data.{e.key}", e.message)]) from None
    except Exception as e:  # a loader's own failure is reported as bad data, naming the loader
        raise DataError(f"dataset loader {data_spec.source!r} ({comp.origin}) failed: {type(e).__name__}: {e}") from e
    if isinstance(raw, dict):
        raw = RawDataset(splits=raw)
    if not isinstance(raw, RawDataset) or not isinstance(raw.splits, dict):
        raise DataError(f"dataset loader {data_spec.source!r} ({comp.origin}) returned {describe(raw)}, "
                        "not a dict of splits or a RawDataset")
    if "train" not in raw.splits:
        raise DataError(f"dataset loader {data_spec.source!r} returned no 'train' split")
    return raw


def _read_split(rows, split: str, source: str, text_col: str, label_col: str, declared: frozenset[str]):
    """A split's texts and label keys (see runner.data.labels), each cell checked; errors name file, row, column."""
    if not isinstance(rows, list):
        raise DataError(f"{source}: the loader returned {describe(rows)} for the {split} split, not a list of rows")
    texts, keys = [], []
    for i, r in enumerate(rows):
        where = f"{source}: row {i + 1} of the {split} split"
        if not isinstance(r, dict):
            raise DataError(f"{where} is {describe(r)}, not a {{'text': ..., 'label': ...}} row")
        t = r.get("text")
        if t is None or (isinstance(t, str) and not t.strip()):
            raise DataError(f"{where} has an empty {text_col!r}")
        if not isinstance(t, str):
            raise DataError(f"{where}: column {text_col!r} must hold text, but holds {describe(t)}")
        texts.append(t)
        try:
            keys.append(label_key(r.get("label"), declared))
        except LabelValueError as e:
            raise DataError(f"{where}: column {label_col!r} {e}") from None
    if not texts:
        raise DataError(f"{source}: the {split} split is empty")
    try:
        "".join(texts).encode("utf-8")  # one pass; the store cannot hold lone surrogates
    except UnicodeEncodeError:
        i = next(i for i, t in enumerate(texts) if not _encodes(t))
        raise DataError(f"{source}: row {i + 1} of the {split} split: column {text_col!r} holds text that is not valid "
                        "Unicode (a lone surrogate, as decoding with errors='surrogateescape' leaves)") from None
    return texts, keys


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _encode(texts, keys, split: str, source: str, lmap: LabelMap, label_col: str) -> Split:
    labels = []
    missing, first_missing = 0, 0
    for i, key in enumerate(keys):
        if key is None:
            missing += 1
            first_missing = first_missing or i + 1
            labels.append(-1)
            continue
        label_id = lmap.id_of(key)
        if label_id is None:
            raise DataError(f"{source}: row {i + 1} of the {split} split has {label_col!r} = {shown(key)}, "
                            f"{lmap.why_not(key)}")
        labels.append(label_id)
    if missing == len(texts) and split == "test":
        return Split(texts, None)
    if missing:
        raise DataError(
            f"{source}: {missing} of {len(texts)} rows of the {split} split have no {label_col!r} "
            f"(the first is row {first_missing}); "
            + ("a test split may have no labels at all, but not some" if split == "test" else "every row needs a label")
        )
    return Split(texts, np.asarray(labels, dtype=np.int64))


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (kept, taken) with `fraction` of each class taken, seeded; at least one per class kept."""
    rng = random.Random(seed)
    taken = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c).tolist()
        rng.shuffle(idx)
        k = int(round(len(idx) * fraction))
        k = min(k, len(idx) - 1)
        taken.extend(idx[:k])
    taken_arr = np.sort(np.asarray(taken, dtype=np.int64))
    mask = np.ones(len(labels), dtype=bool)
    mask[taken_arr] = False
    return np.flatnonzero(mask), taken_arr


def _take(split: Split, idx: np.ndarray) -> Split:
    return Split([split.texts[i] for i in idx], split.labels[idx] if split.labels is not None else None)


def dataset_hash(label_names: list[str], splits: dict[str, Split]) -> str:
    h = hashlib.sha256()
    h.update("\x1f".join(label_names).encode())
    for name in SPLITS:
        if name not in splits:
            continue
        s = splits[name]
        h.update(f"\x1e{name}\x1e{len(s)}".encode())
        for t in s.texts:
            h.update(t.encode("utf-8", "surrogatepass"))
            h.update(b"\x1f")
        h.update(s.labels.tobytes() if s.labels is not None else b"unlabeled")
    return h.hexdigest()[:16]


def _declared_names(data_spec, raw: RawDataset) -> list[str]:
    if data_spec.labels:
        return list(data_spec.labels)
    names = raw.label_names
    if names is None:
        return []
    if (not isinstance(names, (list, tuple)) or len(names) < 2 or len(set(names)) != len(names)
            or not all(isinstance(n, str) and n for n in names)):
        raise DataError(f"dataset loader {data_spec.source!r} returned the label names {names!r}; "
                        "they must be 2 or more distinct, non-empty strings")
    return list(names)


def _one_class(split: Split, name: str, source: str, label_names: list[str]) -> DataError | None:
    if split.labels is not None and len(np.unique(split.labels)) < 2:
        only = label_names[int(split.labels[0])]
        return DataError(f"{source}: the {name} split has only one class ({only!r}); "
                         "a classifier cannot be trained or judged on it")
    return None


def _split_off(train: Split, name: str, fraction: float, share: float, seed: int, source: str,
               label_names: list[str]) -> tuple[Split, Split]:
    """(kept, taken) for a fraction split; an error naming data.<name> and the sizes when what it takes
    would be empty or one class. `fraction` is the spec's value, `share` what it is of the rows left."""
    keep, take = stratified_split(train.labels, share, seed)
    taken_classes = np.unique(train.labels[take])
    if len(taken_classes) >= 2:
        return _take(train, keep), _take(train, take)
    counts = np.bincount(train.labels)
    sizes = np.sort(counts[counts > 0])[::-1]
    splittable = int((sizes >= 2).sum())
    if splittable < 2:
        raise DataError(
            f"{source}: too little data for data.{name} = {fraction:g}: a fraction split leaves at least one "
            f"example of each class for training, and only {splittable} of the {len(sizes)} classes in these "
            f"{len(train)} rows have more than one example; add examples, or give data.{name} a file")
    only = label_names[int(taken_classes[0])] if len(take) else None
    got = ("no examples" if only is None else
           f"only {len(take)} example{'s' if len(take) != 1 else ''}, all of class {only!r}")
    above = 0.5 / int(sizes[sizes >= 2][1]) * fraction / share  # round(size * share) >= 1 for two classes
    have = f"{sizes[0]} examples each" if sizes[0] == sizes[-1] else f"{sizes[-1]} to {sizes[0]} examples"
    raise DataError(
        f"{source}: data.{name} = {fraction:g} of {len(train)} rows takes {got} (each class gives "
        f"round(its size x {share:.3g}) and keeps one example for training; the {len(sizes)} classes have {have}); "
        f"a {name} split needs examples of at least 2 classes: raise data.{name} above {above:.2g}, or give it a file")


def prepare(data_spec, raw: RawDataset, seed: int) -> PreparedData:
    """Check, label-encode, split off fractions, and hash a loader's rows (label rules: runner.data.labels)."""
    sources = {s: raw.sources.get(s, f"{data_spec.source} loader") for s in SPLITS}
    declared = _declared_names(data_spec, raw)
    text_col, label_col = data_spec.text_column, data_spec.label_column
    read = {name: _read_split(raw.splits[name], name, sources[name], text_col, label_col, frozenset(declared))
            for name in SPLITS if name in raw.splits}
    label_names = declared or infer_names(k for k in read["train"][1] if k is not None)
    lmap = LabelMap(label_names, declared=bool(declared))
    splits = {name: _encode(texts, keys, name, sources[name], lmap, label_col) for name, (texts, keys) in read.items()}
    train = splits["train"]
    if train.labels is None:
        raise DataError(f"{sources['train']}: the train split has no labels")
    if (err := _one_class(train, "train", sources["train"], label_names)) is not None:
        raise err
    taken = 0.0  # fractions are of the whole labelled pool, so the second is scaled to what is left
    for name in ("valid", "test"):
        frac = getattr(data_spec, name)
        if isinstance(frac, float):
            if name in splits:
                raise DataError(f"[data].{name} is a fraction, but the loader already returned a {name} split")
            share, taken = frac / (1.0 - taken), taken + frac
            train, splits[name] = _split_off(train, name, frac, share, seed + (1 if name == "valid" else 2),
                                             sources["train"], label_names)
    splits["train"] = train
    if "valid" not in splits:
        raise DataError("there is no validation split: set [data].valid to a file or a fraction such as 0.1")
    for name in ("valid", "test"):
        if name in splits and (err := _one_class(splits[name], name, sources[name], label_names)) is not None:
            raise err
    return PreparedData(label_names=label_names, splits=splits, dataset_id=dataset_hash(label_names, splits))
