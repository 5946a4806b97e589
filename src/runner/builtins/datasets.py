"""Built-in dataset loaders: `csv`, `jsonl`, `parquet` (read with pyarrow) and `synthetic`."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from runner.data import LoadContext, RawDataset
from runner.errors import DataError, OptionError
from runner.hookspecs import hookimpl

FILE_SPLITS = ("train", "valid", "test")


class CsvOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    delimiter: str = Field(",", min_length=1, max_length=1)


class NoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class SyntheticOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    size: int = Field(3000, ge=20, le=5_000_000)
    language: Literal["en", "ko"] = "en"
    noise: float = Field(0.08, ge=0.0, le=0.5)


def _read_table(path: Path, fmt: str, ctx: LoadContext, options):
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.json as pajson
    import pyarrow.parquet as pq

    text_col = ctx.data.text_column
    try:
        if fmt == "csv":
            return pacsv.read_csv(
                path,
                parse_options=pacsv.ParseOptions(delimiter=options.delimiter, newlines_in_values=True),
                convert_options=pacsv.ConvertOptions(column_types={text_col: pa.string()}, strings_can_be_null=False),
            )
        if fmt == "jsonl":
            return pajson.read_json(path)
        return pq.read_table(path)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OSError) as e:
        msg = str(e).strip().splitlines()[0]
        if "Empty CSV file" in msg or (path.is_file() and path.stat().st_size == 0):
            raise DataError(f"{path}: the file is empty; it needs a header row and at least one example") from None
        if "UTF8" in msg or "utf-8" in msg.lower():
            raise DataError(f"{path}: the file is not valid UTF-8 text ({msg}); re-save it as UTF-8") from None
        if fmt == "jsonl":
            where = _first_bad_json_line(path)
            if where:
                raise DataError(f"{path}: cannot be read as jsonl: {where}") from None
        raise DataError(f"{path}: cannot be read as {fmt}: {msg}") from None


def _first_bad_json_line(path: Path) -> str | None:
    """`line N: what is wrong` for the first line of a JSON Lines file that is not one JSON object."""
    import json

    try:
        with path.open(encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    value = json.loads(line)
                except json.JSONDecodeError as e:
                    return (f"line {n} is not valid JSON ({e.msg.removesuffix(' at')} at column {e.colno}); "
                            "each line must be one JSON object")
                if not isinstance(value, dict):
                    return f"line {n} is a JSON {type(value).__name__}, not an object; each line must be one JSON object"
    except (OSError, UnicodeDecodeError):
        return None
    return None


def _rows(path: Path, fmt: str, ctx: LoadContext, options, split: str) -> list[dict]:
    if not path.is_file():
        raise DataError(f"{path}: file not found (named by [data].{split})")
    table = _read_table(path, fmt, ctx, options)
    text_col, label_col = ctx.data.text_column, ctx.data.label_column
    cols = table.column_names
    if text_col not in cols:
        raise DataError(f"{path}: no column {text_col!r} ([data].text_column); the columns are {cols}")
    texts = table.column(text_col).to_pylist()
    if label_col in cols:
        labels = table.column(label_col).to_pylist()
    elif split == "test":
        labels = [None] * len(texts)  # test labels are optional
    else:
        raise DataError(f"{path}: no column {label_col!r} ([data].label_column); the columns are {cols}")
    if any(t is not None and not isinstance(t, str) for t in texts):
        raise DataError(f"{path}: column {text_col!r} must hold text")
    return [{"text": t, "label": lab} for t, lab in zip(texts, labels)]


def _file_loader(fmt: str):
    def load(ctx: LoadContext, options) -> RawDataset:
        if not ctx.data.train:
            raise OptionError("train", f"the {fmt} loader needs a path to the training file")
        splits, sources = {}, {}
        for split in FILE_SPLITS:
            value = getattr(ctx.data, split)
            if isinstance(value, str):
                path = ctx.path(value)
                splits[split] = _rows(path, fmt, ctx, options, split)
                sources[split] = str(path)
        return RawDataset(splits=splits, sources=sources)

    return load


def load_synthetic(ctx: LoadContext, options: SyntheticOptions) -> RawDataset:
    from runner import synthetic

    for split in FILE_SPLITS:
        if isinstance(getattr(ctx.data, split), str):
            hint = "remove the path" if split == "train" else "give a fraction such as 0.1 instead of a path"
            raise OptionError(split, f"the synthetic loader generates its data; {hint}")
    texts, labels = synthetic.generate(options.size, seed=ctx.seed, language=options.language, noise=options.noise)
    rows = [{"text": t, "label": int(y)} for t, y in zip(texts, labels)]
    name = f"synthetic(size={options.size}, language={options.language}, seed={ctx.seed})"
    return RawDataset(splits={"train": rows}, label_names=list(synthetic.LABEL_NAMES),
                      sources={s: name for s in FILE_SPLITS})


@hookimpl
def register_datasets(register):
    register("csv", _file_loader("csv"), options=CsvOptions)
    register("jsonl", _file_loader("jsonl"), options=NoOptions)
    register("parquet", _file_loader("parquet"), options=NoOptions)
    register("synthetic", load_synthetic, options=SyntheticOptions)
