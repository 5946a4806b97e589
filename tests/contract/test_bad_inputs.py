"""The bad-input corpus: every folder of tests/bad_inputs/ is a mistake a user could really make.

Each case folder holds the inputs (`spec.toml`, data files, a `plugins/` folder...) and `expect.toml`:

    description = "what the user did"
    exit_code = 2                      # 2 bad input, 1 store fault
    message = ["spec.toml", "train.epochs"]   # substrings the error must contain (file and field)
    command = ["apply", "{spec}", "--store", "{store}"]   # the default; {case} is the case folder
    store = "empty"                    # the store before the command (default "empty", see below)
    store_path = "results.duckdb"      # relative to the case folder (the default)
    known_bug = "why"                  # optional: runner does not yet fail cleanly here (strict xfail)

Stores are made at test time (no .duckdb file is committed): "none" (no file), "empty" (a store
opened by this runner), "garbage" (8 KiB of bytes that are not DuckDB), "text" (a small CSV saved
under the store's name), "zero-bytes" (an empty file), "newer-schema" (a store with a migration this runner does not know),
"foreign" (a DuckDB database of another program), "directory" (an empty folder), "sqlite" (an SQLite
database), "truncated" / "truncated-12k" (a store with rows, cut to half its size / to 12 KiB),
"old-schema" (a store of the first schema, with a run, as an older runner left it), "read-only-folder"
/ "read-only-folder-empty" (a store / no store yet, in a folder that cannot be written: mode 555, or
`chattr +i` when the tests run as root, who ignores modes; skipped where neither is possible).

Every case is copied to tmp_path and run through the real CLI from inside that folder. It must exit
with its code, print one paragraph naming the file and the field with no traceback, leave the store
byte-for-byte unchanged (or not create it), and train nothing.
"""

from __future__ import annotations

import shutil
import time
import tomllib
from pathlib import Path

import pytest
from store_kinds import make_store, undo_read_only  # the store kinds below, built for real
from typer.testing import CliRunner

CORPUS = Path(__file__).resolve().parents[1] / "bad_inputs"
CASES = sorted(p.name for p in CORPUS.iterdir() if (p / "expect.toml").is_file())
DEFAULT_COMMAND = ["apply", "{spec}", "--store", "{store}"]
STORE_KINDS = ("none", "empty", "garbage", "text", "zero-bytes", "newer-schema", "foreign", "directory", "sqlite",
               "truncated", "truncated-12k", "old-schema", "read-only-folder", "read-only-folder-empty")
MAX_SECONDS = 15.0  # a tiny spec that failed before training; training even one epoch takes longer


def load_expect(case: str) -> dict:
    with (CORPUS / case / "expect.toml").open("rb") as f:
        expect = tomllib.load(f)
    unknown = set(expect) - {"description", "exit_code", "message", "command", "store", "store_path", "known_bug"}
    assert not unknown, f"{case}/expect.toml: unknown keys {sorted(unknown)}"
    assert expect.get("store", "empty") in STORE_KINDS, f"{case}/expect.toml: store = {expect['store']!r}"
    assert expect["exit_code"] in (1, 2) and expect["message"], case
    return expect


@pytest.fixture(autouse=True)
def _undo_read_only():
    yield
    undo_read_only()


def snapshot(path: Path):
    """The store's bytes and mtime (or a folder's listing); None when nothing is there."""
    if path.is_dir():
        return sorted(str(p.relative_to(path)) for p in path.rglob("*"))
    if path.is_file():
        return path.read_bytes(), path.stat().st_mtime_ns
    return None


def is_one_paragraph(text: str) -> bool:
    lines = [line.rstrip() for line in text.strip().splitlines()]
    return bool(lines) and all(lines)


@pytest.fixture(scope="module")
def cli():
    """The real CLI in-process; anything but SystemExit escaping it is a bug and is re-raised."""
    from runner.cli import app
    from runner.plugins.registry import load_registry

    load_registry()  # pay for importing torch/transformers once, not in the first case's timing
    runner = CliRunner()

    def run(args: list[str]):
        result = runner.invoke(app, args, catch_exceptions=True)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result

    return run


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 30
    groups = {name.split("-")[0] for name in CASES}
    assert {"spec", "data", "plugin", "store"} <= groups


@pytest.mark.parametrize("control", ["synthetic", "csv"])
def test_the_specs_the_cases_break_are_valid(control, cli, tmp_path, monkeypatch):
    """Most cases are one of these two specs with one mistake: each must pass as it is."""
    work = tmp_path / control
    shutil.copytree(CORPUS / "_control" / control, work)
    monkeypatch.chdir(work)
    result = cli(["validate", str(work / "spec.toml")])
    assert result.exit_code == 0, result.stderr


def test_no_store_file_is_committed():
    assert not [p for p in CORPUS.rglob("*") if p.suffix in (".duckdb", ".wal")]


def _param(case: str):
    bug = load_expect(case).get("known_bug")
    return pytest.param(case, marks=pytest.mark.xfail(strict=True, reason=bug)) if bug else case


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_bad_input_fails_cleanly(case, cli, tmp_path, monkeypatch):
    expect = load_expect(case)
    work = tmp_path / case
    shutil.copytree(CORPUS / case, work, symlinks=True)  # a case may hold a link (to its own spec)
    (work / "expect.toml").unlink()
    store = work / expect.get("store_path", "results.duckdb")
    make_store(store, expect.get("store", "empty"))
    before = snapshot(store)
    files_before = {p for p in work.rglob("*")}

    monkeypatch.chdir(work)  # relative paths (a model folder, a default plugins dir) as a user would have them
    args = [a.format(spec=work / "spec.toml", store=store, case=work) for a in expect.get("command", DEFAULT_COMMAND)]
    t0 = time.monotonic()
    result = cli(args)
    elapsed = time.monotonic() - t0
    err = result.stderr

    context = f"\n--- {case}: {expect['description']}\n$ runner {' '.join(args)}\nstdout:\n{result.stdout}\nstderr:\n{err}"
    assert result.exit_code == expect["exit_code"], context
    assert "Traceback" not in err + result.stdout, context
    assert err.lstrip().startswith("error: "), context
    assert is_one_paragraph(err), "the message is not one paragraph" + context
    missing = [m for m in expect["message"] if m not in err]
    assert not missing, f"the message lacks {missing}" + context

    assert snapshot(store) == before, "the store changed" + context
    assert not Path(str(store) + ".wal").exists(), context
    created = {p for p in work.rglob("*") if "__pycache__" not in p.parts} - files_before
    assert not created, f"the command created {sorted(map(str, created))}" + context
    assert elapsed < MAX_SECONDS, f"took {elapsed:.1f} s: did it train?" + context
