"""New texts for `runner predict`: reading the INPUT file, and its content hash.

INPUT is read by a registered dataset loader: `csv`, `jsonl` or `parquet` by its extension, or the
one `--source NAME` names (a plugin loader gets the file as its `train` path and its `train` rows are
taken). A `.txt` file (or `--source txt`) is one text per line, UTF-8, blank lines skipped; `-` is
standard input, read as `.txt` unless `--source` names a loader. Labels are optional: a file without
the label column, or with every label cell empty, is unlabelled; one with some labels missing is an
error, as for a test split. Labels are read with the run's label names declared (runner.data.labels),
so a name or an id in 0..n-1 works.

The input's own columns (every cell of a csv, jsonl or parquet row; `line` and `text` of a text file)
are kept in `InputFile.columns`, for predict to carry into its output.

The content hash (16 hex digits of SHA-256 over the texts and label ids, so the same rows give the
same hash whatever file format holds them) names the input's split in the store: `input-<hash>`.
"""

from __future__ import annotations

import hashlib
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from runner.core.files import WHY, special_kind
from runner.data.labels import LabelMap, LabelValueError, describe, label_key, shown
from runner.errors import DataError, InputError
from runner.plugins.contexts import LoadContext
from runner.spec.models import DataSpec

EXTENSIONS = {".csv": "csv", ".tsv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet",
              ".pq": "parquet"}
LINES = "txt"  # the source name of a file of one text per line (`.txt`, and standard input by default)
STDIN = "-"


@dataclass
class InputFile:
    path: Path
    source: str  # the dataset loader that read it
    texts: list[str]
    labels: np.ndarray | None  # label ids under the run's label names, or None
    columns: dict[str, list[Any]] = field(default_factory=dict)  # the input's own columns, in its order

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


def read_input(path: Path | str, label_names: list[str], registry, source: str | None = None,
               text_column: str = "text", label_column: str = "label") -> InputFile:
    """The texts (and labels, if any) of INPUT (`-`: standard input); DataError/InputError naming INPUT
    for anything unusable."""
    if str(path) == STDIN:
        return _read_stdin(label_names, registry, source, text_column, label_column)
    path = Path(path)
    try:
        found = path.exists()
    except (OSError, ValueError) as e:  # a name too long for the file system, a NUL byte
        raise InputError(f"INPUT {str(path)[:120]}: cannot be a file name ({getattr(e, 'strerror', None) or e})") \
            from None
    if not found:
        raise InputError(f"INPUT {path}: file not found")
    if path.is_dir():
        raise InputError(f"INPUT {path}: is a folder; give a csv, jsonl, parquet or txt file")
    if special_kind(path):
        raise InputError(f"INPUT {path}: is {special_kind(path)}, not a regular file; {WHY}")
    if source is None:
        source = LINES if path.suffix.lower() == ".txt" else EXTENSIONS.get(path.suffix.lower())
        if source is None:
            raise InputError(f"INPUT {path}: cannot tell its format from the extension {path.suffix or '(none)'!r}; "
                             f"name .csv, .jsonl, .parquet or .txt (one text per line) files, or give --source (a "
                             f"dataset loader: {', '.join(registry.names('datasets'))}, or txt)")
    comp = registry.dataset(source)
    if comp is None and source == LINES:
        if path.stat().st_size == 0:
            raise DataError(f"INPUT {path}: the file is empty")
        numbered = read_lines(path)
        if not numbered:
            raise DataError(f"INPUT {path}: the file has only blank lines; give one text per line")
        texts = [t for _, t in numbered]
        return InputFile(path, LINES, texts, None, {"line": [n for n, _ in numbered], "text": texts})
    if comp is None:
        raise InputError(f"--source {source!r}: no such dataset loader; one of: "
                         f"{', '.join(registry.names('datasets'))}, or {LINES} (one text per line)")
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


def typed_texts(texts: list[str]) -> InputFile:
    """The texts of `runner predict --text`, as an input of one column, `text`."""
    for i, t in enumerate(texts):
        if not t.strip():
            raise InputError(f"--text {t!r}: the text is empty" + (f" (--text number {i + 1})" if len(texts) > 1 else ""))
    return InputFile(Path("--text"), "text", list(texts), None, {"text": list(texts)})


def read_lines(path: Path, named: str = "INPUT ") -> list[tuple[int, str]]:
    """(line number, text) of every line that is not blank, UTF-8 (a byte-order mark ignored); any
    line ending. DataError naming the line (and its byte) whose bytes are not UTF-8; `named` starts
    the message, before the path."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"{named}{path}: cannot be read: {e.strerror or e}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        start = data.rfind(b"\n", 0, e.start) + 1
        line = data[:e.start].count(b"\n") + 1
        raise DataError(f"{named}{path}: line {line} is not valid UTF-8 text (byte {e.start - start + 1} of the "
                        "line); re-save the file as UTF-8") from None
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return [(n, line) for n, line in enumerate(lines, 1) if line.strip()]


def _read_stdin(label_names: list[str], registry, source: str | None, text_column: str,
                label_column: str) -> InputFile:
    """Standard input, read as a file of its --source (default: one text per line), through a temporary
    copy that is removed at once (a loader reads a path)."""
    data = sys.stdin.buffer.read()
    if not data.strip():
        raise DataError("INPUT - (standard input): nothing was read; pipe the texts in, one per line")
    suffix = {"csv": ".csv", "jsonl": ".jsonl", "parquet": ".parquet"}.get(source or LINES, ".txt")
    with tempfile.TemporaryDirectory(prefix="runner-stdin-") as folder:
        copy = Path(folder) / f"stdin{suffix}"
        copy.write_bytes(data)
        try:
            inp = read_input(copy, label_names, registry, source, text_column, label_column)
        except (DataError, InputError) as e:
            raise type(e)(str(e).replace(str(copy), "- (standard input)")) from None
    inp.path = Path(STDIN)
    return inp


def _checked(path: Path, source: str, rows, label_names: list[str], text_column: str,
             label_column: str) -> InputFile:
    if not isinstance(rows, list):
        raise DataError(f"INPUT {path}: the {source} loader returned {describe(rows)}, not a list of rows")
    if not rows:
        raise DataError(f"INPUT {path}: the file has no rows")
    lmap = LabelMap(list(label_names), declared=True)
    declared = frozenset(label_names)
    texts, labels, missing = [], [], []
    columns: dict[str, list[Any]] = {}
    for i, r in enumerate(rows):
        where = f"INPUT {path}: row {i + 1}"
        t = r.get("text") if isinstance(r, dict) else None
        if not isinstance(t, str) or not t.strip():
            what = "is empty" if t is None or isinstance(t, str) else f"holds {describe(t)}, not text"
            raise DataError(f"{where}: column {text_column!r} (--text-column) {what}")
        texts.append(t)
        own = r.get("columns")
        own = own if isinstance(own, dict) else {text_column: t}  # a loader that gives no cells: the text
        for name in own:
            columns.setdefault(str(name), [None] * i)
        for name, cells in columns.items():
            cells.append(own.get(name))
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
    return InputFile(path, source, texts, None if missing else np.asarray(labels, dtype=np.int64), columns)
