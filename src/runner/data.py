"""From a spec's `[data]` table to checked, split, label-encoded examples with a content hash.

A dataset loader (a plugin) returns raw rows per split; everything after that is the same for every
loader: the label set, fraction splits (stratified and seeded), checks with errors that name the file
and the row, and a `dataset_id` that is the hash of the content, so two runs over the same examples
share one copy of them in the store.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataError, OptionError, SpecError

SPLITS = ("train", "valid", "test")


@dataclass
class LoadContext:
    """What a dataset loader receives: the spec's `[data]` table and where relative paths start."""

    data: Any  # runner.spec.DataSpec
    base_dir: Path
    seed: int = 0

    def path(self, value: str) -> Path:
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.base_dir / p


@dataclass
class RawDataset:
    """A loader's result: rows (`{"text": ..., "label": ...}`) per split, optional label names, and
    where each split came from (for error messages)."""

    splits: dict[str, list[dict[str, Any]]]
    label_names: list[str] | None = None
    sources: dict[str, str] = field(default_factory=dict)


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
        raw = comp.obj(ctx, options)
    except DataError:
        raise
    except OptionError as e:
        raise SpecError(spec_path, [(f"data.{e.key}", e.message)]) from None
    except Exception as e:  # a loader's own failure is reported as bad data, naming the loader
        raise DataError(f"dataset loader {data_spec.source!r} ({comp.origin}) failed: {type(e).__name__}: {e}") from e
    if isinstance(raw, dict):
        raw = RawDataset(splits=raw)
    if "train" not in raw.splits:
        raise DataError(f"dataset loader {data_spec.source!r} returned no 'train' split")
    return raw


def _no_label(value) -> bool:
    """A missing label: None, NaN, or an empty CSV cell (read as "" because text cells may not be null)."""
    return (
        value is None
        or (isinstance(value, float) and np.isnan(value))
        or (isinstance(value, str) and not value.strip())
    )


def _label_mapper(label_names: list[str] | None, rows_by_split, sources):
    """The label set and a map from each raw label value to its id."""
    values = {r["label"] for rows in rows_by_split.values() for r in rows if not _no_label(r.get("label"))}
    if label_names is None:
        if values and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
            n = int(max(values)) + 1
            if min(values) < 0:
                raise DataError(f"{sources.get('train', 'train')}: negative label id {min(values)}")
            label_names = [str(i) for i in range(n)]
        else:
            label_names = sorted(str(v) for v in values)
    by_name = {name: i for i, name in enumerate(label_names)}

    def to_id(value) -> int | None:
        """A label's id: by name first (CSV may give "2" or 2 for a label named "2"), else as an index."""
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        hit = by_name.get(str(value))
        if hit is not None:
            return hit
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and 0 <= value < len(label_names):
            return int(value)
        return None

    return label_names, to_id


def _encode(rows, split: str, source: str, to_id, label_names, text_col: str, label_col: str) -> Split:
    texts, labels = [], []
    missing, first_missing = 0, 0
    for i, r in enumerate(rows):
        t = r.get("text")
        if not isinstance(t, str) or not t.strip():
            raise DataError(f"{source}: row {i + 1} of the {split} split has an empty {text_col!r}")
        texts.append(t)
        lab = r.get("label")
        if _no_label(lab):
            missing += 1
            first_missing = first_missing or i + 1
            labels.append(-1)
            continue
        label_id = to_id(lab)
        if label_id is None:
            folded = [n for n in label_names if n.casefold() == str(lab).strip().casefold()]
            hint = f" (labels are case- and space-sensitive: did you mean {folded[0]!r}?)" if folded else ""
            raise DataError(
                f"{source}: row {i + 1} of the {split} split has {label_col!r} = {lab!r}, which is not in the "
                f"label set {label_names}{hint}; fix the row or list every label in [data].labels"
            )
        labels.append(label_id)
    if not texts:
        raise DataError(f"{source}: the {split} split is empty")
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


def prepare(data_spec, raw: RawDataset, seed: int) -> PreparedData:
    """Label-encode, split off fractions, check, and hash a loader's rows."""
    sources = {s: raw.sources.get(s, f"{data_spec.source} loader") for s in SPLITS}
    label_names, to_id = _label_mapper(data_spec.labels or raw.label_names, raw.splits, sources)
    splits = {
        name: _encode(rows, name, sources[name], to_id, label_names, data_spec.text_column, data_spec.label_column)
        for name, rows in raw.splits.items()
        if name in SPLITS
    }
    train = splits["train"]
    if train.labels is None:
        raise DataError(f"{sources['train']}: the train split has no labels")
    taken = 0.0  # fractions are of the whole labelled pool, so the second is scaled to what is left
    for name in ("valid", "test"):
        frac = getattr(data_spec, name)
        if isinstance(frac, float):
            frac, taken = frac / (1.0 - taken), taken + frac
            if name in splits:
                raise DataError(f"[data].{name} is a fraction, but the loader already returned a {name} split")
            keep, take = stratified_split(train.labels, frac, seed + (1 if name == "valid" else 2))
            splits[name] = _take(train, take)
            train = _take(train, keep)
    splits["train"] = train
    if "valid" not in splits:
        raise DataError("there is no validation split: set [data].valid to a file or a fraction such as 0.1")
    for name in ("train", "valid", "test"):
        s = splits.get(name)
        if s is not None and s.labels is not None and len(np.unique(s.labels)) < 2:
            only = label_names[int(s.labels[0])]
            raise DataError(
                f"{sources[name] if not isinstance(getattr(data_spec, name, None), float) else sources['train']}: "
                f"the {name} split has only one class ({only!r}); a classifier cannot be trained or judged on it"
            )
    return PreparedData(label_names=label_names, splits=splits, dataset_id=dataset_hash(label_names, splits))
