"""Selection strategies as one registry: the pick rules, plugin strategies and metrics end to end,
ensembles as their own kind of row, and stores migrated from the old views.

The end-to-end test trains a real run whose [selection] metric is a plugin metric, with a plugin
strategy, and a member that is actually called `ensemble`; it then checks that the plugin's metric
and strategy appear in every place a built-in one does (the `epochs` view, `selections`, `runner
compare`, the ensembles) with no other edit.
"""

from __future__ import annotations

import json
import math
import shutil
from datetime import datetime
from pathlib import Path

import duckdb
import numpy as np
import pytest
from typer.testing import CliRunner

from runner.cli import app
from runner.core.records import EpochRecord, MemberHistory
from runner.core.selection import best_epoch, best_smoothed_epoch, pick_all
from runner.plugins.registry import load_registry
from runner.store import Store
from runner.store.migrations import MIGRATIONS

REPO = Path(__file__).resolve().parents[2]


def history(values: dict[int, dict[str, float]], has_swa=False) -> MemberHistory:
    return MemberHistory.of("m", [EpochRecord(e, v) for e, v in values.items()], has_swa=has_swa)


# -- the rules ------------------------------------------------------------------------------------


def test_best_epoch_min_loss_max_accuracy_ties_to_the_earliest_and_skips_nan():
    h = history({1: {"eval_loss": 0.9, "eval_accuracy": 0.6},
                 2: {"eval_loss": 0.5, "eval_accuracy": 0.8},
                 3: {"eval_loss": 0.5, "eval_accuracy": 0.8},
                 4: {"eval_loss": math.nan, "eval_accuracy": math.inf}})
    assert best_epoch(h, "eval_loss", greater=False) == 2
    assert best_epoch(h, "eval_accuracy", greater=True) == 2  # inf is not a number a model earned
    assert best_epoch(h, "eval_f1_macro", greater=True) is None


def test_smoothed_picks_the_later_epoch_of_the_best_pair():
    # epoch 2 is a lucky spike; epochs 4 and 5 are good together
    acc = {1: 0.50, 2: 0.80, 3: 0.55, 4: 0.74, 5: 0.76}
    h = history({e: {"eval_accuracy": v} for e, v in acc.items()})
    assert best_epoch(h, "eval_accuracy", True) == 2
    assert best_smoothed_epoch(h, "eval_accuracy", True) == 5
    assert best_smoothed_epoch(history({1: {"eval_accuracy": 0.5}}), "eval_accuracy", True) == 1


def test_strategies_never_see_test_metrics():
    h = history({1: {"eval_accuracy": 0.5, "test_accuracy": 0.9}, 2: {"eval_accuracy": 0.6, "test_accuracy": 0.1}})
    assert all("test_accuracy" not in e.metrics for e in h)
    seen = []
    registry = load_registry(None)
    picks = pick_all(registry, h)
    assert picks["best_eval_accuracy"] == "epoch-2" and picks["last"] == "epoch-2" and picks["swa"] is None
    assert seen == []


def test_every_registered_metric_gets_its_strategies(tmp_path):
    shutil.copy(REPO / "plugins" / "balanced_accuracy.py", tmp_path)
    registry = load_registry(tmp_path)
    names = {s.name for s in registry.selections()}
    for metric in ("loss", "accuracy", "f1_macro", "log_loss", "balanced_accuracy"):
        assert {f"best_eval_{metric}", f"best_eval_{metric}_smoothed"} <= names
    assert {"last", "swa", "first_within_1pt"} <= names
    assert registry.selection("best_eval_log_loss").greater_is_better is False
    # derived by the built-in strategies plugin from the plugin metric; the metric keeps its own origin
    assert registry.selection("best_eval_balanced_accuracy").origin == "builtin"
    assert registry.metric("balanced_accuracy").origin == str(tmp_path / "balanced_accuracy.py")


def test_a_strategy_that_picks_a_checkpoint_that_does_not_exist_is_named(tmp_path):
    (tmp_path / "bad.py").write_text(
        "from runner import hookimpl\n\n"
        "@hookimpl\ndef register_selections(register):\n"
        "    register('epoch_99', lambda history: 'epoch-99')\n")
    registry = load_registry(tmp_path)
    from runner.errors import PluginError

    with pytest.raises(PluginError, match="epoch_99.*bad.py.*epoch-99"):
        pick_all(registry, history({1: {"eval_accuracy": 0.5}}))


@pytest.mark.parametrize("name, why", [("selected", "reserved"), ("best eval", "name"), ("", "name")])
def test_strategy_names_are_identifiers_and_selected_is_reserved(tmp_path, name, why):
    (tmp_path / "p.py").write_text(
        "from runner import hookimpl\n\n"
        f"@hookimpl\ndef register_selections(register):\n    register({name!r}, lambda h: None)\n")
    from runner.errors import PluginError

    with pytest.raises(PluginError, match=why):
        load_registry(tmp_path)


def test_a_misspelt_capability_names_the_plugin(tmp_path):
    (tmp_path / "p.py").write_text(
        "from runner import hookimpl\n\n"
        "@hookimpl\ndef register_metrics(register):\n"
        "    register('m', lambda p, y: 0.0, greater_is_beter=False)\n")
    from runner.errors import PluginError

    with pytest.raises(PluginError, match=r"p\.py.*greater_is_beter"):
        load_registry(tmp_path)


# -- a plugin metric and a plugin strategy, end to end ---------------------------------------------

SPEC = """
name = "plugged"
seed = 4

[data]
source = "synthetic"
valid = 0.2
test = 0.2
max_length = 32

[data.options]
size = 240

[train]
epochs = 3
batch_size = 32
learning_rate = 3e-3
lr_scheduler = "constant"

[selection]
metric = "eval_balanced_accuracy"

[swa]
k = 2

[[members]]
name = "ensemble"
backbone = "scratch"
options = { hidden_size = 16, layers = 1, heads = 2, vocab_size = 500 }

[[members]]
name = "b"
backbone = "scratch"
options = { hidden_size = 16, layers = 1, heads = 2, vocab_size = 500, architecture = "roberta" }
"""


def cli(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def plugged(tmp_path_factory):
    d = tmp_path_factory.mktemp("plugged")
    (d / "plugins").mkdir()
    shutil.copy(REPO / "plugins" / "balanced_accuracy.py", d / "plugins")
    (d / "spec.toml").write_text(SPEC)
    code, out, err = cli("apply", d / "spec.toml", "--store", d / "results.duckdb")
    assert code == 0, err + out
    assert "balanced_accuracy.py" in err  # apply says which plugin files it loaded
    store = Store(d / "results.duckdb").open_read()
    return d, store, store.run("plugged")


def test_plugin_metric_has_columns_selects_and_reaches_the_ensembles(plugged):
    d, store, run = plugged
    assert run.selection_metric == "eval_balanced_accuracy" and run.selected_strategy == "best_eval_balanced_accuracy"
    cols, rows = store.query("SELECT member, epoch, eval_balanced_accuracy, test_balanced_accuracy FROM epochs "
                             "ORDER BY member, epoch")
    assert len(rows) == 6 and all(r[2] is not None and r[3] is not None for r in rows)
    # the selected checkpoint is the best epoch by the plugin metric (ties to the earliest)
    for m in run.members:
        mine = [r for r in rows if r[0] == m.name]
        best = max(r[2] for r in mine)
        assert m.selected_checkpoint == f"epoch-{next(r[1] for r in mine if r[2] == best)}"
    # the spec's ensemble got the plugin metric, computed from its own stored probabilities
    ens = store.query("SELECT split, value FROM metrics WHERE run_id = ? AND kind = 'ensemble' "
                      "AND member = 'ensemble' AND name = 'balanced_accuracy'", [run.run_id])[1]
    assert {s for s, _ in ens} == {"valid", "test"}
    probs = store.query("SELECT p.probs, e.label FROM predictions p JOIN examples e ON e.dataset_id = ? "
                        "AND e.split = p.split AND e.idx = p.idx WHERE p.run_id = ? AND p.kind = 'ensemble' "
                        "AND p.split = 'test' AND p.checkpoint = ?",
                        [run.dataset_id, run.run_id, run.selected_strategy])[1]
    p, y = np.array([r[0] for r in probs]), np.array([r[1] for r in probs])
    recalls = [np.mean(p.argmax(1)[y == c] == c) for c in np.unique(y)]
    assert dict(ens)["test"] == pytest.approx(float(np.mean(recalls)), abs=1e-9)


def test_plugin_strategy_is_in_selections_compare_and_an_ensemble(plugged):
    d, store, run = plugged
    picks = dict(store.query("SELECT member, checkpoint FROM selections WHERE run_id = ? AND strategy = "
                             "'first_within_1pt'", [run.run_id])[1])
    assert set(picks) == {"ensemble", "b"}
    for member, checkpoint in picks.items():
        acc = dict(store.query("SELECT epoch, eval_accuracy FROM epochs WHERE run_id = ? AND member = ?",
                               [run.run_id, member])[1])
        first = min(e for e, v in acc.items() if v >= max(acc.values()) - 0.01)
        assert checkpoint == f"epoch-{first}"

    code, out, err = cli("compare", "plugged", "--store", d / "results.duckdb", "--plugins", d / "plugins",
                         "--format", "json")
    assert code == 0, err
    rows = json.loads(out)
    block = [(r["kind"], r["member"], r["checkpoint"]) for r in rows if r["strategy"] == "first_within_1pt"]
    assert block == [("member", "ensemble", picks["ensemble"]), ("member", "b", picks["b"]),
                     ("ensemble", "ensemble", "first_within_1pt")]
    built = store.query("SELECT count(*) FROM ensemble_weights WHERE run_id = ? AND strategy = 'first_within_1pt'",
                        [run.run_id])[1][0][0]
    assert built == 0  # compare computed the plugin strategy's ensemble in memory: a read stores nothing
    # every registered strategy has a block, and the compare columns include the plugin metric
    strategies = {r["strategy"] for r in rows}
    assert {"first_within_1pt", "best_eval_balanced_accuracy", "best_eval_log_loss_smoothed", "swa"} <= strategies
    assert "test_balanced_accuracy" in rows[0]

    code, out, err = cli("ensemble", "plugged", "--checkpoint", "first_within_1pt", "--weights", "1,3",
                         "--store", d / "results.duckdb", "--plugins", d / "plugins", "--format", "json")
    assert code == 0, err
    assert [r["checkpoint"] for r in json.loads(out)] == [picks["ensemble"], picks["b"]]


def test_a_member_called_ensemble_is_just_a_member(plugged):
    d, store, run = plugged
    assert [m.name for m in run.members] == ["ensemble", "b"]
    assert store.query("SELECT count(*) FROM epochs WHERE member = 'ensemble'")[1][0][0] == 3
    kinds = store.query("SELECT DISTINCT kind FROM predictions WHERE member = 'ensemble' ORDER BY kind")[1]
    assert kinds == [("ensemble",), ("member",)]
    code, out, err = cli("compare", "plugged", "--store", d / "results.duckdb", "--strategies", "last",
                         "--format", "json")
    assert code == 0, err
    assert [(r["kind"], r["member"]) for r in json.loads(out)] == [
        ("member", "ensemble"), ("member", "b"), ("ensemble", "ensemble")]


# -- stores written before strategies were a registry -----------------------------------------------


def old_store(path: Path) -> None:
    """A store as runner wrote it up to m003: ensembles as member 'ensemble', selections a view."""
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE _migrations (name VARCHAR NOT NULL, applied_at TIMESTAMP NOT NULL)")
    for m in MIGRATIONS[:3]:
        m(con)
        con.execute("INSERT INTO _migrations VALUES (?, ?)", [m.__name__, datetime(2026, 1, 1)])
    con.execute("INSERT INTO runs (run_id, name, spec, spec_hash, dataset_id, status, started_at, label_names) "
                "VALUES ('r', 'old', '{}', 'h', 'd', 'finished', ?, '[\"n\", \"p\"]')", [datetime(2026, 1, 1)])
    for member in ("a", "b"):
        con.execute("INSERT INTO members (run_id, member, backbone, seed, status, selected_checkpoint) "
                    "VALUES ('r', ?, 'scratch', 1, 'finished', 'epoch-2')", [member])
        for epoch, acc in ((1, 0.6), (2, 0.7)):
            con.execute("INSERT INTO metrics VALUES ('r', ?, ?, ?, 'valid', 'accuracy', ?), "
                        "('r', ?, ?, ?, 'valid', 'loss', ?)",
                        [member, f"epoch-{epoch}", epoch, acc, member, f"epoch-{epoch}", epoch, 1 - acc])
            con.execute("INSERT INTO predictions VALUES ('r', ?, ?, ?, 'valid', 0, 1, [0.3, 0.7])",
                        [member, f"epoch-{epoch}", epoch])
    for name, strategy in (("best_eval_accuracy", "best_eval_accuracy"),
                           ("best_eval_accuracy/w=0.5,0.5", "best_eval_accuracy")):
        con.execute("INSERT INTO metrics VALUES ('r', 'ensemble', ?, NULL, 'valid', 'accuracy', 0.75)", [name])
        con.execute("INSERT INTO predictions VALUES ('r', 'ensemble', ?, NULL, 'valid', 0, 1, [0.3, 0.7])", [name])
        for member in ("a", "b"):
            con.execute("INSERT INTO ensemble_weights VALUES ('r', ?, ?, 'given', ?, 'epoch-2', 0.5, ?)",
                        [name, strategy, member, datetime(2026, 1, 1)])
    con.close()


def test_an_old_store_migrates_ensembles_and_selections(tmp_path):
    path = tmp_path / "old.duckdb"
    old_store(path)
    old_selections = sorted(duckdb.connect(str(path), read_only=True).execute(
        "SELECT member, strategy, checkpoint FROM selections WHERE member <> 'ensemble'").fetchall())
    store = Store(path).open()
    assert sorted(store.query("SELECT member, strategy, checkpoint FROM selections")[1]) == old_selections
    ensembles = store.query("SELECT DISTINCT kind, member, checkpoint FROM metrics WHERE kind = 'ensemble' "
                            "ORDER BY member")[1]
    assert ensembles == [("ensemble", "ensemble", "best_eval_accuracy"),
                         ("ensemble", "w=0.5,0.5", "best_eval_accuracy")]
    assert store.query("SELECT count(*) FROM predictions WHERE member = 'ensemble' AND kind = 'member'")[1][0][0] == 0
    assert sorted(store.query("SELECT DISTINCT ensemble FROM ensemble_weights")[1]) == [("ensemble",), ("w=0.5,0.5",)]
    assert store.query("SELECT count(*) FROM epochs")[1][0][0] == 4
    # the strategies the old view did not have are computed when needed, from the stored epochs, not stored
    from runner.posthoc.picks import all_picks

    run = store.run("old")
    picked = all_picks(store, run, load_registry(None))
    assert picked["best_eval_accuracy_smoothed"] == {"a": "epoch-2", "b": "epoch-2"}
    assert not store.query("SELECT count(*) FROM selections WHERE strategy = 'best_eval_accuracy_smoothed'")[1][0][0]
