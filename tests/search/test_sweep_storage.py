"""`[sweep] storage` (runner.search.storage): every bad value is exit 2 naming the key before the store
exists, and a journal whose last line an interrupted write cut is repaired on open, at every byte."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from sweep_helpers import cli, rows, write_spec

from runner.search.storage import repair_journal

SWEEP = 'trials = {trials}\nsampler = "random"\npruner = "none"\nstorage = "{storage}"'


def _spec(folder: Path, storage: str, trials: int = 1) -> Path:
    return write_spec(folder, size=80, epochs=1, sweep=SWEEP.format(trials=trials, storage=storage))


def _bad(tmp_path: Path, name: str) -> list[tuple[str, str, list[str]]]:
    d = tmp_path / name
    d.mkdir()
    (d / "a_folder").mkdir()
    (d / "notes.log").write_text("my notes\nmore\n")
    (d / "middle.log").write_text('{"op_code":0,"worker_id":"w","study_name":"s","directions":[1]}\nnot json\n'
                                  '{"op_code":0}\n')
    ro = d / "ro"
    ro.mkdir()
    import duckdb

    duckdb.connect(str(d / "store.duckdb")).close()
    return [
        ("nope://host/db", "nope", ["sweep.storage", "nope"]),
        ("postgresql+psycopg2://runner@127.0.0.1:9/optuna", "no driver", ["sweep.storage", "not installed",
                                                                          "runner[postgres]"]),
        ("sqlite://", "memory", ["sweep.storage", "in-memory"]),
        (f"sqlite:///{d}/a_folder", "sqlite folder", ["sweep.storage", "is a folder"]),
        (f"sqlite:///{d}/notes.log", "sqlite not sqlite", ["sweep.storage", "not an SQLite database"]),
        (f"sqlite:///{d}/missing/x.db", "sqlite no folder", ["sweep.storage", "writable folder"]),
        ("a_folder", "journal folder", ["sweep.storage", "is a folder"]),
        ("notes.log", "journal of notes", ["sweep.storage", "not an Optuna journal"]),
        ("middle.log", "journal damaged inside", ["sweep.storage", "line 2"]),
        ("store.duckdb", "a DuckDB file", ["sweep.storage", "DuckDB"]),
        ("/proc/version", "read-only file", ["sweep.storage"]),
    ]


@pytest.mark.parametrize("i", range(11))
def test_a_bad_storage_is_exit_2_naming_the_key_before_the_store_exists(tmp_path, i):
    storage, what, words = _bad(tmp_path, "case")[i]
    spec = _spec(tmp_path / "case", storage)
    store = tmp_path / "case" / "results.duckdb"
    before = sorted(p.name for p in (tmp_path / "case").rglob("*"))
    code, out, err = cli("apply", spec, "--store", store)
    assert code == 2, f"{what}: {err}{out}"
    assert all(w in err for w in words), f"{what}: {err}"
    assert "Traceback" not in err and "internal error" not in err
    assert not store.exists() and sorted(p.name for p in (tmp_path / "case").rglob("*")) == before, what


def test_an_unreachable_server_is_exit_2_naming_it(tmp_path):
    pytest.importorskip("psycopg")
    spec = _spec(tmp_path, "postgresql://runner@127.0.0.1:9/optuna")
    code, _, err = cli("validate", spec, "--store", tmp_path / "results.duckdb")
    assert code == 2 and "sweep.storage" in err and "127.0.0.1:9" in err and "cannot be reached" in err, err


@pytest.fixture(scope="module")
def journal(tmp_path_factory):
    """A finished one-trial sweep whose journal is a file beside the spec."""
    folder = tmp_path_factory.mktemp("journal")
    spec = _spec(folder, "journal.log")
    code, _, err = cli("apply", spec, "--store", folder / "results.duckdb")
    assert code == 0, err
    return folder, spec, (folder / "journal.log").read_bytes()


def _records(path: Path) -> list[dict]:
    from optuna.storages.journal import JournalFileBackend

    return list(JournalFileBackend(str(path)).read_logs(0))


def test_a_journal_cut_at_any_byte_of_its_last_line_opens_at_its_last_whole_record(journal, tmp_path):
    folder, _, data = journal
    whole = _records(folder / "journal.log")
    start = data.rstrip(b"\n").rfind(b"\n") + 1  # the last line's first byte
    assert len(data) - start > 20
    for cut in range(start, len(data)):
        d = tmp_path / str(cut)
        d.mkdir()
        path = d / "journal.log"
        path.write_bytes(data[:cut])
        note = repair_journal(path)
        repaired = path.read_bytes()
        assert repaired.endswith(b"\n") and _records(path) in (whole, whole[:-1]), cut
        aside = list(d.glob("journal.log.partial-*"))
        if cut == start:
            assert note is None and not aside  # the cut fell on a line break: nothing to do
        elif cut == len(data) - 1:
            assert repaired == data and "line break" in note and not aside  # only the "\n" was lost
        else:
            assert repaired == data[:start] and len(aside) == 1 and aside[0].read_bytes() == data[start:cut], cut
            assert str(aside[0]) in note
        shutil.rmtree(d)


def test_a_sweep_whose_journal_was_cut_resumes_and_says_so(journal, tmp_path):
    folder, spec, data = journal
    work = tmp_path / "w"
    shutil.copytree(folder, work)
    start = data.rstrip(b"\n").rfind(b"\n") + 1
    with open(work / "journal.log", "r+b") as f:  # as a full disk leaves it
        f.truncate(start + (len(data) - start) // 2)
    code, out, err = cli("apply", _spec(work, "journal.log", trials=2), "--store", work / "results.duckdb")
    assert code == 0, err
    assert "moved it to" in err and list(work.glob("journal.log.partial-*")), err
    # the cut record was trial 0's end: Optuna sees it running with its worker gone, and retries it
    statuses = [r[0] for r in rows(work / "results.duckdb", "SELECT status FROM trials ORDER BY number")]
    assert statuses.count("finished") == 2, statuses
    again = subprocess.run(["tail", "-c", "1", str(work / "journal.log")], capture_output=True)
    assert again.stdout == b"\n" and os.path.getsize(work / "journal.log") > start


def test_a_bad_range_is_one_problem_with_no_empty_space_after_it(tmp_path):
    """The range is the problem; the space is not also "empty" because the bad entry was set aside."""
    spec = write_spec(tmp_path, space='"train.learning_rate" = { low = 1e-2, high = 1e-3 }')
    code, _, err = cli("validate", spec, "--store", tmp_path / "results.duckdb", "--no-check-models")
    assert code == 2 and "1 problem" in err and "must be below high" in err and "at least 1 item" not in err, err
