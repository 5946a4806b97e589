"""`runner predict`'s output file: its format, the checks before anything is written, its columns,
and the atomic write.

The output has one row per input row: `row` (0-based, the row's position in INPUT), `label` (the
predicted label name), `p_<label>` for each class (the ensemble's probability), and with --members
`<member>.p_<label>` for each member. Prefixing the class columns keeps them apart from `row` and
`label` whatever the classes are called.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from pathlib import Path

import numpy as np

from runner.data.inputs import EXTENSIONS
from runner.errors import InputError

OUTPUT_FORMATS = ("csv", "jsonl", "parquet")


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
