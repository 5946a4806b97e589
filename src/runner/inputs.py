"""New texts for `runner predict`: reading the INPUT file, its content hash, and writing the output.

INPUT is read by a registered dataset loader: `csv`, `jsonl` or `parquet` by its extension, or the
one `--source NAME` names (a plugin loader gets the file as its `train` path and its `train` rows are
taken). Labels are optional: a file without the label column, or with every label cell empty, is
unlabelled; one with some labels missing is an error, as for a test split. Labels are read with the
run's label names declared (runner.labels), so a name or an id in 0..n-1 works.

The content hash (16 hex digits of SHA-256 over the texts and label ids, so the same rows give the
same hash whatever file format holds them) names the input's split in the store: `input-<hash>`.

The output has one row per input row: `row` (0-based, the row's position in INPUT), `label` (the
predicted label name), `p_<label>` for each class (the ensemble's probability), and with --members
`<member>.p_<label>` for each member. Prefixing the class columns keeps them apart from `row` and
`label` whatever the classes are called.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DataError, InputError

EXTENSIONS = {".csv": "csv", ".tsv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet",
              ".pq": "parquet"}
OUTPUT_FORMATS = ("csv", "jsonl", "parquet")


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
    from .builtins.datasets import FILE_FORMATS, read_file
    from .data import LoadContext
    from .spec.models import DataSpec

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
        if source in FILE_FORMATS:
            rows = read_file(path, source, ctx, options)
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
    from .labels import LabelMap, LabelValueError, describe, label_key

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
            shown = ", ".join(label_names[:20]) + (", ..." if len(label_names) > 20 else "")
            raise DataError(f"{where}: column {label_column!r} (--label-column) has {key!r}, which is not one of the "
                            f"run's labels ({shown}; an integer is taken as an index 0..{len(label_names) - 1})")
        labels.append(label_id)
    if missing and len(missing) < len(texts):
        raise DataError(f"INPUT {path}: {len(missing)} of {len(texts)} rows have no {label_column!r} (the first is "
                        f"row {missing[0] + 1}); give every row a label, or none")
    return InputFile(path, source, texts, None if missing else np.asarray(labels, dtype=np.int64))


# -- the output ---------------------------------------------------------------------------------


def output_format(output: Path | None, fmt: str | None) -> str:
    """The format to write: --format, else the output file's extension, else csv."""
    if fmt is None:
        fmt = EXTENSIONS.get(output.suffix.lower(), "csv") if output is not None else "csv"
    if fmt not in OUTPUT_FORMATS:
        raise InputError(f"--format {fmt!r}: one of {', '.join(OUTPUT_FORMATS)}")
    if fmt == "parquet" and output is None:
        raise InputError("--format parquet: parquet is binary; give --output FILE to write it")
    return fmt


def check_output(output: Path | None, input_path: Path, store_path: Path | None) -> None:
    """InputError before anything is written when --output cannot be written where it points."""
    if output is None:
        return
    if len(output.name.encode("utf-8", "surrogateescape")) > 200:
        raise InputError(f"--output {str(output)[:120]}...: the file name is too long (at most 200 bytes)")
    if output.is_dir():
        raise InputError(f"--output {output}: is a folder; give a file name such as {output / 'predictions.csv'}")
    for other, what in ((input_path, "INPUT"), (store_path, "the store")):
        if other is not None and output.exists() and other.exists() and output.resolve() == other.resolve():
            raise InputError(f"--output {output}: is {what} itself; give another file name")
    if output.is_file() and output.stat().st_size > 0 and not is_predictions_file(output):
        raise InputError(f"--output {output}: the file exists and is not one `runner predict` wrote (its first "
                         "columns are not row, label); nothing is overwritten but an earlier prediction: give "
                         "another file name, or remove it first")
    parent = output.parent if str(output.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"--output {output}: the folder {parent} does not exist")
    if not os.access(parent, os.W_OK) or (output.exists() and not os.access(output, os.W_OK)):
        raise InputError(f"--output {output}: cannot be written (check the permissions of {parent})")


def is_predictions_file(path: Path) -> bool:
    """Whether `path` looks like an output of `runner predict` (csv, jsonl or parquet whose first two
    columns are `row` and `label`): the only existing files --output replaces."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
        if head.startswith(b"PAR1"):
            import pyarrow.parquet as pq

            return pq.read_schema(path).names[:2] == ["row", "label"]
        first = head.split(b"\n", 1)[0].decode("utf-8")
        if first.startswith("row,label"):
            return True
        return list(json.loads(first))[:2] == ["row", "label"] if first.startswith("{") else False
    except Exception:  # unreadable or malformed (pyarrow, json, utf-8 errors): not one
        return False


def output_columns(prediction, labels: list[str], members: bool) -> dict[str, np.ndarray | list]:
    n = len(prediction.probs)
    cols: dict = {"row": np.arange(n, dtype=np.int64), "label": [labels[i] for i in prediction.probs.argmax(axis=1)]}
    for j, name in enumerate(labels):
        cols[f"p_{name}"] = prediction.probs[:, j]
    if members:
        for m, probs in prediction.members.items():
            for j, name in enumerate(labels):
                cols[f"{m}.p_{name}"] = probs[:, j]
    return cols


def write_output(cols: dict, output: Path | None, fmt: str) -> None:
    """Write the columns to `output` (through a temporary file, renamed when complete) or stdout."""
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.table({k: pa.array(v) for k, v in cols.items()})
        _atomic(output, lambda f: pq.write_table(table, f), binary=True)
        return
    names = list(cols)
    floats = [k for k in names if k not in ("row", "label")]
    n = len(cols["row"])
    as_text = {k: [f"{x:.6g}" for x in cols[k].tolist()] for k in floats} if fmt == "csv" else {}

    def write(f) -> None:
        if fmt == "csv":
            w = csv.writer(f, lineterminator="\n")
            w.writerow(names)
            label = cols["label"]
            for i in range(n):
                w.writerow([i, label[i], *(as_text[k][i] for k in floats)])
        else:
            lists = {k: cols[k].tolist() for k in floats}
            for i in range(n):
                row = {"row": i, "label": cols["label"][i]}
                row.update({k: round(lists[k][i], 7) for k in floats})
                f.write(json.dumps(row, ensure_ascii=False) + "\n")

    if output is None:
        buf = io.StringIO()
        write(buf)
        sys.stdout.write(buf.getvalue())
    else:
        _atomic(output, write, binary=False)


def _atomic(output: Path, write, binary: bool) -> None:
    """Write a regular file through a temporary file renamed over it when complete. Anything else that
    exists (a device such as /dev/null, a pipe) is written to as it is: renaming over it would replace
    it. A symbolic link is followed, so the link stays and its target gets the new content."""
    mode, kwargs = ("wb", {}) if binary else ("w", {"encoding": "utf-8", "newline": ""})
    if output.exists() and not output.is_file():
        with open(output, mode, **kwargs) as f:
            write(f)
        return
    target = output.resolve() if output.is_symlink() else output
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, mode, **kwargs) as f:
            write(f)
        os.replace(tmp, target)
    finally:
        if tmp.exists():  # the temporary file this call made, left only when writing failed
            tmp.unlink()
