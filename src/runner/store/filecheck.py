"""What a file given as the store is, told from its bytes before DuckDB opens it, and whether its
folder can be written: checks that never change the file."""

from __future__ import annotations

import os
import struct
import tempfile
from pathlib import Path

from runner.errors import StoreFileError

_HEADER_SIZE = 4096  # DuckDB's main header, then two database headers, then data blocks
_DATA_START = 3 * _HEADER_SIZE


def sniff(path: Path) -> int | None:
    """Raise StoreFileError unless `path` looks like a whole DuckDB database file; return its block size
    (None when its headers do not say). Reads 12 KiB only.

    A DuckDB file has `DUCK` at offset 8, two database headers after the first 4 KiB, and data blocks
    after 12 KiB; the newer header points at the metadata and free-list blocks, which must lie inside
    the file: a store cut short by a failed copy is refused before DuckDB reads past its end.
    """
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(_DATA_START)
    except IsADirectoryError:
        raise StoreFileError(_folder_message(path)) from None
    except OSError as e:
        raise StoreFileError(
            f"{path}: cannot read the store file ({e.strerror}); check its permissions, or give --store "
            "another file. The file was not changed."
        ) from None
    if head[8:12] != b"DUCK":
        what = _what_it_is(head, size)
        raise StoreFileError(
            f"{path}: not a DuckDB database file ({what}). --store takes a runner store (the DuckDB file "
            "`runner apply` writes) or the name of a file that does not exist yet, which `runner apply` "
            "creates; give another path. The file was not changed."
        )
    if size < _DATA_START:
        raise StoreFileError(_truncated_message(path, size, f"a DuckDB file has at least {_DATA_START}"))
    block_size, last_block = _header_blocks(head)
    if block_size and last_block is not None and size < _DATA_START + (last_block + 1) * block_size:
        raise StoreFileError(_truncated_message(path, size, f"its header points at block {last_block}"))
    return block_size


def _truncated_message(path: Path, size: int, need: str) -> str:
    return (f"{path}: the store is damaged: the file is truncated ({size} bytes; {need}), as a failed copy or "
            "a full disk leaves it. Restore it from a backup, or give --store another file; runner will not "
            "read or repair it. The file was not changed.")


def _what_it_is(head: bytes, size: int) -> str:
    if size == 0:
        return "it is empty, 0 bytes"
    if head.startswith(b"SQLite format 3\x00"):
        return "it is an SQLite database"
    if head.startswith(b"PAR1"):
        return "it is a Parquet file"
    try:
        head.decode("utf-8")
        return "it is a text file"
    except UnicodeDecodeError:
        return "it does not start with DuckDB's header"


def _header_blocks(head: bytes) -> tuple[int | None, int | None]:
    """(block size, the highest block the newer database header points at), None where they make no sense.

    Each header: checksum, iteration, meta block, free list, block count, block allocation size (u64s;
    a block pointer keeps its block id in the low 56 bits). The block count is no bound on the file's
    size: DuckDB cuts free blocks off the end of the file and keeps counting them.
    """
    best = None
    for offset in (_HEADER_SIZE, 2 * _HEADER_SIZE):
        _, iteration, meta, free, _, block_size = struct.unpack_from("<QQqqQQ", head, offset)
        if 4096 <= block_size <= 1 << 30 and block_size & (block_size - 1) == 0:
            if best is None or iteration > best[0]:
                best = (iteration, block_size, meta, free)
    if best is None:
        return None, None
    pointers = [p & ((1 << 56) - 1) for p in best[2:] if p >= 0]
    return best[1], max(pointers, default=None)


def _folder_message(path: Path) -> str:
    return (f"{path}: is a folder; --store needs a file path such as {path / 'results.duckdb'}. "
            "Nothing was changed.")


def _can_write_folder(folder: Path) -> bool:
    """Whether a file can be created in `folder`, tried for real (root ignores the mode bits, but not a
    read-only mount or an immutable folder). An unnamed temporary file leaves no entry behind."""
    if not os.access(folder, os.W_OK | os.X_OK):
        return False
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def _can_write_file(path: Path) -> bool:
    """Whether `path` opens for writing; opening without truncating changes neither bytes nor mtime."""
    try:
        os.close(os.open(path, os.O_WRONLY))
        return True
    except OSError:
        return False


def check_blocks(con, path: Path, block_size: int) -> None:
    """Refuse a store whose tables use blocks past the end of the file (cut inside its data); `con` is
    a read-only connection to it. A file as long as DuckDB's block count (pragma_database_size, read
    in constant time) is whole; only a shorter one (its last blocks free, or cut) has every table's
    segments listed (pragma_storage_info, which takes a second at 60M prediction rows)."""
    size = path.stat().st_size
    rows = con.execute("SELECT total_blocks FROM pragma_database_size() WHERE database_name = current_database()"
                       ).fetchall()
    if rows and size >= _DATA_START + rows[0][0] * block_size:
        return
    top = -1
    for (table,) in con.execute("SELECT table_name FROM duckdb_tables() "
                                "WHERE database_name = current_database()").fetchall():
        quoted = '"' + table.replace('"', '""') + '"'
        used = con.execute("SELECT max(greatest(block_id, list_max(additional_block_ids))) "
                           "FROM pragma_storage_info(?)", [quoted]).fetchone()[0]
        top = max(top, -1 if used is None else used)
    if size < _DATA_START + (top + 1) * block_size:
        raise StoreFileError(_truncated_message(path, size, f"its tables use block {top}"))


# -- the folders beside a store ------------------------------------------------------------------

# beside a store: the checkpoints (runner.store.checkpoints), and the two caches (runner.store.caches)
RUNS, ADAPTED, TOKENIZED = "runs", "adapted", "tokenized"
STORE_FOLDERS = (RUNS, ADAPTED, TOKENIZED)


def holds_store(folder: Path, limit: int = 500) -> bool:
    """Whether `folder` holds a DuckDB file (DUCK at byte 8) among its first `limit` entries."""
    try:
        with os.scandir(folder) as entries:
            for n, e in enumerate(entries):
                if n >= limit:
                    return False
                try:
                    if not e.is_file(follow_symlinks=False) or e.stat().st_size < _DATA_START:
                        continue
                    with open(e.path, "rb") as f:
                        if f.read(12)[8:12] == b"DUCK":
                            return True
                except OSError:
                    continue
    except OSError:
        return False
    return False


def store_folder_of(path: Path) -> Path | None:
    """The runs/, adapted/ or tokenized/ folder of a store that `path` (absolute, resolved) is in or is,
    told by a DuckDB file beside that folder; None when there is none."""
    for folder in [path, *path.parents]:
        if folder.name in STORE_FOLDERS and holds_store(folder.parent):
            return folder
    return None
