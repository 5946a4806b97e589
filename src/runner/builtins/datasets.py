"""Built-in dataset loaders: `csv`, `jsonl`, `parquet` (read with pyarrow) and `synthetic`.

Text files (csv, jsonl) are decoded as UTF-8 unless `[data.options] encoding` names another codec
(`encoding = "cp949"`); a UTF-8 byte-order mark is ignored; bytes that do not decode are an error
naming the file, the row (and line) and the column. A file that starts with a UTF-16/32 byte-order
mark needs the encoding option. CSV cells are text: a label cell that is a number written as an
integer ("3", "2011", "2.0") is that integer, one written as a fraction ("1.5") is a number that the
label rules reject unless it is a declared label name, anything else is a class name as written. A
column used as text or label that appears twice in a header is an error. JSON Lines are read line by
line with Python's json module, so errors name the line, and a label column may mix text and numbers.
What a label cell may hold, and how it becomes a class, is decided for every loader in runner.data.labels.
"""

from __future__ import annotations

import codecs
import json
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_serializer

from runner.core.files import WHY, special_kind
from runner.data import synthetic
from runner.data.labels import shown_names
from runner.errors import DataError, OptionError
from runner.plugins.contexts import LoadContext, RawDataset
from runner.plugins.hookspecs import hookimpl

FILE_SPLITS = ("train", "valid", "test")
_OTHER_BOMS = ((codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"),
               (codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16"))
_MARK = "\udc00"  # stands in for bytes that do not decode, to find their row and column
codecs.register_error("runner.mark", lambda e: (_MARK, e.end))
_LINE_BREAK = re.compile(r"\r\n?|\n")  # JSON strings cannot hold a raw CR or LF, so these end lines
_INT_TEXT = re.compile(r"\s*[+-]?[0-9]{1,38}\s*")
_NUMBER_TEXT = re.compile(r"\s*[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]{1,3})?\s*")


class TextOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    encoding: str | None = Field(None, description='the text encoding, e.g. "cp949"; UTF-8 when not set')

    @field_validator("encoding")
    @classmethod
    def _codec(cls, v):
        if v is not None:
            try:
                text = getattr(codecs.lookup(v), "_is_text_encoding", True)
            except LookupError:
                text = False
            if not text:
                raise ValueError(f"unknown text encoding {v!r}; use a Python codec name such as 'utf-8' or 'cp949'")
        return v

    @model_serializer(mode="wrap")
    def _omit_unset_encoding(self, handler):
        d = handler(self)  # an unset encoding is left out, so specs written before it keep their hash
        if d.get("encoding") is None:
            d.pop("encoding", None)
        return d


class CsvOptions(TextOptions):
    delimiter: str = Field(",", min_length=1, max_length=1, description="The column separator, one character.")

    @field_validator("delimiter")
    @classmethod
    def _one_ascii_char(cls, v):
        if not v.isascii() or v in '\r\n"' or not (v.isprintable() or v == "\t"):
            raise ValueError(f"{v!r} cannot separate columns; use one ASCII character other than a quote or a "
                             "line break, such as ',', ';' or '\\t'")
        return v


class JsonlOptions(TextOptions):
    pass


class NoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class SyntheticOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    size: int = Field(3000, ge=20, le=5_000_000, description="Reviews generated (before the splits).")
    language: Literal["en", "ko"] = Field("en", description="en or ko.")
    noise: float = Field(0.08, ge=0.0, le=0.5, description="Share of labels flipped to a neighbouring class.")


def _decode(path: Path, fmt: str, options) -> str:
    """The file as text without a byte-order mark; an error naming row and column where it does not decode."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot be read: {e.strerror or e}") from None
    encoding = options.encoding or "utf-8"
    if options.encoding is None:
        for bom, name in _OTHER_BOMS:
            if data.startswith(bom):
                raise DataError(f"{path}: the file is {name} text (it starts with a {name} byte-order mark); "
                                f'set [data.options] encoding = "{name.lower()}", or re-save it as UTF-8')
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError:
        where = _where_undecodable(data.decode(encoding, "runner.mark"), fmt, options)
        fix = ("re-save it as UTF-8, or name its encoding in [data.options], e.g. encoding = \"cp949\""
               if options.encoding is None else "check [data.options] encoding")
        name = encoding if options.encoding else "UTF-8"
        raise DataError(f"{path}: {where} is not valid {name} text; {fix}") from None
    return text.removeprefix("\ufeff")


def _where_undecodable(text: str, fmt: str, options) -> str:
    """`row N (line L), column 'x'` for the first cell holding _MARK."""
    import csv
    import io

    pos = text.index(_MARK)
    line = len(_LINE_BREAK.findall(text, 0, pos)) + 1
    try:
        if fmt == "jsonl":
            lines = _LINE_BREAK.split(text)
            obj = json.loads(lines[line - 1].removeprefix("\ufeff"))
            key = next(k for k, v in obj.items() if _MARK in k or (isinstance(v, str) and _MARK in v))
            row = sum(1 for s in lines[:line] if s.strip())
            return f"row {row} (line {line}), key {key!r},"
        reader = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""), delimiter=options.delimiter)
        header = next(reader)
        if any(_MARK in h for h in header):
            return "the header row"
        for n, record in enumerate(reader, 1):
            for j, cell in enumerate(record):
                if _MARK in cell:
                    column = header[j] if j < len(header) else f"#{j + 1}"
                    return f"row {n} (line {line}), column {column!r},"
    except Exception:  # a malformed line or record: the line number is still right
        pass
    return f"line {line}"


def _read_csv(path: Path, text: str, ctx: LoadContext, options, all_text: bool = False):
    """The file as an Arrow table; the text and label columns as text, and with `all_text` every
    column (cells carried into `runner predict`'s output as written: an id `007` stays `007`)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    columns = {ctx.data.text_column: pa.string(), ctx.data.label_column: pa.string()}
    data = text.encode("utf-8")
    parse = pacsv.ParseOptions(delimiter=options.delimiter, newlines_in_values=True)

    def read(block_size: int | None):
        read_options = pacsv.ReadOptions(block_size=block_size) if block_size else None
        types = columns
        if all_text:  # the header's names, from the first block only
            names = pacsv.open_csv(pa.BufferReader(data), read_options=read_options, parse_options=parse).schema.names
            types = {**{name: pa.string() for name in names}, **columns}
        return pacsv.read_csv(
            pa.BufferReader(data), read_options=read_options, parse_options=parse,
            convert_options=pacsv.ConvertOptions(column_types=types, strings_can_be_null=False),
        )

    try:
        try:
            return read(None)
        except pa.ArrowInvalid as e:
            if "straddl" not in str(e):
                raise
            # a row longer than pyarrow's block (1 MiB by default): one block holds the whole file (the
            # bytes are in memory already); pyarrow's block size is a 32-bit count
            return read(min(len(data) + 1, 2**31 - 1))
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OSError) as e:
        msg = str(e).strip().splitlines()[0]
        if "Empty CSV file" in msg or not text.strip():
            raise DataError(f"{path}: the file is empty; it needs a header row and at least one example") from None
        ragged = re.search(r"Expected (\d+) columns, got (\d+)", msg)
        if ragged:  # pyarrow quotes the whole row after this: runner names it instead (runner.data.labels.shown)
            raise DataError(f"{path}: cannot be read as csv: {ragged.group(0)} in "
                            f"{_ragged_row(text, options, int(ragged.group(1)))}; quote a cell that holds the "
                            "delimiter, or set [data.options] delimiter") from None
        raise DataError(f"{path}: cannot be read as csv: {msg[:200]}") from None


def _ragged_row(text: str, options, expected: int) -> str:
    """`row N (line L)`: the first record whose number of cells is not the header's."""
    import csv
    import io

    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""), delimiter=options.delimiter)
    try:
        for n, record in enumerate(reader):
            if n and len(record) != expected:
                return f"row {n} (line {reader.line_num})"
    except csv.Error:
        pass
    return "a row"


def _csv_label(cell: str, declared: frozenset[str]):
    """A CSV label cell: a declared name as written, else an integer or number when written as one, else text."""
    if cell in declared:
        return cell
    if _INT_TEXT.fullmatch(cell):
        return int(cell)
    if _NUMBER_TEXT.fullmatch(cell):
        return float(cell)
    return cell


def _read_jsonl(path: Path, text: str) -> list[dict]:
    rows = []
    for n, line in enumerate(_LINE_BREAK.split(text), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as e:
            what = e.msg.removesuffix(" at")
            raise DataError(f"{path}: cannot be read as jsonl: line {n} is not valid JSON ({what} at column "
                            f"{e.colno}); each line must be one JSON object") from None
        except ValueError as e:  # e.g. an integer with more digits than Python converts
            raise DataError(f"{path}: cannot be read as jsonl: line {n}: {e}") from None
        if not isinstance(value, dict):
            raise DataError(f"{path}: cannot be read as jsonl: line {n} is a JSON {type(value).__name__}, not an "
                            "object; each line must be one JSON object")
        rows.append(value)
    if not rows:
        raise DataError(f"{path}: the file is empty; it needs one JSON object per line")
    return rows


def _read_parquet(path: Path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OSError) as e:
        msg = str(e).strip().splitlines()[0]
        if path.stat().st_size == 0:
            raise DataError(f"{path}: the file is empty") from None
        raise DataError(f"{path}: cannot be read as parquet: {msg}") from None


def _column(table, key: str | int, path: Path) -> list:
    """A column's cells, by name or by position (a header may repeat a name)."""
    import pyarrow as pa

    column = table.column(key)
    name = table.column_names[key] if isinstance(key, int) else key
    try:
        return column.to_pylist()
    except UnicodeDecodeError:
        cells = column.cast(pa.binary()).to_pylist()
        row = next(i + 1 for i, cell in enumerate(cells) if cell is not None and not _is_utf8(cell))
        raise DataError(f"{path}: row {row}, column {name!r}, is not valid UTF-8 text") from None


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def _rows(path: Path, fmt: str, ctx: LoadContext, options, split: str, keep_columns: bool = False) -> list[dict]:
    """`{"text", "label"}` rows; with `keep_columns`, each row's own cells too, as `columns`."""
    if not path.is_file():
        if special_kind(path):
            raise DataError(f"{path}: is {special_kind(path)}, not a regular file (named by [data].{split}); {WHY}")
        raise DataError(f"{path}: file not found (named by [data].{split})")
    text_col, label_col = ctx.data.text_column, ctx.data.label_column
    declared = frozenset(ctx.data.labels or ())
    if fmt == "jsonl":
        objects = _read_jsonl(path, _decode(path, fmt, options))
        keys = {k for obj in objects for k in obj}
        for col, key in ((text_col, "text_column"), (label_col, "label_column")):
            if col not in keys and (col == text_col or split != "test"):
                raise DataError(f"{path}: no key {col!r} in any line ([data].{key}); the keys are "
                                f"{shown_names(sorted(keys))}")
        if keep_columns:
            return [{"text": obj.get(text_col), "label": obj.get(label_col), "columns": obj} for obj in objects]
        return [{"text": obj.get(text_col), "label": obj.get(label_col)} for obj in objects]
    table = (_read_csv(path, _decode(path, fmt, options), ctx, options, all_text=keep_columns) if fmt == "csv"
             else _read_parquet(path))
    cols = table.column_names
    for col, key in ((text_col, "text_column"), (label_col, "label_column")):
        if cols.count(col) > 1:
            raise DataError(f"{path}: the file has {cols.count(col)} columns named {col!r} ([data].{key}); "
                            "rename all but one")
    if text_col not in cols:
        raise DataError(f"{path}: no column {text_col!r} ([data].text_column); the columns are {shown_names(cols)}")
    texts = _column(table, text_col, path)
    if label_col in cols:
        labels = _column(table, label_col, path)
        if fmt == "csv":
            labels = [_csv_label(cell, declared) for cell in labels]
    elif split == "test":
        labels = [None] * len(texts)  # test labels are optional
    else:
        raise DataError(f"{path}: no column {label_col!r} ([data].label_column); the columns are "
                        f"{shown_names(cols)}")
    if keep_columns:
        names = [n if cols.index(n) == i else f"{n}_{i + 1}" for i, n in enumerate(cols)]  # repeated names
        cells = [_column(table, i, path) for i in range(len(cols))]
        return [{"text": t, "label": lab, "columns": dict(zip(names, row))}
                for t, lab, row in zip(texts, labels, zip(*cells))]
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
    for fmt, options in (("csv", CsvOptions), ("jsonl", JsonlOptions), ("parquet", NoOptions)):
        register(fmt, _file_loader(fmt), options=options, read_file=_file_reader(fmt))
    register("synthetic", load_synthetic, options=SyntheticOptions)


def _file_reader(fmt: str):
    def read_file(path: Path, ctx: LoadContext, options) -> list[dict]:
        """One file's `{"text", "label", "columns"}` rows, the label column optional (None labels when
        it is absent), read as a test split of a spec is: what `runner predict` reads its INPUT with.
        `columns` holds the row's own cells, which predict carries into its output."""
        return _rows(path, fmt, ctx, options, "test", keep_columns=True)

    return read_file
