"""What keeps working across runner's reorganisation into subpackages: the import paths a plugin or a
script uses, old ones included (with a DeprecationWarning), and stores written before it."""

from __future__ import annotations

import importlib
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from store_dumps import imported

from runner import _moved
from runner.store import Store


@pytest.mark.parametrize("old,new", sorted(_moved.MOVED.items()))
def test_an_old_module_path_is_the_new_module_with_a_deprecation_warning(old, new):
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=f"{old} moved to {new}"):
        module = importlib.import_module(old)
    assert module is importlib.import_module(new)


def test_what_plugins_import_works_in_a_fresh_process_without_warnings():
    """The names docs/plugins.md and the example plugins import, from their homes, warn about nothing."""
    code = """
import warnings
warnings.simplefilter("error")
from runner import hookimpl, OptionError, InputError, __version__
from runner.spec.compat import drop_for_hash, fill_stored
from runner.data.tokenization import train_tokenizer
from runner.train.backbones import load_checkpoint, add_special_tokens, label_maps
from runner.plugins.contexts import BackboneContext, LossContext, LoadContext, RawDataset
from runner.core.records import MemberHistory
from runner.store import Store
import runner
assert callable(runner.load) and callable(runner.apply) and callable(runner.validate)
assert hookimpl.project_name == "runner"
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr


def test_import_runner_for_a_hook_loads_no_training_library():
    """`from runner import hookimpl` in a plugin file stays cheap: no torch, transformers or DuckDB."""
    code = ("import sys; from runner import hookimpl; "
            "print(sorted(m for m in ('torch', 'transformers', 'duckdb') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stdout + proc.stderr


@pytest.fixture
def old_store(tmp_path) -> Path:
    """The store runner 0.1.0 wrote (tests/fixtures/store_0_1_0), as a DuckDB file again."""
    return imported("store_0_1_0", tmp_path / "results.duckdb")


def test_a_store_written_before_the_reorganisation_opens_and_reads(old_store, run_cli):
    store = Store(old_store).open_read()
    assert store.pending_migrations() == []
    run = store.run("old")
    assert [m.name for m in run.finished] == ["bert-a", "bert-b"]
    assert run.selected_strategy == "best_eval_accuracy"
    assert [e.epoch for e in store.member_epochs(run.run_id, "bert-a")] == [1, 2]
    weights = store.ensemble_weights(run.run_id)
    assert {w["member"] for w in weights} == {"bert-a", "bert-b"}

    code, out, err = run_cli("runs", "--store", old_store, "--format", "csv")
    assert code == 0, err
    assert run.run_id in out and "2/2" in out
    code, out, err = run_cli("sql", "SELECT count(*) AS n FROM predictions", "--store", old_store, "--format", "csv")
    assert code == 0, err
    assert out.splitlines()[1] == "672"
    code, out, err = run_cli("compare", "old", "--store", old_store, "--format", "markdown")
    assert code == 0, err
    assert "bert-a" in out and "swa" in out


def test_a_store_written_before_the_reorganisation_takes_new_writes(old_store):
    """Opened for writing, it needs no migration and takes a new run's rows beside the old."""
    store = Store(old_store)
    store.open()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        store.create_run("new-run", "new", {"name": "new"}, "0" * 64, "d0", ["a", "b"])
    assert sorted(store.run_ids()) == sorted(["new-run", Store(old_store).open_read().run("old").run_id])
