"""New texts for `runner predict`: reading the INPUT file, and its content hash.

INPUT is read by a registered dataset loader: `csv`, `jsonl` or `parquet` by its extension, or the
one `--source NAME` names (a plugin loader gets the file as its `train` path and its `train` rows are
taken). Labels are optional: a file without the label column, or with every label cell empty, is
unlabelled; one with some labels missing is an error, as for a test split. Labels are read with the
run's label names declared (runner.data.labels), so a name or an id in 0..n-1 works.

The content hash (16 hex digits of SHA-256 over the texts and label ids, so the same rows give the
same hash whatever file format holds them) names the input's split in the store: `input-<hash>`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runner.core.files import WHY, special_kind
from runner.data.labels import LabelMap, LabelValueError, describe, label_key, shown
from runner.errors import DataError, InputError
from runner.plugins.contexts import LoadContext
from runner.spec.models import DataSpec

EXTENSIONS = {".csv": "csv", ".tsv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet",
              ".pq": "parquet"}


@dataclass
class InputFile:
    path: Path
    source: str  # the dataset loader that read it
    texts: list[str]
    labels: np.ndarray | None  # label ids under the run's label names, or None

    @property
    def content_hash(self) -> str:
        h = hashlib.sha256(f"{len(self.texts)}\x1e".encode())
        for t in self.texts:
            h.update(t.encode("utf-8", "surrogatepass"))
            h.update(b"\x1f")
        h.update(self.labels.astype(np.int64).tobytes() if self.labels is not None else b"unlabeled")
        return h.hexdigest()[:16]

    @property
    def split(self) -> str:
        return f"input-{self.content_hash}"


def read_input(path: Path, label_names: list[str], registry, source: str | None = None, text_column: str = "text",
               label_column: str = "label") -> InputFile:
    """The texts (and labels, if any) of INPUT; DataError/InputError naming INPUT for anything unusable."""
    path = Path(path)
    try:
        found = path.exists()
    except (OSError, ValueError) as e:  # a name too long for the file system, a NUL byte
        raise InputError(f"INPUT {str(path)[:120]}: cannot be a file name ({getattr(e, 'strerror', None) or e})") \
            from None
    if not found:
        raise InputError(f"INPUT {path}: file not found")
    if path.is_dir():
        raise InputError(f"INPUT {path}: is a folder; give a csv, jsonl or parquet file")
    if special_kind(path):
        raise InputError(f"INPUT {path}: is {special_kind(path)}, not a regular file; {WHY}")
    if source is None:
        source = EXTENSIONS.get(path.suffix.lower())
        if source is None:
            raise InputError(f"INPUT {path}: cannot tell its format from the extension {path.suffix or '(none)'!r}; "
                             f"name .csv, .jsonl or .parquet files, or give --source (a dataset loader: "
                             f"{', '.join(registry.names('datasets'))})")
    comp = registry.dataset(source)
    if comp is None:
        raise InputError(f"--source {source!r}: no such dataset loader; one of: {', '.join(registry.names('datasets'))}")
    if path.stat().st_size == 0:
        raise DataError(f"INPUT {path}: the file is empty")
    options = comp.options.model_validate({"delimiter": "\t"} if path.suffix.lower() == ".tsv" else {}) \
        if comp.options is not None else None
    try:
        data = DataSpec(source=source, train=str(path.resolve()), valid=None, test=None, text_column=text_column,
                        label_column=label_column, labels=list(label_names) or None)
    except ValueError as e:  # pydantic's ValidationError: an empty column name, a control character
        first = e.errors()[0] if hasattr(e, "errors") else {"loc": (), "msg": str(e)}
        key = {"text_column": "--text-column", "label_column": "--label-column"}.get(
            str(first["loc"][0]) if first["loc"] else "", f"INPUT {path}")
        raise InputError(f"{key}: {first['msg']}") from None
    ctx = LoadContext(data=data, base_dir=Path.cwd())
    try:
        if comp.read_file is not None:
            rows = comp.read_file(path, ctx, options)
        else:
            raw = comp.load(ctx, options)
            rows = (raw if isinstance(raw, dict) else raw.splits).get("train")
    except DataError as e:  # the loader speaks of the spec's keys; here they are options
        msg = str(e).replace("[data].text_column", "--text-column").replace("[data].label_column", "--label-column")
        raise DataError(msg if msg.startswith("INPUT") else f"INPUT {msg}") from None
    except InputError:
        raise
    except Exception as e:  # a plugin loader's own failure is bad input, naming the loader
        raise DataError(f"INPUT {path}: dataset loader {source!r} ({comp.origin}) failed: {type(e).__name__}: {e}") from e
    return _checked(path, source, rows, label_names, text_column, label_column)


def _checked(path: Path, source: str, rows, label_names: list[str], text_column: str,
             label_column: str) -> InputFile:
    if not isinstance(rows, list):
        raise DataError(f"INPUT {path}: the {source} loader returned {describe(rows)}, not a list of rows")
    if not rows:
        raise DataError(f"INPUT {path}: the file has no rows")
    lmap = LabelMap(list(label_names), declared=True)
    declared = frozenset(label_names)
    texts, labels, missing = [], [], []
    for i, r in enumerate(rows):
        where = f"INPUT {path}: row {i + 1}"
        t = r.get("text") if isinstance(r, dict) else None
        if not isinstance(t, str) or not t.strip():
            what = "is empty" if t is None or isinstance(t, str) else f"holds {describe(t)}, not text"
            raise DataError(f"{where}: column {text_column!r} (--text-column) {what}")
        texts.append(t)
        try:
            key = label_key(r.get("label"), declared)
        except LabelValueError as e:
            raise DataError(f"{where}: column {label_column!r} (--label-column) {e}") from None
        if key is None:
            missing.append(i)
            labels.append(-1)
            continue
        label_id = lmap.id_of(key)
        if label_id is None:
            names = ", ".join(label_names[:20]) + (", ..." if len(label_names) > 20 else "")
            raise DataError(f"{where}: column {label_column!r} (--label-column) has {shown(key)}, which is not one of "
                            f"the run's labels ({names}; an integer is taken as an index 0..{len(label_names) - 1})")
        labels.append(label_id)
    if missing and len(missing) < len(texts):
        raise DataError(f"INPUT {path}: {len(missing)} of {len(texts)} rows have no {label_column!r} (the first is "
                        f"row {missing[0] + 1}); give every row a label, or none")
    return InputFile(path, source, texts, None if missing else np.asarray(labels, dtype=np.int64))


# -- the output ---------------------------------------------------------------------------------
