"""The guarded writer (runner.store.writes), alone: a property over generated paths into a folder of
decoys (tests/write_targets.py) says that it writes exactly what the oracle allows and refuses the rest
before touching anything; and the pieces one by one: atomic replacement, the modes, a FIFO, the
re-check before the rename, folders."""

from __future__ import annotations

import os
import stat
import tempfile
import threading
from pathlib import Path

import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from write_targets import EARLIER, budget, changed, file_refusal, fill, folder_refusal, make_decoys, paths, snapshot

from runner.errors import InputError
from runner.store.writes import file_target, folder_target, publish_folder, write_file, write_text


def recognised(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(len(EARLIER)) == EARLIER


def _drain_fifo(fifo: Path, got: list) -> threading.Thread:
    t = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    t.start()
    return t


def _release(fifo: Path, t: threading.Thread) -> None:
    """A reader still waiting for a writer (the writer refused): open the FIFO once to let it go."""
    import time

    deadline = time.monotonic() + 10
    while t.is_alive() and time.monotonic() < deadline:
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:  # ENXIO: the reader has not opened its end yet
            time.sleep(0.01)
            continue
        t.join(1)


@budget(150)
@given(path=paths(".png", [".PNG", ".txt", ".toml", ".py", ""]), with_suffix=st.booleans())
def test_the_writer_writes_what_the_rules_allow_and_nothing_else(path, with_suffix):
    with tempfile.TemporaryDirectory(prefix="runner-writes-") as tmp:
        root = Path(tmp) / "w"
        decoys = make_decoys(root, ".png")
        cwd = Path.cwd()
        os.chdir(root)
        got: list = []
        reader = _drain_fifo(root / "fifo", got)
        try:
            text = fill(path, root)
            suffixes = (".png", ".pdf") if with_suffix else None
            why = file_refusal(text, root, root, suffixes, recognised)
            event(why or "written")
            before = snapshot(root)
            try:
                target = file_target(text, "--out", suffixes=suffixes, recognise=recognised,
                                     store=root / "results.duckdb", protect=[("SPEC", root / "spec.toml")])
                written = write_file(target, lambda f: f.write(EARLIER + b"new\n"))
            except InputError as e:
                assert why is not None, f"{text!r} refused, though the rules allow it: {e}"
                assert str(e).startswith("--out") and "Nothing was written" in str(e), str(e)
                _release(root / "fifo", reader)
                assert changed(before, snapshot(root)) == [], f"{text!r} refused, but something changed"
                return
            assert why is None, f"{text!r} written, though it must be refused ({why})"
            _release(root / "fifo", reader)
            rel = os.path.relpath(written, os.path.realpath(root))
            diff = changed(before, snapshot(root))
            if rel == "fifo":
                assert diff == [] and got == [EARLIER + b"new\n"]
            else:
                assert diff == [rel], diff
                assert Path(written).read_bytes() == EARLIER + b"new\n"
                assert os.lstat(written).st_nlink == 1 and stat.S_ISREG(os.lstat(written).st_mode)
            assert not [p for p in root.rglob("*runner-tmp*")]
        finally:
            decoys.undo()
            os.chdir(cwd)
            _release(root / "fifo", reader)


@budget(80)
@given(path=paths("", ["/nested", ""]))
def test_a_folder_is_published_where_the_rules_allow_and_nowhere_else(path):
    with tempfile.TemporaryDirectory(prefix="runner-writes-") as tmp:
        root = Path(tmp) / "w"
        decoys = make_decoys(root, ".bin")
        cwd = Path.cwd()
        os.chdir(root)
        try:
            text = fill(path, root)
            why = folder_refusal(text, root, root)
            event(why or "published")
            before = snapshot(root)
            try:
                target = folder_target(text, "DIR", store=root / "results.duckdb")
                final = publish_folder(target, lambda d: (d / "manifest.json").write_text("{}"))
            except InputError as e:
                assert why is not None, f"{text!r} refused, though the rules allow it: {e}"
                assert changed(before, snapshot(root)) == [], f"{text!r} refused, but something changed"
                return
            assert why is None, f"{text!r} published, though it must be refused ({why})"
            rel = os.path.relpath(final, os.path.realpath(root))
            new = [k for k in changed(before, snapshot(root))]
            assert f"{rel}/manifest.json" in new or rel == "." , new
            assert all(k == rel or k.startswith(rel + "/") or rel.startswith(k + "/") for k in new), new
            assert stat.S_IMODE(os.stat(final).st_mode) == 0o777 & ~_umask()
        finally:
            os.chdir(cwd)
            decoys.undo()


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# -- the pieces ----------------------------------------------------------------------------------------


def test_an_earlier_output_is_replaced_atomically_keeping_its_mode(tmp_path):
    out = tmp_path / "out.png"
    out.write_bytes(EARLIER)
    out.chmod(0o640)
    target = file_target(out, "--out", recognise=recognised)

    def fail(f):
        f.write(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        write_file(target, fail)
    assert out.read_bytes() == EARLIER and sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]
    write_file(target, lambda f: f.write(EARLIER + b"2"))
    assert out.read_bytes() == EARLIER + b"2" and stat.S_IMODE(out.stat().st_mode) == 0o640


def test_a_new_file_gets_the_mode_of_the_umask_and_text_is_utf8(tmp_path):
    target = file_target(tmp_path / "r.html", "--out", suffixes=(".html",))
    write_text(target, "한국어\r\n")
    assert (tmp_path / "r.html").read_bytes() == "한국어\r\n".encode()
    assert stat.S_IMODE((tmp_path / "r.html").stat().st_mode) == 0o666 & ~_umask()


def test_what_appears_after_the_check_is_refused_at_the_write(tmp_path):
    """The target is checked again just before the rename: a user's file (or a link) made meanwhile stays."""
    out = tmp_path / "out.png"
    target = file_target(out, "--out")
    out.write_bytes(b"made by the user meanwhile")
    with pytest.raises(InputError, match="not one runner wrote"):
        write_file(target, lambda f: f.write(b"x"))
    assert out.read_bytes() == b"made by the user meanwhile"
    out.unlink()
    out.symlink_to(tmp_path / "elsewhere.png")
    with pytest.raises(InputError, match="symbolic link"):
        write_file(target, lambda f: f.write(b"x"))
    assert not (tmp_path / "elsewhere.png").exists()


def test_a_hard_link_to_the_store_is_named_as_such(tmp_path):
    store = tmp_path / "results.duckdb"
    store.write_bytes(b"x" * 100)
    os.link(store, tmp_path / "plot.png")
    with pytest.raises(InputError) as e:
        file_target(tmp_path / "plot.png", "--out", store=store)
    assert "is the store" in str(e.value) and "--out" in str(e.value)
    assert store.read_bytes() == b"x" * 100


def test_a_folder_replaces_an_empty_one_and_an_interrupted_fill_leaves_nothing(tmp_path):
    (tmp_path / "dir").mkdir()
    target = folder_target(tmp_path / "dir")

    def fail(d):
        (d / "a").write_text("x")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        publish_folder(target, fail)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir"] and not any((tmp_path / "dir").iterdir())
    publish_folder(folder_target(tmp_path / "dir"), lambda d: (d / "m.json").write_text("{}"))
    assert (tmp_path / "dir" / "m.json").read_text() == "{}"
    with pytest.raises(InputError, match="not empty"):
        folder_target(tmp_path / "dir")
