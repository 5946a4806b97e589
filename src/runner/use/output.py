"""`runner predict`'s output file: its format, the checks before anything is written, its columns,
and the atomic write.

The output has one row per input text: `pred_label` (the predicted label name), `pred_id` (its index
in the run's labels), `p_<label>` for each class (the ensemble's probability), with --members
`<member>.p_<label>` for each member, and then the input's own columns as they were (every column,
or those --keep names). An input column whose name one of runner's columns already has is carried
as `input.<name>`. The `pred_` and `p_` prefixes keep runner's columns apart from the input's
`label` (the truth) whatever the classes are called.
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


def check_output(output: Path | None, input_path: Path | None, store_path: Path | None) -> Target | None:
    """--output checked by the guarded writer (runner.store.writes) before anything is written: never
    INPUT, the store or its folders, and an existing file only when it is an earlier prediction."""
    if output is None:
        return None
    return file_target(output, "--output", recognise=is_predictions_file, store=store_path,
                       made_by="one `runner predict` wrote (its first columns are pred_label, pred_id)",
                       protect=[("INPUT", input_path)], example="predictions.csv")


FIRST_COLUMNS = (["pred_label", "pred_id"], ["row", "label"])  # this runner's, and an earlier one's


def is_predictions_file(path: Path) -> bool:
    """Whether `path` looks like an output of `runner predict` (csv, jsonl or parquet whose first two
    columns are `pred_label` and `pred_id`, or an earlier runner's `row` and `label`): the only
    existing files --output replaces."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
        if head.startswith(b"PAR1"):
            import pyarrow.parquet as pq

            return pq.read_schema(path).names[:2] in FIRST_COLUMNS
        first = head.split(b"\n", 1)[0].decode("utf-8")
        if any(first.startswith(",".join(cols)) for cols in FIRST_COLUMNS):
            return True
        return list(json.loads(first))[:2] in FIRST_COLUMNS if first.startswith("{") else False
    except Exception:  # unreadable or malformed (pyarrow, json, utf-8 errors): not one
        return False


def kept_columns(columns: dict[str, list], keep: str | None) -> dict[str, list]:
    """The input's columns that --keep names (comma-separated; an empty --keep: none), or all of them;
    InputError naming a column the input does not have."""
    if keep is None:
        return columns
    wanted = [k.strip() for k in keep.split(",") if k.strip()]
    missing = [k for k in wanted if k not in columns]
    if missing:
        raise InputError(f"--keep {keep}: INPUT has no column {missing[0]!r}; its columns are "
                         f"{', '.join(columns) or 'none'}")
    return {k: columns[k] for k in dict.fromkeys(wanted)}


def output_columns(prediction, labels: list[str], members: bool, carried: dict[str, list] | None = None
                   ) -> dict[str, np.ndarray | list]:
    """The output's columns in order: pred_label, pred_id, p_<label>..., members' (with --members),
    then the input's carried columns (renamed `input.<name>` where runner's columns hold the name)."""
    ids = prediction.probs.argmax(axis=1).astype(np.int64)
    cols: dict = {"pred_label": [labels[i] for i in ids], "pred_id": ids}
    for j, name in enumerate(labels):
        cols[f"p_{name}"] = prediction.probs[:, j]
    if members:
        for m, probs in prediction.members.items():
            for j, name in enumerate(labels):
                cols[f"{m}.p_{name}"] = probs[:, j]
    for name, cells in (carried or {}).items():
        shown = name
        while shown in cols:
            shown = f"input.{shown}"
        cols[shown] = list(cells)
    return cols


def _text_cell(value) -> str:
    """A carried cell in a csv: text as it is, numbers as Python writes them, lists and tables as JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def _arrow_column(values):
    """A carried column as Arrow: its own type where its cells agree on one, else text."""
    import pyarrow as pa

    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
        return pa.array([None if v is None else _text_cell(v) for v in values], type=pa.string())


def write_output(cols: dict, output: Target | None, fmt: str) -> None:
    """Write the columns to `output` (through the guarded writer) or stdout."""
    names = list(cols)
    floats = [k for k in names if isinstance(cols[k], np.ndarray) and cols[k].dtype.kind == "f"]
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.table({k: pa.array(v) if isinstance(v, np.ndarray) else _arrow_column(v) for k, v in cols.items()})
        write_file(output, lambda f: pq.write_table(table, f))
        return
    n = len(cols["pred_id"])
    if fmt == "csv":  # 6 significant digits, as written before; carried cells as they were read
        cells = {k: ([f"{x:.6g}" for x in v.tolist()] if k in floats else
                     [_text_cell(x) for x in (v.tolist() if isinstance(v, np.ndarray) else v)])
                 for k, v in cols.items()}
    else:
        cells = {k: ([round(x, 7) for x in v.tolist()] if k in floats else
                     (v.tolist() if isinstance(v, np.ndarray) else v)) for k, v in cols.items()}

    def write(f) -> None:
        if fmt == "csv":
            w = csv.writer(f, lineterminator="\n")
            w.writerow(names)
            for i in range(n):
                w.writerow([cells[k][i] for k in names])
        else:
            for i in range(n):
                f.write(json.dumps({k: cells[k][i] for k in names}, ensure_ascii=False, default=str) + "\n")

    if output is None:
        buf = io.StringIO()
        write(buf)
        sys.stdout.write(buf.getvalue())
    else:
        write_file(output, write, text=True)
