"""Store opening is safe, shown on real files and real processes:

- every DuckDB instance runner starts is locked down from its first statement: no extension
  auto-install or auto-load, no file but the store's own, configuration locked; an SQLite file given as
  the store reaches nothing (no download, nothing created in $HOME);
- a file that is not a whole runner store (another format, another program's database, truncated,
  from a newer runner, a folder, `:memory:`) is refused by every command with exit 2, its bytes and
  mtime unchanged;
- read commands never change a store: a current one is attached READ_ONLY, an older one is read
  through a migrated copy in memory, and the next `runner apply` upgrades it in place;
- a disk that fills mid-apply (RLIMIT_FSIZE, or a full tmpfs) ends in exit 1 with the cause and what to
  do, leaves the process's DuckDB instance usable, and the re-run resumes to an uninterrupted run's rows;
- `runner sql` stops a runaway query by time or memory, and a table shows the first rows only.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import pytest
from store_kinds import make_old_store, make_read_only, make_store, undo_read_only

from runner.errors import StoreError, StoreFileError
from runner.store import Store, instances
from runner.store.migrations import MIGRATIONS

REPO = Path(__file__).resolve().parents[2]

BAD_KINDS = ["sqlite", "text", "zero-bytes", "garbage", "truncated", "truncated-12k", "foreign", "newer-schema",
             "directory"]
READ_COMMANDS = {
    "sql": ["sql", "SELECT count(*) FROM runs"],
    "runs": ["runs"],
    "compare": ["compare"],
    "plot": ["plot"],
}


def state(path: Path):
    """What must not change: the bytes and mtime of the store (None when absent), and its side files."""
    side = sorted(p.name for p in path.parent.glob(path.name + ".*"))
    if path.is_file():
        return path.read_bytes(), path.stat().st_mtime_ns, side
    return None, None, side


def cli(*args, env=None, cwd=None, preexec_fn=None, timeout=300) -> subprocess.CompletedProcess:
    """The real CLI in a process of its own."""
    return subprocess.run([sys.executable, "-m", "runner.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd, preexec_fn=preexec_fn, timeout=timeout)


# ---------------------------------------------------------------------------- locked-down instances


def test_every_connection_is_locked_down(tmp_path):
    store = Store(tmp_path / "results.duckdb").open()
    (tmp_path / "other.csv").write_text("a\n1\n")
    for write in (False, True):
        with store.connect(write=write) as con:
            settings = con.execute(
                "SELECT current_setting('enable_external_access'), current_setting('autoinstall_known_extensions'), "
                "current_setting('autoload_known_extensions'), current_setting('lock_configuration')").fetchone()
            assert settings == (False, False, False, True)
            for sql in ("SET enable_external_access = true", "SET autoload_known_extensions = true",
                        "SET allowed_paths = ['/']"):
                with pytest.raises(duckdb.Error, match="locked"):
                    con.execute(sql)
            for sql in (f"ATTACH '{tmp_path / 'other.duckdb'}' AS other",
                        f"SELECT * FROM read_csv('{tmp_path / 'other.csv'}')",
                        f"COPY (SELECT 1) TO '{tmp_path / 'out.csv'}'"):
                with pytest.raises(duckdb.PermissionException):
                    con.execute(sql)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.csv", "results.duckdb"]


def test_one_cached_instance_per_store_path(tmp_path):
    """The speed trick survives the allow-list: operations on a store ATTACH to a kept instance."""
    a, b = tmp_path / "a.duckdb", tmp_path / "b.duckdb"
    store = Store(a).open()
    instance = instances._shared_instance(a)
    for _ in range(3):
        store.query("SELECT count(*) FROM runs")
    assert instances._shared_instance(a) is instance
    assert instances._shared_instance(b) is not instance
    for i in range(2 * instances._MAX_INSTANCES):  # a test session's hundreds of stores stay bounded
        instances._shared_instance(tmp_path / f"{i}.duckdb")
    assert len(instances._instances) <= instances._MAX_INSTANCES


def test_sqlite_file_as_store_reaches_nothing(tmp_path):
    import sqlite3

    home = tmp_path / "home"
    home.mkdir()
    path = tmp_path / "results.sqlite"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE runs (x)")
    con.commit()
    con.close()
    before = state(path)
    (tmp_path / "spec.toml").write_text(SPEC)
    env = dict(os.environ, HOME=str(home))
    for args in (["sql", "SELECT 1"], ["runs"], ["apply", tmp_path / "spec.toml"]):
        result = cli(*args, "--store", path, env=env, cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert "not a DuckDB database file" in result.stderr and "SQLite" in result.stderr
        assert str(path) in result.stderr and "Traceback" not in result.stderr
    assert list(home.rglob("*")) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "results.sqlite", "spec.toml"]
    assert state(path) == before


# ---------------------------------------------------------------------------- files that are not stores


@pytest.mark.parametrize("command", list(READ_COMMANDS))
@pytest.mark.parametrize("kind", BAD_KINDS)
def test_read_commands_refuse_what_is_not_a_store(kind, command, tmp_path, run_cli):
    path = tmp_path / "results.duckdb"
    make_store(path, kind)
    before = state(path)
    files_before = set(tmp_path.rglob("*"))
    code, out, err = run_cli(*READ_COMMANDS[command], "--store", path)
    assert code == 2, (out, err)
    assert err.startswith("error: ") and str(path) in err and "Traceback" not in out + err
    assert state(path) == before
    assert set(tmp_path.rglob("*")) == files_before


@pytest.mark.parametrize("cut", ["half", "12KiB", "one-byte-short", "inside-the-headers"])
def test_truncated_store_is_refused_before_duckdb_reads_it(cut, tmp_path):
    whole = tmp_path / "whole.duckdb"
    store = Store(whole).open()
    for i in range(3):  # several blocks, as a few epochs make them
        with store.transaction() as con:
            con.execute(f"INSERT INTO examples SELECT 'd{i}', 'train', range, md5(range::varchar), 0 "
                        "FROM range(100000)")
    data = whole.read_bytes()
    path = tmp_path / "results.duckdb"
    keep = {"half": len(data) // 2, "12KiB": 12 * 1024, "one-byte-short": len(data) - 1, "inside-the-headers": 5000}
    path.write_bytes(data[:keep[cut]])
    before = state(path)
    for open_ in (lambda s: s.open(), lambda s: s.open_read(), lambda s: s.pending_migrations()):
        with pytest.raises(StoreFileError, match="truncated"):
            open_(Store(path))
    assert state(path) == before


def test_memory_and_url_stores_are_refused(tmp_path, run_cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in (":memory:", ":memory:x", "md:results", "s3://bucket/results.duckdb"):
        for args in (["sql", "SELECT 1"], ["runs"]):
            code, out, err = run_cli(*args, "--store", name)
            assert code == 2 and "Traceback" not in err, (name, err)
            assert (name in err) if name.startswith(":memory:") else ("local file" in err), (name, err)
        with pytest.raises(StoreFileError):
            Store(name).open()
    assert list(tmp_path.iterdir()) == []


def test_store_from_a_newer_runner_is_exit_2_for_every_command(tmp_path, run_cli):
    path = tmp_path / "results.duckdb"
    make_store(path, "newer-schema")
    before = state(path)
    for args in (["sql", "SELECT 1"], ["runs"], ["sql", "DELETE FROM runs", "--allow-write"]):
        code, out, err = run_cli(*args, "--store", path)
        assert code == 2 and "newer runner" in err, err
    with pytest.raises(StoreError, match="newer runner"):  # a StoreFileError is a StoreError too
        Store(path).open()
    assert state(path) == before


# ---------------------------------------------------------------------------- reads never write


def test_read_commands_leave_an_old_store_alone_and_apply_upgrades_it(tmp_path, run_cli):
    path = tmp_path / "results.duckdb"
    make_old_store(path)
    before = state(path)
    code, out, err = run_cli("sql", "SELECT run_id, status, label_names FROM runs", "--store", path,
                             "--format", "json")
    assert code == 0, err
    assert '"old-run"' in out
    assert "older runner" in err and "runner apply" in err and "upgrades it in place" in err
    code, out, err = run_cli("runs", "--store", path)
    assert code == 0 and "old-run" in out and "older runner" in err, err
    for command in ("compare", "plot"):  # they compute what the store lacks in memory
        code, out, err = run_cli(command, "--store", path)
        assert code == 0 and "older runner" in err, err
    assert state(path) == before

    Store(path).open()  # what `runner apply` does first
    con = duckdb.connect(str(path), read_only=True)
    assert [r[0] for r in con.execute("SELECT name FROM _migrations").fetchall()] == [m.__name__ for m in MIGRATIONS]
    assert con.execute("SELECT run_id FROM runs").fetchall() == [("old-run",)]
    con.close()


def test_a_write_through_open_read_of_a_current_store_is_refused(tmp_path):
    """A read command that tried to write (a bug) fails, an internal error, and the file is unchanged."""
    path = tmp_path / "results.duckdb"
    Store(path).open()
    before = state(path)
    store = Store(path).open_read()
    with pytest.raises(RuntimeError, match="opened for reading"):
        with store.transaction() as con:
            con.execute("INSERT INTO runs (run_id, name, spec, spec_hash, dataset_id, status, started_at) "
                        "VALUES ('new', 'n', '{}', 'h', 'd', 'finished', now()::TIMESTAMP)")
    assert store.query("SELECT count(*) FROM runs")[1][0][0] == 0
    assert state(path) == before
    assert Store(path).open().transaction  # the same file opened to write takes writes again


def test_writes_through_open_read_of_an_old_store_stay_in_memory(tmp_path):
    """The migrations of an older store read with open_read go to its copy in memory, never to the file."""
    path = tmp_path / "results.duckdb"
    make_old_store(path)
    before = state(path)
    store = Store(path).open_read()
    assert store.notice and "older runner" in store.notice
    assert store.pending_migrations() == []  # the copy is current
    with store.transaction() as con:
        con.execute("INSERT INTO runs (run_id, name, spec, spec_hash, dataset_id, status, started_at) "
                    "VALUES ('new', 'n', '{}', 'h', 'd', 'finished', now()::TIMESTAMP)")
    assert sorted(r[0] for r in store.query("SELECT run_id FROM runs")[1]) == ["new", "old-run"]
    assert state(path) == before
    assert Store(path).pending_migrations() == [m.__name__ for m in MIGRATIONS[1:]]


def test_reads_of_a_current_store_write_nothing(tmp_path, run_cli):
    path = tmp_path / "results.duckdb"
    store = Store(path).open()
    with store.transaction() as con:
        con.execute("INSERT INTO examples SELECT 'd', 'train', range, 'text ' || range, range % 4 FROM range(5000)")
    time.sleep(0.01)  # a write now would show in the mtime
    before = state(path)
    for args in (["sql", "SELECT count(*) AS n FROM examples"], ["runs"], ["sql", "DESCRIBE examples"]):
        code, out, err = run_cli(*args, "--store", path)
        assert code == 0, err
    assert Store(path).open_read().pending_migrations() == []
    assert state(path) == before


def test_reads_of_a_store_a_crashed_writer_left_with_a_wal_write_nothing(tmp_path, run_cli):
    path = tmp_path / "results.duckdb"
    Store(path).open()
    crash = textwrap.dedent(f"""
        import os, duckdb
        con = duckdb.connect({str(path)!r})
        con.execute("SET checkpoint_threshold = '1GB'")
        con.execute("INSERT INTO examples VALUES ('d', 'train', 0, 'kept in the WAL only', 1)")
        os._exit(0)  # no checkpoint, no close
    """)
    subprocess.run([sys.executable, "-c", crash], check=True)
    assert Path(str(path) + ".wal").is_file()
    before = state(path)
    wal_before = Path(str(path) + ".wal").read_bytes()
    code, out, err = run_cli("sql", "SELECT text FROM examples", "--store", path, "--format", "csv")
    assert code == 0 and "kept in the WAL only" in out, err
    assert state(path) == before and Path(str(path) + ".wal").read_bytes() == wal_before


def test_a_store_in_a_read_only_folder_reads_but_is_not_written(tmp_path, run_cli, read_only):
    folder = tmp_path / "locked"
    folder.mkdir()
    path = folder / "results.duckdb"
    Store(path).open()
    read_only(folder)
    before = state(path)
    code, out, err = run_cli("runs", "--store", path)
    assert code == 0, err
    with pytest.raises(StoreFileError, match="not writable"):
        Store(path).check_writable()
    with pytest.raises(StoreFileError, match="not writable"):
        Store(folder / "new.duckdb").open()
    assert state(path) == before


@pytest.fixture
def read_only():
    """`read_only(folder)`: no new file can be created in it, even by root; undone after the test."""
    yield make_read_only
    undo_read_only()


# ---------------------------------------------------------------------------- runner sql limits


@pytest.fixture
def filled(tmp_path):
    path = tmp_path / "results.duckdb"
    store = Store(path).open()
    with store.transaction() as con:
        con.execute("INSERT INTO examples SELECT 'd', 'train', range, 'text ' || range, range % 4 FROM range(2500)")
    return path


def test_sql_timeout_stops_a_runaway_query(filled, run_cli):
    before = state(filled)
    t0 = time.monotonic()
    code, out, err = run_cli("sql", "SELECT sum(range) FROM range(100000000000000)", "--store", filled,
                             "--timeout", "1")
    assert time.monotonic() - t0 < 10
    assert code == 2 and "--timeout 1 s" in err and "nothing was written" in err and "Traceback" not in err
    assert state(filled) == before


def test_sql_memory_limit_stops_a_runaway_cross_join(filled, run_cli):
    before = state(filled)
    t0 = time.monotonic()
    code, out, err = run_cli("sql", "SELECT count(*) FROM range(10000000000) a, range(10000000000) b",
                             "--store", filled, "--memory-limit", "256MB", "--timeout", "20")
    assert time.monotonic() - t0 < 25
    assert code == 2 and ("--memory-limit 256MB" in err or "--timeout" in err), err
    code, out, err = run_cli("sql", "SELECT a.idx, b.idx FROM examples a, examples b ORDER BY a.text DESC, b.text",
                             "--store", filled, "--memory-limit", "32MB")
    assert code == 2 and "--memory-limit 32MB" in err and "Traceback" not in err, err
    assert state(filled) == before


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf"])
def test_sql_rejects_a_timeout_that_is_no_limit(filled, run_cli, value):
    code, out, err = run_cli("sql", "SELECT 1", "--store", filled, "--timeout", value)
    assert code == 2 and "--timeout" in err, err


@pytest.mark.parametrize("value,ok", [("2GB", True), ("512MiB", True), ("10%", True), ("lots", False),
                                      ("0GB", False), ("150%", False)])
def test_sql_memory_limit_values(filled, run_cli, value, ok):
    code, out, err = run_cli("sql", "SELECT 1 AS one", "--store", filled, "--memory-limit", value)
    assert (code == 0) if ok else (code == 2 and "--memory-limit" in err), err


def test_sql_table_shows_the_first_rows_and_csv_streams_all(filled, run_cli):
    code, out, err = run_cli("sql", "SELECT idx FROM examples ORDER BY idx", "--store", filled)
    assert code == 0 and "showing the first 1000 rows" in err
    assert "999" in out.split() and "1000" not in out.split()
    code, out, err = run_cli("sql", "SELECT idx FROM examples ORDER BY idx", "--store", filled, "--format", "csv")
    assert code == 0 and out.splitlines()[0] == "idx" and len(out.splitlines()) == 2501
    code, out, err = run_cli("sql", "SELECT idx FROM examples WHERE idx < 0", "--store", filled, "--format", "json")
    assert code == 0 and out.strip() == "[]"


# ---------------------------------------------------------------------------- full disk


DISK_SCRIPT = """
import os, resource, sys
from runner.errors import StoreError
from runner.store import Store

store = Store(sys.argv[1]).open()
limit_soft = sys.argv[2] == "rlimit"
_, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
if limit_soft:
    resource.setrlimit(resource.RLIMIT_FSIZE, (os.path.getsize(sys.argv[1]) + 100_000, hard))

def write():
    with store.transaction() as con:
        con.execute("INSERT INTO examples SELECT 'd', 'train', range, md5(range::varchar), 0 FROM range(200000)")

try:
    write()
    print("no error")
except StoreError as e:
    print("error:", e)
print("rows after the failure:", store.query("SELECT count(*) FROM examples")[1][0][0])
if limit_soft:  # the same process, the same cached DuckDB instance, once there is room again
    resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
    write()
    print("rows after the retry:", store.query("SELECT count(*) FROM examples")[1][0][0])
"""


def test_file_size_limit_mid_write_is_a_clear_store_error_and_does_not_poison_the_process(tmp_path):
    script = tmp_path / "disk.py"
    script.write_text(DISK_SCRIPT)
    result = subprocess.run([sys.executable, str(script), str(tmp_path / "results.duckdb"), "rlimit"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("error: disk full (or file size limit reached) while writing"), result.stdout
    assert "nothing was committed" in lines[0] and "re-run `runner apply` to resume" in lines[0]
    assert "file handle conflict" not in result.stdout
    assert lines[1:] == ["rows after the failure: 0", "rows after the retry: 200000"]


def test_no_space_left_on_a_full_filesystem(tmp_path):
    """ENOSPC for real: the store on a 1 MiB tmpfs, mounted in a private mount namespace."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare to mount a small filesystem")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    script = tmp_path / "disk.py"
    script.write_text(DISK_SCRIPT)
    inner = (f"mount -t tmpfs -o size=1m tmpfs {mnt} && "
             f"{sys.executable} {script} {mnt / 'results.duckdb'} enospc")
    result = subprocess.run(["unshare", "--mount", "sh", "-c", inner], capture_output=True, text=True, timeout=120)
    if "mount:" in result.stderr or "unshare:" in result.stderr:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("error: disk full (or file size limit reached) while writing"), result.stdout
    assert lines[1] == "rows after the failure: 0"


SPEC = """
name = "disk"
seed = 21

[data]
source = "synthetic"
valid = 0.2
test = 0.2
max_length = 40

[data.options]
size = 300

[train]
epochs = 3
batch_size = 16
learning_rate = 2e-3
lr_scheduler = "constant"

[train.trainer_args]
full_determinism = true  # so the resumed run can be compared with an uninterrupted one

[swa]
k = 2

[[members]]
name = "a"
backbone = "scratch"
options = { hidden_size = 16, layers = 1, heads = 2, vocab_size = 300 }
"""


def rows(path: Path) -> dict:
    """Every stored row that training writes, keyed so that a duplicate would show."""
    store = Store(path)
    metrics = store.query("SELECT member, checkpoint, split, name, value FROM metrics")[1]
    preds = store.query("SELECT member, checkpoint, split, idx, pred, probs FROM predictions")[1]
    assert len(set((m, c, s, n) for m, c, s, n, _ in metrics)) == len(metrics)
    assert len(set((m, c, s, i) for m, c, s, i, _, _ in preds)) == len(preds)
    return {
        "metrics": {(m, c, s, n): round(v, 4) for m, c, s, n, v in metrics},
        "preds": {(m, c, s, i): p for m, c, s, i, p, _ in preds},
        "members": sorted(store.query("SELECT member, status FROM members")[1]),
        "runs": [r[0] for r in store.query("SELECT status FROM runs")[1]],
    }


def test_disk_full_mid_apply_then_resume(tmp_path):
    ref_dir, dir_ = tmp_path / "reference", tmp_path / "limited"
    for d in (ref_dir, dir_):
        d.mkdir()
        (d / "spec.toml").write_text(SPEC)
    ref = cli("apply", ref_dir / "spec.toml", "--store", ref_dir / "results.duckdb", cwd=ref_dir)
    assert ref.returncode == 0, ref.stderr

    # Room for the new store and for the model's checkpoint files (< 100 KB), not for every epoch.
    new_store = tmp_path / "probe.duckdb"
    Store(new_store).open()
    limit = new_store.stat().st_size + 300_000

    def small_disk():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    store = dir_ / "results.duckdb"
    failed = cli("apply", dir_ / "spec.toml", "--store", store, cwd=dir_, preexec_fn=small_disk)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "error: disk full (or file size limit reached) while writing" in failed.stderr, failed.stderr
    assert "nothing was committed" in failed.stderr and "re-run `runner apply` to resume" in failed.stderr
    assert "Traceback" not in failed.stderr and "file handle conflict" not in failed.stderr
    assert store.is_file() and rows(store)["runs"] == ["running"]

    resumed = cli("apply", dir_ / "spec.toml", "--store", store, cwd=dir_)
    assert resumed.returncode == 0, resumed.stderr
    assert rows(store) == rows(ref_dir / "results.duckdb")
