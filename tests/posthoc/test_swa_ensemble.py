"""SWA, ensembles and `runner compare`, checked against independent computations.

The weight average is compared with `torch.optim.swa_utils.AveragedModel`; everything after a real
`runner apply` (three tiny scratch BERTs, SWA over the last 2 epochs, fitted ensemble weights) is
recomputed by hand from the raw `predictions` / `examples` rows and compared with what runner stored
and printed.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file, save_model
from typer.testing import CliRunner

from runner.analysis.compare import compare
from runner.cli import app
from runner.core.maths import log_loss
from runner.plugins.registry import load_registry
from runner.posthoc.ensemble import fit_weights
from runner.store import Store
from runner.train.backbones import load_checkpoint
from runner.train.swa import average_checkpoints, load_averaged

REGISTRY = load_registry(None)
STRATEGIES = [s.name for s in REGISTRY.selections()]

SPEC = """
name = "swa-ens"
seed = 5

[data]
source = "synthetic"
valid = 0.2
test = 0.2
max_length = 48

[data.options]
size = 300

[train]
epochs = {epochs}
batch_size = 32
learning_rate = {lr}
lr_scheduler = "constant"

[loss]
name = "cross_entropy"

[selection]
metric = "eval_accuracy"
{selection_extra}

[swa]
k = {k}

[ensemble]
weights = "fit"

{members}
"""

MEMBER = """
[[members]]
name = "{name}"
backbone = "scratch"
seed = {seed}
options = {{ architecture = "bert", hidden_size = 32, layers = 2, heads = 2, vocab_size = 2000 }}
"""

MEMBERS = ("a", "b", "c")
EPOCHS, K = 3, 2


def spec_text(members=MEMBERS, epochs=EPOCHS, k=K, lr="2e-3", selection_extra=""):
    body = "".join(MEMBER.format(name=m, seed=11 + i) for i, m in enumerate(members))
    return SPEC.format(epochs=epochs, k=k, lr=lr, selection_extra=selection_extra, members=body)


def cli(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def applied(tmp_path_factory):
    """One real run (3 members, SWA k = 2, fitted ensemble) shared by the tests below."""
    d = tmp_path_factory.mktemp("swa_ens")
    spec = d / "spec.toml"
    spec.write_text(spec_text())
    store_path = d / "results.duckdb"
    code, out, err = cli("apply", spec, "--store", store_path)
    assert code == 0, err + out
    store = Store(store_path)
    info = store.query_dicts("SELECT run_id, dataset_id FROM runs")[0]
    return store, info["run_id"], info["dataset_id"]


# -- helpers that read the raw tables ---------------------------------------------------------------


def stored_probs(store: Store, run_id: str, member: str, checkpoint: str, split: str, kind: str = "member"):
    rows = store.query(
        "SELECT idx, probs FROM predictions WHERE run_id = ? AND kind = ? AND member = ? AND checkpoint = ? "
        "AND split = ? ORDER BY idx", [run_id, kind, member, checkpoint, split])[1]
    return np.array([r[0] for r in rows]), np.array([r[1] for r in rows], dtype=np.float64)


def labels_of(store: Store, dataset_id: str, split: str, idx: np.ndarray) -> np.ndarray:
    rows = dict(store.query("SELECT idx, label FROM examples WHERE dataset_id = ? AND split = ?",
                            [dataset_id, split])[1])
    return np.array([rows[int(i)] for i in idx])


def ensemble_weights(store: Store, run_id: str, name: str, strategy: str) -> list[dict]:
    return store.query_dicts(
        "SELECT member, member_checkpoint, weight, method FROM ensemble_weights WHERE run_id = ? AND ensemble = ? "
        "AND strategy = ? ORDER BY member", [run_id, name, strategy])


def metric(store: Store, run_id: str, member: str, checkpoint: str, split: str, name: str,
           kind: str = "member") -> float:
    rows = store.query("SELECT value FROM metrics WHERE run_id = ? AND kind = ? AND member = ? AND checkpoint = ? "
                       "AND split = ? AND name = ?", [run_id, kind, member, checkpoint, split, name])[1]
    assert len(rows) == 1, (member, checkpoint, split, name, rows)
    return rows[0][0]


def check_ensemble_by_hand(store: Store, run_id: str, dataset_id: str, name: str, strategy: str) -> None:
    """The ensemble's stored probabilities are the weighted mean of its members' stored probabilities,
    and its stored accuracy and log-loss are those of these probabilities."""
    weights = ensemble_weights(store, run_id, name, strategy)
    assert weights, f"no weights stored for ensemble {name!r} over {strategy!r}"
    for split in ("valid", "test"):
        expected, idx0 = 0.0, None
        for w in weights:
            idx, probs = stored_probs(store, run_id, w["member"], w["member_checkpoint"], split)
            assert len(idx) > 0
            if idx0 is not None:
                np.testing.assert_array_equal(idx, idx0)
            idx0 = idx
            expected = expected + w["weight"] * probs
        idx, got = stored_probs(store, run_id, name, strategy, split, kind="ensemble")
        np.testing.assert_array_equal(idx, idx0)
        np.testing.assert_allclose(got, expected, atol=1e-6)
        labels = labels_of(store, dataset_id, split, idx)
        accuracy = float(np.mean(got.argmax(axis=1) == labels))
        assert metric(store, run_id, name, strategy, split, "accuracy", "ensemble") == pytest.approx(accuracy, abs=1e-12)
        nll = float(-np.mean(np.log(got[np.arange(len(labels)), labels])))
        assert metric(store, run_id, name, strategy, split, "log_loss", "ensemble") == pytest.approx(nll, abs=1e-5)
        # an ensemble has no training objective: its one loss is log_loss
        assert not store.query("SELECT count(*) FROM metrics WHERE run_id = ? AND kind = 'ensemble' AND name = 'loss'",
                               [run_id])[1][0][0]


# -- 1. the weight average, unit level --------------------------------------------------------------


def tiny_bert():
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, num_labels=4)
    return BertForSequenceClassification(config)


def test_average_equals_torch_averaged_model(tmp_path):
    from torch.optim.swa_utils import AveragedModel

    model = tiny_bert()
    averaged = AveragedModel(model)
    files = []
    for i in range(3):
        with torch.no_grad():
            g = torch.Generator().manual_seed(100 + i)
            for p in model.parameters():
                p.add_(torch.randn(p.shape, generator=g) * 0.1)
        path = tmp_path / f"epoch-{i + 1}.safetensors"
        save_model(model, str(path))
        files.append(path)
        averaged.update_parameters(model)

    ours = average_checkpoints(files)
    reference = averaged.module.state_dict()
    assert ours, "nothing was averaged"
    for key, tensor in ours.items():
        assert tensor.dtype == reference[key].dtype, key
        torch.testing.assert_close(tensor, reference[key], rtol=1e-5, atol=1e-6, msg=key)
    # every parameter of the model was averaged, and the average loads back into a fresh model
    assert {k for k, _ in model.named_parameters()} <= set(ours)
    fresh = tiny_bert()
    load_averaged(fresh, ours)
    for key, p in fresh.named_parameters():
        torch.testing.assert_close(p.detach(), reference[key], rtol=1e-5, atol=1e-6, msg=key)
    # and it is not simply the last checkpoint
    last = dict(model.named_parameters())
    assert any(not torch.allclose(ours[k], last[k].detach()) for k in last)


def test_half_precision_accumulates_in_float32_and_integers_come_from_the_last(tmp_path):
    g = torch.Generator().manual_seed(0)
    states = []
    for i in range(3):
        states.append({
            # values near 30000: a float16 running sum (90000) would overflow to inf
            "big": (30000 + 100 * torch.randn(64, generator=g)).to(torch.float16),
            "small": torch.randn(8, 8, generator=g).to(torch.float16),
            "wide": (1 + 1e-12 * (i + 1) + torch.zeros(4, dtype=torch.float64)),
            "steps": torch.tensor([10 * (i + 1)], dtype=torch.int64),
        })
    files = []
    for i, state in enumerate(states):
        files.append(tmp_path / f"c{i}.safetensors")
        save_file(state, str(files[-1]))

    avg = average_checkpoints(files)
    for key in ("big", "small"):
        ref = torch.stack([s[key].double() for s in states]).mean(0)  # fp64 reference mean
        assert avg[key].dtype == torch.float16
        assert torch.isfinite(avg[key]).all(), key
        # within float16 rounding of the exact mean
        torch.testing.assert_close(avg[key].double(), ref, rtol=1e-3, atol=1e-3, msg=key)
    # float64 keeps float64 precision (2e-12 is below float32's resolution at 1)
    assert avg["wide"].dtype == torch.float64
    torch.testing.assert_close(avg["wide"], torch.full((4,), 1 + 2e-12, dtype=torch.float64), rtol=0, atol=1e-15)
    assert avg["steps"].dtype == torch.int64 and avg["steps"].tolist() == [30]


def test_average_refuses_checkpoints_with_different_tensors(tmp_path):
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    save_file({"w": torch.ones(2), "v": torch.ones(2)}, str(a))
    save_file({"w": torch.ones(2)}, str(b))
    with pytest.raises(ValueError, match="'v'"):
        average_checkpoints([a, b])
    with pytest.raises(ValueError, match="'v'"):
        average_checkpoints([b, a])
    with pytest.raises(ValueError):
        average_checkpoints([])


# -- 2. SWA in a real run ---------------------------------------------------------------------------


@pytest.mark.parametrize("member", MEMBERS)
def test_stored_swa_predictions_match_the_saved_swa_model(applied, member):
    store, run_id, dataset_id = applied
    swa_dir = store.path.parent / "runs" / run_id / member / "swa"
    model, tokenizer, info = load_checkpoint(swa_dir)
    rows = store.query_dicts(
        """
        SELECT e.text, p.probs FROM predictions p
        JOIN examples e ON e.dataset_id = ? AND e.split = p.split AND e.idx = p.idx
        WHERE p.run_id = ? AND p.member = ? AND p.checkpoint = 'swa' AND p.split = 'valid' ORDER BY p.idx
        """,
        [dataset_id, run_id, member],
    )
    n_valid = store.query("SELECT count(*) FROM examples WHERE dataset_id = ? AND split = 'valid'",
                          [dataset_id])[1][0][0]
    assert len(rows) == n_valid
    enc = tokenizer([r["text"] for r in rows], truncation=True, max_length=info["max_length"], padding=True,
                    return_tensors="pt")
    model.eval()
    with torch.no_grad():
        probs = torch.softmax(model(**enc).logits, -1).numpy()
    np.testing.assert_allclose(probs, np.array([r["probs"] for r in rows]), atol=1e-4)

    epochs = store.query("SELECT swa_epochs FROM members WHERE run_id = ? AND member = ?", [run_id, member])[1][0][0]
    assert list(epochs) == list(range(EPOCHS - K + 1, EPOCHS + 1))
    assert json.loads((swa_dir / "selection.json").read_text())["swa_epochs"] == list(epochs)
    # the stored SWA accuracy is the accuracy of the stored SWA predictions
    idx, swa_probs = stored_probs(store, run_id, member, "swa", "valid")
    acc = float(np.mean(swa_probs.argmax(1) == labels_of(store, dataset_id, "valid", idx)))
    assert metric(store, run_id, member, "swa", "valid", "accuracy") == pytest.approx(acc, abs=1e-12)


def test_selections_have_swa_and_only_safetensors_artifacts_remain(applied):
    store, run_id, _ = applied
    swa_rows = store.query_dicts("SELECT member, checkpoint FROM selections WHERE run_id = ? AND strategy = 'swa' "
                                 "ORDER BY member", [run_id])
    assert [(r["member"], r["checkpoint"]) for r in swa_rows] == [(m, "swa") for m in MEMBERS]
    runs = store.path.parent / "runs"
    for member in MEMBERS:
        assert sorted(p.name for p in (runs / run_id / member).iterdir()) == ["selected", "swa"]
    pickles = [p for p in runs.rglob("*") if p.suffix in (".bin", ".pt", ".pth")]
    assert pickles == []


# -- 3. fewer checkpoints than K ------------------------------------------------------------------


def test_swa_with_fewer_checkpoints_than_k(tmp_path):
    # A learning rate of 1e-12 leaves eval_accuracy unchanged, so patience 1 stops training after epoch 2.
    spec = tmp_path / "early.toml"
    spec.write_text(spec_text(members=("a",), epochs=3, k=3, lr="1e-12",
                              selection_extra="early_stopping_patience = 1"))
    store_path = tmp_path / "results.duckdb"
    code, out, err = cli("apply", spec, "--store", store_path)
    assert code == 0, err + out
    store = Store(store_path)
    member = store.query_dicts("SELECT status, swa_epochs FROM members")[0]
    assert member["status"] == "finished"
    assert list(member["swa_epochs"]) == [1, 2]
    assert "fewer than k = 3" in err
    assert store.query("SELECT max(epoch) FROM epochs")[1][0][0] == 2
    assert store.query("SELECT count(*) FROM predictions WHERE checkpoint = 'swa'")[1][0][0] > 0


# -- 4./5. the ensemble -----------------------------------------------------------------------------


def apply_time_ensemble(store: Store, run_id: str) -> tuple[str, str]:
    built = store.query("SELECT DISTINCT member, checkpoint FROM metrics WHERE run_id = ? AND kind = 'ensemble'",
                        [run_id])[1]
    # selection by eval_accuracy: the spec's ensemble (`ensemble`) is built over that strategy
    assert built == [("ensemble", "best_eval_accuracy")], built
    return built[0]


def test_ensemble_probabilities_are_the_weighted_mean_of_stored_member_probabilities(applied):
    store, run_id, dataset_id = applied
    name, strategy = apply_time_ensemble(store, run_id)
    weights = ensemble_weights(store, run_id, name, strategy)
    selected = dict(store.query("SELECT member, selected_checkpoint FROM members WHERE run_id = ?", [run_id])[1])
    assert {w["member"]: w["member_checkpoint"] for w in weights} == selected
    check_ensemble_by_hand(store, run_id, dataset_id, name, strategy)


def test_fitted_weights_are_on_the_simplex_and_no_worse_than_equal(applied):
    store, run_id, dataset_id = applied
    weights = ensemble_weights(store, run_id, *apply_time_ensemble(store, run_id))
    w = np.array([r["weight"] for r in weights])
    assert {r["method"] for r in weights} == {"fit"}
    assert (w >= 0).all() and w.sum() == pytest.approx(1, abs=1e-9)
    probs = []
    for r in weights:
        idx, p = stored_probs(store, run_id, r["member"], r["member_checkpoint"], "valid")
        probs.append(p)
    probs = np.stack(probs)
    labels = labels_of(store, dataset_id, "valid", idx)

    def nll(weights):
        mix = np.tensordot(weights, probs, axes=1)
        return -np.mean(np.log(mix[np.arange(len(labels)), labels]))

    assert nll(w) <= nll(np.full(len(w), 1 / len(w))) + 1e-9


def test_fit_weights_prefers_the_better_member():
    rng = np.random.default_rng(0)
    n, k = 400, 4
    labels = rng.integers(0, k, n)
    good = np.full((n, k), 0.1 / (k - 1))
    good[np.arange(n), labels] = 0.9
    noise = rng.dirichlet(np.ones(k), size=(2, n))
    probs = np.concatenate([noise[:1], good[None], noise[1:]])
    w = fit_weights(probs, labels)
    assert (w >= 0).all() and w.sum() == pytest.approx(1)
    assert int(np.argmax(w)) == 1 and w[1] > 0.8
    equal = np.full(3, 1 / 3)
    assert log_loss(np.tensordot(w, probs, 1), labels) < log_loss(np.tensordot(equal, probs, 1), labels)


def test_fit_weights_of_identical_members_stay_equal():
    rng = np.random.default_rng(1)
    n, k = 200, 4
    labels = rng.integers(0, k, n)
    p = rng.dirichlet(np.ones(k), size=n)
    probs = np.stack([p, p, p])
    w = fit_weights(probs, labels)
    np.testing.assert_allclose(w, np.full(3, 1 / 3), atol=1e-6)
    assert log_loss(np.tensordot(w, probs, 1), labels) == pytest.approx(log_loss(p, labels), abs=1e-12)


# -- 6. compare -----------------------------------------------------------------------------------


def test_compare_numbers_equal_sql_over_the_raw_tables(applied):
    store, run_id, dataset_id = applied
    c = compare(store, store.run(run_id), REGISTRY)
    assert c.dist_split == "test"
    every = {(s, m) for s in STRATEGIES for m in (*MEMBERS, "ensemble")}
    assert {(r["strategy"], r["member"]) for r in c.rows} == every and len(c.rows) == len(every)
    selections = {(r["strategy"], r["member"]): r for r in store.query_dicts(
        "SELECT strategy, member, checkpoint, epoch FROM selections WHERE run_id = ?", [run_id])}
    for row in c.rows:
        key = (row["strategy"], row["member"])
        if row["kind"] == "member":
            assert row["checkpoint"] == selections[key]["checkpoint"], key
            assert row["epoch"] == selections[key]["epoch"], key
        else:
            assert row["checkpoint"] == row["strategy"] and row["epoch"] is None
        built = c.results.built.get((row["kind"], row["member"], row["checkpoint"]))
        if built is not None:  # computed in memory (checked below): its numbers from its probabilities
            labels = labels_of(store, dataset_id, "test", built.idx["test"])
            pred = built.probs["test"].argmax(axis=1)
            assert row["test_accuracy"] == pytest.approx(float(np.mean(pred == labels)), abs=1e-9), key
            shares = np.bincount(pred, minlength=4) / len(pred)
            true = np.bincount(labels, minlength=4) / len(labels)
            assert row["tvd"] == pytest.approx(0.5 * float(np.abs(shares - true).sum()), abs=1e-9), key
            continue
        acc = store.query(
            "SELECT avg((p.pred = e.label)::INT) FROM predictions p JOIN examples e "
            "ON e.dataset_id = ? AND e.split = p.split AND e.idx = p.idx "
            "WHERE p.run_id = ? AND p.kind = ? AND p.member = ? AND p.checkpoint = ? AND p.split = 'test'",
            [dataset_id, run_id, row["kind"], row["member"], row["checkpoint"]])[1][0][0]
        assert row["test_accuracy"] == pytest.approx(acc, abs=1e-9), key
        tvd = store.query(
            """
            WITH t AS (SELECT label AS c, count(*) / sum(count(*)) OVER () AS share FROM examples
                       WHERE dataset_id = ? AND split = 'test' GROUP BY label),
                 p AS (SELECT pred AS c, count(*) / sum(count(*)) OVER () AS share FROM predictions
                       WHERE run_id = ? AND kind = ? AND member = ? AND checkpoint = ? AND split = 'test'
                       GROUP BY pred)
            SELECT 0.5 * sum(abs(coalesce(p.share, 0) - coalesce(t.share, 0))) FROM t FULL OUTER JOIN p USING (c)
            """,
            [dataset_id, run_id, row["kind"], row["member"], row["checkpoint"]])[1][0][0]
        assert row["tvd"] == pytest.approx(tvd, abs=1e-9), key
    # the ensembles compare computed for the other strategies are right too, and none was stored
    stored = {r[0] for r in store.query("SELECT DISTINCT checkpoint FROM metrics WHERE run_id = ? "
                                        "AND kind = 'ensemble' AND member = 'ensemble'", [run_id])[1]}
    assert stored == {"best_eval_accuracy"}  # apply's own: compare wrote nothing
    computed = {key[2]: ens for key, ens in c.results.built.items()}
    assert set(computed) == {s for s in STRATEGIES if s != "best_eval_accuracy"}
    check_ensemble_by_hand(store, run_id, dataset_id, "ensemble", "best_eval_accuracy")
    for strategy, ens in computed.items():
        check_computed_ensemble(store, run_id, dataset_id, ens)
        row = next(r for r in c.rows if r["strategy"] == strategy and r["kind"] == "ensemble")
        assert row["test_accuracy"] == ens.metrics["test_accuracy"]


def check_computed_ensemble(store: Store, run_id: str, dataset_id: str, ens) -> None:
    """An ensemble computed in memory: the weighted mean of its members' stored probabilities with its
    weights (fitted on valid: no other simplex weights give a lower validation log-loss), and its
    accuracy and log-loss those of its probabilities."""
    for split in ("valid", "test"):
        expected = 0.0
        for member, checkpoint, w in zip(ens.members, ens.checkpoints, ens.weights):
            idx, probs = stored_probs(store, run_id, member, checkpoint, split)
            expected = expected + w * probs
        np.testing.assert_array_equal(ens.idx[split], idx)
        np.testing.assert_allclose(ens.probs[split], expected, atol=1e-6)
        labels = labels_of(store, dataset_id, split, idx)
        got = ens.probs[split].astype(np.float64)
        assert ens.metrics[f"{'eval' if split == 'valid' else split}_accuracy"] == pytest.approx(
            float(np.mean(got.argmax(axis=1) == labels)), abs=1e-12)
        nll = float(-np.mean(np.log(got[np.arange(len(labels)), labels])))
        assert ens.metrics[f"{'eval' if split == 'valid' else split}_log_loss"] == pytest.approx(nll, abs=1e-5)
        if split == "valid":  # the fitted weights are no worse than equal ones or any member alone
            members = np.stack([stored_probs(store, run_id, m, c, split)[1] for m, c in zip(ens.members,
                                                                                         ens.checkpoints)])
            for w in [np.full(len(members), 1 / len(members)), *np.eye(len(members))]:
                assert nll <= log_loss(np.tensordot(w, members, 1), labels) + 1e-9


def test_compare_cli_table_json_and_csv(applied):
    store, run_id, _ = applied
    code, out, err = cli("compare", "--store", store.path)
    assert code == 0, err
    assert run_id in out
    for strategy in ("best_eval_accuracy (spec)", "swa", "last", "best_eval_loss"):  # the default's
        assert strategy in out
    assert "best_eval_f1_macro" not in out
    code, out, err = cli("compare", "--store", store.path, "--all")
    assert code == 0, err
    for strategy in STRATEGIES:
        assert strategy in out

    code, out, err = cli("compare", run_id, "--store", store.path, "--format", "json")
    assert code == 0, err
    records = json.loads(out)
    pairs = [(r["strategy"], r["member"]) for r in records]
    assert sorted(pairs) == sorted((s, m) for s in STRATEGIES for m in (*MEMBERS, "ensemble"))

    code, out, err = cli("compare", run_id, "--store", store.path, "--format", "csv")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == len(records)
    assert {"strategy", "member", "test_accuracy", "tvd"} <= set(rows[0])
    by_pair = {(r["strategy"], r["member"]): r for r in records}
    for r in rows:
        assert float(r["test_accuracy"]) == pytest.approx(by_pair[(r["strategy"], r["member"])]["test_accuracy"])


# -- 7. runner ensemble ---------------------------------------------------------------------------


def test_ensemble_cli_given_fitted_and_subset(applied):
    store, run_id, dataset_id = applied

    code, out, err = cli("ensemble", run_id, "--weights", "5,3,2", "--store", store.path)
    assert code == 0, err
    name = "w=0.5,0.3,0.2"
    weights = ensemble_weights(store, run_id, name, "best_eval_accuracy")
    assert [(w["member"], w["method"]) for w in weights] == [(m, "given") for m in MEMBERS]
    np.testing.assert_allclose([w["weight"] for w in weights], [0.5, 0.3, 0.2], atol=1e-12)
    check_ensemble_by_hand(store, run_id, dataset_id, name, "best_eval_accuracy")

    code, out, err = cli("ensemble", run_id, "--weights", "fit", "--checkpoint", "swa", "--store", store.path)
    assert code == 0, err
    weights = ensemble_weights(store, run_id, "ensemble", "swa")  # the spec's own weighting: `ensemble`
    assert {w["method"] for w in weights} == {"fit"} and {w["member_checkpoint"] for w in weights} == {"swa"}
    assert sum(w["weight"] for w in weights) == pytest.approx(1)
    check_ensemble_by_hand(store, run_id, dataset_id, "ensemble", "swa")

    code, out, err = cli("ensemble", run_id, "--members", "a,b", "--store", store.path)
    assert code == 0, err
    name = "equal[a+b]"
    weights = ensemble_weights(store, run_id, name, "best_eval_accuracy")
    assert [(w["member"], w["weight"]) for w in weights] == [("a", 0.5), ("b", 0.5)]
    check_ensemble_by_hand(store, run_id, dataset_id, name, "best_eval_accuracy")


def test_ensemble_cli_bad_input_exits_2_and_leaves_the_store_alone(applied):
    store, run_id, _ = applied
    before = digest(store.path)

    code, out, err = cli("ensemble", run_id, "--weights", "0.5,0.5", "--store", store.path)
    assert code == 2
    assert "2 weights for 3 members" in err
    assert "Traceback" not in err + out
    assert digest(store.path) == before

    code, out, err = cli("ensemble", run_id, "--members", "a,nope", "--store", store.path)
    assert code == 2
    assert "nope" in err and "Traceback" not in err + out
    assert digest(store.path) == before

    code, out, err = cli("ensemble", run_id, "--weights", "0.5,x,1", "--store", store.path)
    assert code == 2 and "--weights" in err
    assert digest(store.path) == before
