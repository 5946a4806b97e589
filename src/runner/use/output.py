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
import sys
from pathlib import Path

import numpy as np

from runner.data.inputs import EXTENSIONS
from runner.errors import InputError
from runner.store.writes import Target, file_target, write_file

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


def check_output(output: Path | None, input_path: Path, store_path: Path | None) -> Target | None:
    """--output checked by the guarded writer (runner.store.writes) before anything is written: never
    INPUT, the store or its folders, and an existing file only when it is an earlier prediction."""
    if output is None:
        return None
    return file_target(output, "--output", recognise=is_predictions_file, store=store_path,
                       made_by="one `runner predict` wrote (its first columns are row, label)",
                       protect=[("INPUT", input_path)], example="predictions.csv")


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


def write_output(cols: dict, output: Target | None, fmt: str) -> None:
    """Write the columns to `output` (through the guarded writer) or stdout."""
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.table({k: pa.array(v) for k, v in cols.items()})
        write_file(output, lambda f: pq.write_table(table, f))
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
        write_file(output, write, text=True)
