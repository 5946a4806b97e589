"""A sweep's Optuna storage: `[sweep] storage` checked in the dry run, and a journal repaired on open.

`[sweep] storage` is a journal file path (relative to the spec) or a database URL; unset, a journal
under `runs/_sweeps/<sweep_id>/` beside the store. `storage_problems` checks it with the rest of the
spec, before the store exists (exit 2, key `sweep.storage`): a URL's scheme is one SQLAlchemy knows,
its driver is installed (`postgresql://` needs psycopg: the `postgres` extra), its server answers (an
SQLite file: its folder can be written, and it is an SQLite file); a journal path is not a folder,
its folder can be written, and every complete line of an existing journal is an Optuna record.

`repair_journal` runs where a sweep opens its journal, under Optuna's own lock: a last line cut by an
interrupted write (a full disk, a kill) is moved aside to `<journal>.partial-<time>` and the file ends
at the last whole record, so the study opens and the sweep resumes; a last record that lacks only its
line break gets it back. `storage_for` opens the storage.
"""

from __future__ import annotations

import json
import os
import socket
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from runner.errors import StoreError
from runner.store.checkpoints import runs_root
from runner.store.filecheck import _can_write_folder

if TYPE_CHECKING:
    from runner.search.plan import SweepPlan

SWEEPS_FOLDER = "_sweeps"
KEY = "sweep.storage"
CONNECT_SECONDS = 5
EXTRAS = {"postgresql": "runner[postgres] (psycopg)"}


def sweep_folder(store_path: Path, sweep_id: str) -> Path:
    return runs_root(store_path) / SWEEPS_FOLDER / sweep_id


def journal_path(given: str, spec_path: Path) -> Path:
    path = Path(given).expanduser()
    return path if path.is_absolute() else Path(spec_path).parent / path


def storage_for(sp: SweepPlan, store_path: Path, say: Callable[[str], None] | None = None):
    """(Optuna's storage, where it is): a journal file (default beside the store, repaired on open), or an
    RDB URL with heartbeats. A server that stopped answering since the dry run is StoreError (exit 1)."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    given = sp.sweep.storage
    if given and "://" in given:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # heartbeats are marked experimental
                return optuna.storages.RDBStorage(
                    given, heartbeat_interval=30, grace_period=120,
                    heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3)), given
        except Exception as e:  # SQLAlchemy's OperationalError and kin: the server, not the spec
            raise StoreError(f"[sweep] storage {_hide_password(given)}: {_first_line(e)}; check the database "
                             "server, then re-run `runner apply` to resume the sweep") from None
    path = journal_path(given, sp.base.spec_path) if given else sweep_folder(store_path, sp.sweep_id) / "journal.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    note = repair_journal(path)
    if note and say is not None:
        say(note)
    return JournalStorage(JournalFileBackend(str(path))), str(path)


# -- the journal ---------------------------------------------------------------------------------------


def repair_journal(path: Path) -> str | None:
    """Make `path` end at a whole record (module docstring); what was done, or None when nothing was."""
    if not path.is_file() or path.stat().st_size == 0:
        return None
    from optuna.storages.journal import JournalFileSymlinkLock

    lock = JournalFileSymlinkLock(str(path))  # the lock Optuna takes to append
    lock.acquire()
    try:
        with open(path, "rb+") as f:
            size = f.seek(0, os.SEEK_END)
            tail_start = max(0, size - (1 << 20))
            f.seek(tail_start)
            tail = f.read()
            if tail.endswith(b"\n"):
                return None
            cut = tail.rfind(b"\n")
            if cut < 0 and tail_start > 0:  # a last line over 1 MiB: read it whole
                f.seek(0)
                tail, tail_start = f.read(), 0
                cut = tail.rfind(b"\n")
            partial = tail[cut + 1:]
            if not _looks_cut(partial):  # not a journal runner or Optuna wrote: left for the dry run to name
                return None
            if _is_record(partial):
                f.write(b"\n")
                f.flush()
                os.fsync(f.fileno())
                return f"sweep journal {path}: its last record had no line break (an interrupted write); added it"
            aside = path.with_name(f"{path.name}.partial-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
            aside.write_bytes(partial)
            f.truncate(tail_start + cut + 1)
            f.flush()
            os.fsync(f.fileno())
    finally:
        lock.release()
    return (f"sweep journal {path}: its last line was cut by an interrupted write ({len(partial)} bytes); moved it to "
            f"{aside} and resumed from the last whole record")


def _is_record(line: bytes) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


RECORD_START = b'{"op_code":'  # how Optuna writes every record (json.dumps, compact separators)


def _looks_cut(piece: bytes) -> bool:
    """Whether a last line without its line break can be the start of an Optuna record."""
    n = min(len(piece), len(RECORD_START))
    return piece[:n] == RECORD_START[:n]


def journal_problem(path: Path) -> str | None:
    """Why an existing file cannot be the journal (a whole line that is no Optuna record, another kind of
    file), or None; a cut last line is not a problem (the open repairs it)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        return f"{path}: cannot be read ({e.strerror})"
    what = ("an SQLite database" if data.startswith(b"SQLite format 3") else "a DuckDB file"
            if data[8:12] == b"DUCK" else None)
    lines = data.split(b"\n")
    if what is None:
        bad = next((n for n, line in enumerate(lines[:-1], 1) if not _is_record(line)), None)
        if bad is not None:
            what = f"line {bad} is not an Optuna journal record"
        elif lines[-1] and not _looks_cut(lines[-1]):
            what = f"line {len(lines)} is not an Optuna journal record"
    if what is None:
        return None
    return f"{path} is not an Optuna journal ({what}); give a new file name, or the journal of this sweep"


# -- the dry run ---------------------------------------------------------------------------------------


def storage_problems(storage: str | None, spec_path: Path) -> list[tuple[str, str]]:
    """The problems of `[sweep] storage` (module docstring), each (key, message); none when it is unset."""
    if storage is None:
        return []
    why = _url_problem(storage) if "://" in storage else _path_problem(journal_path(storage, spec_path))
    return [(KEY, why)] if why else []


def _path_problem(path: Path) -> str | None:
    try:
        if path.is_dir():
            return f"{path} is a folder; give a journal file path such as {path / 'journal.log'}"
        if path.exists():
            if not path.is_file():
                return f"{path} is not a regular file; give a journal file path"
            if not os.access(path, os.W_OK) or not path.stat().st_mode & 0o222:
                return f"{path} is read-only; Optuna appends to its journal"
            return journal_problem(path)
    except OSError as e:
        return f"{str(path)[:200]}: not a usable path ({e.strerror})"
    existing = path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not _can_write_folder(existing):
        return f"{path}: cannot be created ({existing} is not a writable folder)"
    return None


def _url_problem(url: str) -> str | None:
    from sqlalchemy.engine.url import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    shown = _hide_password(url)
    try:
        parsed = make_url(url)
        dialect = parsed.get_dialect()
    except (ArgumentError, NoSuchModuleError, ValueError) as e:
        scheme = url.split("://", 1)[0]
        return (f"{shown}: the scheme {scheme!r} is not a database SQLAlchemy knows ({_first_line(e)}); give a "
                "journal file path, or a URL such as postgresql://user@host/db or sqlite:///sweeps.db")
    try:
        dialect.import_dbapi()
    except ImportError as e:
        extra = EXTRAS.get(parsed.get_backend_name())
        how = f"install the extra {extra}" if extra else f"install the driver ({e.name or _first_line(e)})"
        return f"{shown}: the {parsed.get_backend_name()} driver {dialect.driver!r} is not installed; {how}"
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_problem(parsed.database, shown)
    return _server_problem(parsed, url, shown)


def _sqlite_problem(database: str | None, shown: str) -> str | None:
    if not database or database == ":memory:":
        return f"{shown}: an in-memory SQLite database keeps nothing for the next run; give a file"
    path = Path(database).expanduser()
    if path.is_dir():
        return f"{shown}: {path} is a folder; give an SQLite file such as {path / 'sweeps.db'}"
    if path.exists():
        try:
            with open(path, "rb") as f:
                head = f.read(16)
        except OSError as e:
            return f"{shown}: {path} cannot be read ({e.strerror})"
        if head and head != b"SQLite format 3\x00":
            return f"{shown}: {path} is not an SQLite database; give a new file name"
        if not os.access(path, os.W_OK):
            return f"{shown}: {path} is read-only"
    folder = path.absolute().parent
    if not folder.is_dir() or not _can_write_folder(folder):
        return f"{shown}: {folder} is not a writable folder (SQLite writes its journal beside the database)"
    return None


def _server_problem(parsed, url: str, shown: str) -> str | None:
    """A socket to the server's port, then a real connection (with a timeout): the spec's fault if either
    fails now, before anything is written."""
    host = parsed.host or "localhost"
    port = parsed.port or {"postgresql": 5432, "mysql": 3306, "mariadb": 3306, "mssql": 1433,
                           "oracle": 1521}.get(parsed.get_backend_name())
    if port is not None and not (host.startswith("/") or parsed.query.get("host")):
        try:
            socket.create_connection((host, port), timeout=CONNECT_SECONDS).close()
        except OSError as e:
            return f"{shown}: the database server {host}:{port} cannot be reached ({e.strerror or e})"
    from sqlalchemy import create_engine, text

    args = {"connect_timeout": CONNECT_SECONDS} if parsed.get_backend_name() in ("postgresql", "mysql",
                                                                                  "mariadb") else {}
    try:
        engine = create_engine(url, connect_args=args)
        try:
            with engine.connect() as con:
                con.execute(text("SELECT 1"))
        finally:
            engine.dispose()
    except Exception as e:  # the driver's own errors: authentication, a database that does not exist
        return f"{shown}: cannot connect ({_first_line(e)})"
    return None


def _hide_password(url: str) -> str:
    try:
        from sqlalchemy.engine.url import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy can parse: shown as written, it holds no parsed password
        return url


def _first_line(e: BaseException) -> str:
    text_ = str(e).strip()
    return (text_.splitlines() or [type(e).__name__])[0][:300]
