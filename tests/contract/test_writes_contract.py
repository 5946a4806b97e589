"""Every command that writes a file or folder a user names (`plot --out`, `report --out`, `predict
--output`, `export DIR`, `schema --out`), run through the real CLI on generated paths into a folder of
decoys beside a real store with a finished run (tests/write_targets.py): each must exit 0 having written
exactly its target, where the oracle allows it, and otherwise exit 2 naming the option, with nothing
changed: not the store, its WAL or folders, a checkpoint, a spec, a plugin, a link's target, a hard
link's other name, a user's file, or anything else in the folder.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import contract_strategies as cs
import pytest
from contract_checks import GOLDEN_DOC
from hypothesis import event, given
from hypothesis import strategies as st
from write_targets import (
    STORE,
    budget,
    changed,
    file_refusal,
    fill,
    folder_refusal,
    make_decoys,
    paths,
    snapshot,
)

torch = pytest.importorskip("torch")

# what each command wrote before: the one kind of existing file it may replace
EARLIER = {
    "plot": b"\x89PNG\r\n\x1a\n...Software runner plot...",
    "report": b'<!DOCTYPE html>\n<html><head><meta name="generator" content="runner report"></head></html>\n',
    "schema": b'{"$comment": "runner schema: an earlier one"}\n',
    "predict": b"row,label,p_neg,p_pos\n0,neg,0.9,0.1\n",
}
SUFFIX = {"plot": ".png", "report": ".html", "schema": ".json", "predict": ".csv"}
ALLOWED = {"plot": (".png", ".pdf", ".svg"), "report": (".html", ".htm"), "schema": (".json",), "predict": None}
OTHERS = {"plot": [".svg", ".PDF", ".txt", ".toml", ".py"], "report": [".htm", ".txt", ".py"],
          "schema": [".JSON", ".toml", ".txt"], "predict": [".jsonl", ".parquet", ".txt", ".py", ".toml", ""]}
OPTION = {"plot": "--out", "report": "--out", "schema": "--out", "predict": "--output", "export": "DIR"}


@pytest.fixture(scope="module")
def golden(tmp_path_factory):
    """A finished two-member run (the contract search's golden spec), in a folder cases copy."""
    from typer.testing import CliRunner

    from runner.cli import app

    root = tmp_path_factory.mktemp("writes-golden")
    home = root / "home"
    home.mkdir()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(home))
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("TOKENIZERS_PARALLELISM", "false")
        (root / "spec.toml").write_text(cs.toml_dumps(GOLDEN_DOC), encoding="utf-8")
        out = root / "out"
        out.mkdir()
        runner = CliRunner()
        r = runner.invoke(app, ["apply", str(root / "spec.toml"), "--store", str(out / STORE)])
        assert r.exit_code == 0, r.output
        run_id = json.loads(runner.invoke(app, ["runs", "--store", str(out / STORE), "--format", "json"]).stdout)[0][
            "run_id"]
        (root / "input.csv").write_text("text\nan awful film\na superb film\n", encoding="utf-8")
        yield root, out, run_id, runner, app, home


def _run(golden, command: str, path: str) -> None:
    """Run `command` with `path` as its target in a fresh copy of the golden folder with the decoys, and judge it."""
    root, out, run_id, runner, app, home = golden
    with tempfile.TemporaryDirectory(prefix="runner-writes-cli-") as tmp:
        w = Path(tmp) / "w"
        shutil.copytree(out, w)
        suffix = SUFFIX.get(command, ".bin")
        decoys = make_decoys(w, suffix, earlier=EARLIER.get(command, b"x"))
        cwd = Path.cwd()
        os.chdir(w)
        got: list = []
        reader = threading.Thread(target=lambda: got.append((w / "fifo").read_bytes()), daemon=True)
        reader.start()
        try:
            text = fill(path, w)
            given_path = str(Path(text))  # what typer hands the command
            if command == "export":
                why = folder_refusal(given_path, w, w)
            else:
                why = file_refusal(given_path, w, w, ALLOWED[command],
                                   lambda p: p.read_bytes() == EARLIER[command])
            event(f"{command}: {why or 'written'}")
            store = str(w / STORE)
            args = {
                "plot": ["plot", "--store", store, "--out", text],
                "report": ["report", "--store", store, "--out", text],
                "schema": ["schema", "--out", text],
                "predict": ["predict", run_id, str(root / "input.csv"), "--store", store, "--no-store", "-o", text],
                "export": ["export", run_id, text, "--store", store],
            }[command]
            before = snapshot(w)
            r = runner.invoke(app, args, catch_exceptions=True)
            _release(w / "fifo", reader)
            after = snapshot(w)
            _judge(command, (r, why, before, after, w, text, got))
        finally:
            decoys.undo()
            os.chdir(cwd)
            _release(w / "fifo", reader)


def _release(fifo: Path, t: threading.Thread) -> None:
    deadline = time.monotonic() + 10
    while t.is_alive() and time.monotonic() < deadline:
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            time.sleep(0.01)
            continue
        t.join(1)


def _judge(command: str, result) -> None:
    r, why, before, after, w, text, got = result
    shown = f"$ runner {command} ... {text!r}\nexit {r.exit_code}\n{r.stderr}{r.stdout}"
    assert r.exit_code in (0, 2), shown
    assert "Traceback" not in r.stderr + r.stdout and "internal error" not in r.stderr, shown
    diff = changed(before, after)
    if command == "report":  # report stores the ensembles compare builds (a read command that still writes
        diff = [k for k in diff if not k.startswith((STORE, "hl_store"))]  # the store; not this test's concern)
    if r.exit_code == 2:
        assert why is not None, f"refused, though the rules allow it\n{shown}"
        assert OPTION[command] in r.stderr, shown
        assert diff == [], f"exit 2, but changed {diff}\n{shown}"
        return
    assert why is None, f"exit 0, though it must be refused ({why})\n{shown}"
    assert STORE not in diff and not any(k.startswith(("runs", "adapted", "tokenized")) for k in diff), diff
    target = os.path.relpath(os.path.realpath(Path(w, text).parent) + "/" + Path(text).name, os.path.realpath(w))
    target = os.path.normpath(target)
    if target == "fifo":
        assert diff == [] and got and got[0], shown
        return
    if command == "export":
        assert diff and all(k == target or k.startswith(target + "/") or target.startswith(k + "/") for k in diff), \
            (diff, shown)
        assert (w / target / "manifest.json").is_file(), shown
    else:
        assert diff == [target], (diff, shown)
        assert (w / target).stat().st_size > 0 and (w / target).stat().st_nlink == 1


@budget(60)
@given(command=st.sampled_from(["plot", "report", "schema", "predict", "predict"]), data=st.data())
def test_every_command_that_writes_a_named_file_writes_it_or_refuses_cleanly(golden, command, data):
    path = data.draw(paths(SUFFIX[command], OTHERS[command]), label="path")
    _run(golden, command, path)


@budget(25)
@given(path=paths("", ["/nested", "", "x"]))
def test_export_writes_a_new_folder_or_refuses_cleanly(golden, path):
    _run(golden, "export", path)
