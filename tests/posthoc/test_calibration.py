"""Calibration from stored probabilities: `runner.posthoc.calibration` (the fit), `runner.posthoc.calibrate` (a
run's checkpoints, the store) and `runner calibrate` (the CLI).

The fit is checked against known answers: probabilities sharpened by a known temperature, and shifted
by a known per-class bias, must give that temperature and bias back. End to end, two real runs:
a deliberately over-confident model (cross-entropy without label smoothing, a high learning rate, the
last of several epochs on a tiny split) whose validation log-loss calibration must lower with T > 1,
and a model trained with focal alpha = "inverse_frequency" that over-predicts the minority class,
which the prior correction must bring back towards the true class shares. Every stored number is
recomputed by hand from the raw `predictions` and `examples` rows.
"""

from __future__ import annotations

import csv
import hashlib
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from runner.cli import app
from runner.core.maths import log_loss
from runner.posthoc import calibration
from runner.posthoc.calibrate import lookup
from runner.store import Store

# -- the fit, on synthetic probabilities with known answers -------------------------------------------


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def synthetic(n: int = 20000, k: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(true logits, labels drawn from their softmax): a perfectly calibrated model and its data."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, k)) * 1.5
    p = softmax(logits)
    labels = (p.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
    return logits, labels


def test_fit_recovers_a_known_temperature():
    logits, labels = synthetic()
    for t in (0.5, 2.5):  # 2.5: over-confident (sharpened); 0.5: under-confident
        stored = softmax(t * logits)  # log p / t = the calibrated logits again
        fit = calibration.fit(stored, labels, "temperature")
        assert fit.temperature == pytest.approx(t, rel=0.05)
        assert fit.bias is None
        assert fit.log_loss_after < fit.log_loss_before
        assert fit.log_loss_after == pytest.approx(log_loss(softmax(logits), labels), abs=0.005)


def test_fit_recovers_a_known_temperature_and_bias():
    logits, labels = synthetic(seed=1)
    t, bias = 2.0, np.array([0.6, -1.2, 0.1, 0.5])
    stored = softmax(t * (logits - bias))  # log p / t + bias = the calibrated logits (up to a constant)
    fit = calibration.fit(stored, labels, "temperature+bias")
    assert fit.temperature == pytest.approx(t, rel=0.05)
    assert fit.bias.sum() == pytest.approx(0.0, abs=1e-9)
    np.testing.assert_allclose(fit.bias, bias - bias.mean(), atol=0.08)
    only_t = calibration.fit(stored, labels, "temperature")
    assert fit.log_loss_after < only_t.log_loss_after < fit.log_loss_before


def test_a_calibrated_model_is_left_alone_and_the_fit_is_deterministic():
    logits, labels = synthetic(seed=2)
    stored = softmax(logits)
    a = calibration.fit(stored, labels, "temperature+bias")
    b = calibration.fit(stored.copy(), labels.copy(), "temperature+bias")
    assert a.temperature == b.temperature and np.array_equal(a.bias, b.bias)
    assert a.temperature == pytest.approx(1.0, abs=0.05)
    assert np.abs(a.bias).max() < 0.08
    assert a.log_loss_after <= a.log_loss_before


def test_temperature_keeps_every_prediction_and_apply_inverts_nothing_at_t_1():
    logits, labels = synthetic(n=2000, seed=3)
    stored = softmax(3 * logits)
    fit = calibration.fit(stored, labels, "temperature")
    after = calibration.apply(stored, fit.temperature)
    assert np.array_equal(after.argmax(axis=1), stored.argmax(axis=1))
    np.testing.assert_allclose(calibration.apply(stored, 1.0), stored, atol=1e-6)
    np.testing.assert_allclose(after.sum(axis=1), 1.0, atol=1e-6)


def test_prior_correction_removes_an_over_predicted_minority():
    """A model that adds log 4 to the minority class's logit (as inverse-frequency weights do)
    predicts it far too often; the fitted bias takes about log 4 back and the shares return."""
    rng = np.random.default_rng(4)
    prior = np.array([0.3, 0.1, 0.3, 0.3])
    n = 20000
    labels = rng.choice(4, size=n, p=prior)
    logits = rng.normal(size=(n, 4)) + 1.2 * np.eye(4)[labels] + np.log(prior)  # a calibrated model
    stored = softmax(logits + np.array([0.0, np.log(4.0), 0.0, 0.0]))

    def tvd(p):
        return 0.5 * np.abs(np.bincount(p.argmax(axis=1), minlength=4) / n - prior).sum()

    fit = calibration.fit(stored, labels, "temperature+bias")
    after = calibration.apply(stored, fit.temperature, fit.bias)
    assert (stored.argmax(axis=1) == 1).mean() > 2 * prior[1]
    assert tvd(after) < tvd(stored) / 2
    assert fit.bias[1] - fit.bias[[0, 2, 3]].mean() == pytest.approx(-np.log(4.0), abs=0.1)
    # temperature alone cannot move an argmax, so it cannot fix the shares
    assert tvd(calibration.apply(stored, calibration.fit(stored, labels).temperature)) == tvd(stored)


def test_degenerate_inputs_give_finite_fits():
    labels = np.array([0, 0, 2, 2, 0, 2])  # class 1 and 3 never occur in valid
    probs = np.tile([0.4, 0.3, 0.2, 0.1], (6, 1))
    for method in calibration.METHODS:
        fit = calibration.fit(probs, labels, method)
        assert np.isfinite(fit.temperature) and fit.temperature > 0
        assert fit.bias is None or np.isfinite(fit.bias).all()
        assert fit.log_loss_after <= fit.log_loss_before + 1e-12
    uniform = np.full((5, 3), 1 / 3)  # every row the same: T cannot be identified, and must not blow up
    fit = calibration.fit(uniform, np.array([0, 1, 2, 0, 1]), "temperature")
    assert np.isfinite(fit.temperature) and fit.log_loss_after == pytest.approx(np.log(3))
    separable = np.full((30, 3), 0.2)  # every argmax right: the NLL falls towards 0 as T does
    separable[np.arange(30), np.arange(30) % 3] = 0.6
    fit = calibration.fit(separable, np.arange(30) % 3, "temperature+bias")
    assert 0 < fit.temperature < 0.2 and np.isfinite(fit.bias).all() and fit.log_loss_after < 1e-6
    with pytest.raises(ValueError):
        calibration.fit(uniform, np.array([0, 1, 2, 0, 1]), "platt")


def test_ece_by_hand():
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.3, 0.7]])
    labels = np.array([0, 1, 0, 1])
    # bins of width 1/15: 0.9 and 0.9 together (accuracy 1/2, confidence 0.9); 0.6 alone (1 vs 0.6);
    # 0.7 alone (1 vs 0.7)
    expected = (2 * abs(0.5 - 0.9) + abs(1 - 0.6) + abs(1 - 0.7)) / 4
    assert calibration.ece(probs, labels) == pytest.approx(expected)
    assert calibration.ece(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([0, 1])) == 0.0
    # a confidence exactly on a bin edge goes to the bin below: (1/15, 2/15]
    edge = np.array([[2 / 15, 1 - 2 / 15]])
    assert calibration.ece(edge[:, ::-1], np.array([0])) == pytest.approx(2 / 15)


# -- real runs through the CLI ---------------------------------------------------------------------

OVERCONFIDENT = """
name = "overconfident"
seed = 3

[data]
source = "synthetic"
valid = 0.25
test = 0.25
max_length = 48

[data.options]
size = 240

[train]
epochs = 6
batch_size = 8
learning_rate = 5e-3
lr_scheduler = "constant"

[loss]
name = "cross_entropy"

[selection]
metric = "eval_accuracy"

[swa]
k = 2

[ensemble]
weights = "equal"

[[members]]
name = "a"
backbone = "scratch"
options = { architecture = "bert", hidden_size = 32, layers = 1, heads = 2, vocab_size = 1000 }

[[members]]
name = "b"
backbone = "scratch"
seed = 9
options = { architecture = "bert", hidden_size = 32, layers = 1, heads = 2, vocab_size = 1000 }
"""

# The quickstart's loss with the notebook's mistake, alpha = inverse class frequency, on reviews where
# "mixed" words occur in 40% of one majority class and 80% of the minority class: a calibrated model
# says the majority class for them (0.3 * 0.4 > 0.1 * 0.8); inverse-frequency weights tip it to the minority.
INVERSE_ALPHA = """
name = "inverse-alpha"
seed = 1

[data]
source = "csv"
train = "train.csv"
valid = 0.25
test = 0.25
labels = ["alpha", "beta", "gamma", "delta"]

[train]
epochs = 5
batch_size = 16
learning_rate = 5e-3
lr_scheduler = "constant"

[loss]
name = "focal"
alpha = "inverse_frequency"
gamma = 2.0
label_smoothing = 0.1
# The model this test needs over-predicts the minority more than twice over. On these 800 reviews
# that is the setup before the subword default (whole-word vocabulary, alpha_c on every smoothed term); today's
# defaults give 1.9 times on valid, and calibration then has less to take back.
modulation = "per_class"

[[members]]
name = "a"
backbone = "scratch"
options = { hidden_size = 32, layers = 1, heads = 2, vocab_size = 500, tokenizer = "words" }
"""
MINORITY = 1
SHARES = [0.3, 0.1, 0.3, 0.3]


def write_reviews(path: Path, n: int = 800) -> None:
    rng = random.Random(0)
    names = ["alpha", "beta", "gamma", "delta"]
    clear = {"alpha": ["awful", "terrible", "dreadful"], "beta": ["dull", "flat", "slow"],
             "gamma": ["nice", "decent", "pleasant"], "delta": ["brilliant", "superb", "stunning"]}
    mixed = ["mixed", "unsure", "middling"]
    filler = ["today", "again", "overall", "honestly", "really", "at times", "for me", "in parts"]
    labels = [name for name, share in zip(names, SHARES) for _ in range(round(share * n))]
    rng.shuffle(labels)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for label in labels:
            p_mixed = {"alpha": 0.4, "beta": 0.8}.get(label, 0.0)
            word = rng.choice(mixed) if rng.random() < p_mixed else rng.choice(clear[label])
            w.writerow([f"the film was {word}, {rng.choice(filler)} {rng.choice(filler)}", label])


def cli(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def apply(folder: Path, spec: str) -> Path:
    (folder / "spec.toml").write_text(spec, encoding="utf-8")
    code, out, err = cli("apply", folder / "spec.toml", "--store", folder / "results.duckdb")
    assert code == 0, err + out
    return folder / "results.duckdb"


@pytest.fixture(scope="module")
def overconfident(tmp_path_factory) -> Path:
    return apply(tmp_path_factory.mktemp("overconfident"), OVERCONFIDENT)


@pytest.fixture(scope="module")
def inverse_alpha(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("inverse_alpha")
    write_reviews(folder / "train.csv")
    return apply(folder, INVERSE_ALPHA)


def copy(store: Path, tmp_path: Path) -> Store:
    """A copy of a fixture's store for one test (calibrate writes)."""
    target = tmp_path / "results.duckdb"
    shutil.copy(store, target)
    return Store(target)


def run_id(store: Store) -> str:
    return store.query("SELECT run_id FROM runs")[1][0][0]


def calibrations(store: Store) -> list[dict]:
    return store.query_dicts("SELECT * FROM calibrations ORDER BY kind, member, checkpoint, method")


def raw(store: Store, kind: str, member: str, checkpoint: str, split: str):
    """(probs, labels) straight from the `predictions` and `examples` rows."""
    rows = store.query(
        "SELECT p.probs, e.label FROM predictions p JOIN runs r USING (run_id) JOIN examples e "
        "ON e.dataset_id = r.dataset_id AND e.split = p.split AND e.idx = p.idx WHERE p.kind = ? AND p.member = ? "
        "AND p.checkpoint = ? AND p.split = ? ORDER BY p.idx", [kind, member, checkpoint, split])[1]
    return np.array([r[0] for r in rows], dtype=np.float64), np.array([r[1] for r in rows])


def metric(store: Store, kind: str, member: str, checkpoint: str, split: str, name: str) -> float:
    rows = store.query("SELECT value, epoch FROM metrics WHERE kind = ? AND member = ? AND checkpoint = ? "
                       "AND split = ? AND name = ?", [kind, member, checkpoint, split, name])[1]
    assert len(rows) == 1, (kind, member, checkpoint, split, name, rows)
    return rows[0][0]


def test_calibration_lowers_the_validation_log_loss_of_an_overconfident_model(overconfident, tmp_path):
    store = copy(overconfident, tmp_path)
    assert not store.query("SELECT * FROM metrics WHERE kind = 'ensemble' AND checkpoint = 'last'")[1]
    code, out, err = cli("calibrate", "--strategy", "last", "--store", store.path)
    assert code == 0, err + out
    assert "building the spec's ensemble over last" in err
    rows = calibrations(store)
    assert [(r["kind"], r["member"], r["checkpoint"]) for r in rows] == [
        ("ensemble", "ensemble", "last"), ("member", "a", "epoch-6"), ("member", "a", "swa"),
        ("member", "b", "epoch-6"), ("member", "b", "swa")]
    for r in rows:
        assert r["method"] == "temperature" and r["bias"] is None
        assert r["temperature"] > 1.2, r  # over-confident: the fit softens
        assert r["valid_log_loss_after"] < r["valid_log_loss_before"] - 0.01, r
        before = metric(store, r["kind"], r["member"], r["checkpoint"], "valid", "ece@none")
        after = metric(store, r["kind"], r["member"], r["checkpoint"], "valid", "ece@temperature")
        assert after < before, r
    assert "temperature" in out and "stored" in out


def test_stored_numbers_match_a_recomputation_from_the_raw_rows(overconfident, tmp_path):
    store = copy(overconfident, tmp_path)
    code, out, err = cli("calibrate", "--method", "temperature+bias", "--store", store.path)
    assert code == 0, err + out
    rows = calibrations(store)
    assert {(r["kind"], r["checkpoint"]) for r in rows if r["member"] == "ensemble"} == {
        ("ensemble", "best_eval_accuracy")}
    assert len(rows) == 1 + 2 * 2  # each member's selected checkpoint and SWA, and the ensemble
    for r in rows:
        key = (r["kind"], r["member"], r["checkpoint"])
        bias = np.array(r["bias"])
        assert len(bias) == 4 and abs(bias.sum()) < 1e-9
        valid, valid_labels = raw(store, *key, "valid")
        test, test_labels = raw(store, *key, "test")
        assert r["valid_log_loss_before"] == pytest.approx(log_loss(valid, valid_labels), abs=1e-9)
        assert r["valid_log_loss_before"] == pytest.approx(metric(store, *key, "valid", "log_loss"), abs=1e-6)
        cal_valid = calibration.apply(valid, r["temperature"], bias)
        cal_test = calibration.apply(test, r["temperature"], bias)
        assert r["valid_log_loss_after"] == pytest.approx(log_loss(cal_valid, valid_labels), abs=1e-6)
        assert r["valid_log_loss_after"] < r["valid_log_loss_before"]
        m = "@temperature+bias"
        assert metric(store, *key, "test", "log_loss" + m) == pytest.approx(
            log_loss(cal_test, test_labels), abs=1e-6)
        assert metric(store, *key, "test", "ece" + m) == pytest.approx(calibration.ece(cal_test, test_labels), abs=1e-6)
        assert metric(store, *key, "test", "ece@none") == pytest.approx(calibration.ece(test, test_labels), abs=1e-9)
        assert metric(store, *key, "test", "accuracy" + m) == pytest.approx(
            (cal_test.argmax(1) == test_labels).mean())
        shares = np.bincount(cal_test.argmax(1), minlength=4) / len(test)
        true = np.bincount(test_labels, minlength=4) / len(test)
        for i in range(4):
            assert metric(store, *key, "test", f"share_{i}" + m) == pytest.approx(shares[i])
        assert metric(store, *key, "test", "tvd" + m) == pytest.approx(0.5 * np.abs(shares - true).sum())
        found = lookup(store, run_id(store), *key)
        assert found[0] == r["temperature"] and np.array_equal(found[1], bias)
    # calibrate's rows never have an epoch, so no epoch record or strategy ever sees them
    assert not store.query("SELECT * FROM metrics WHERE name LIKE '%@%' AND epoch IS NOT NULL")[1]
    assert lookup(store, run_id(store), "member", "a", "epoch-99") is None


def test_calibrating_again_replaces_and_the_two_methods_sit_side_by_side(overconfident, tmp_path):
    store = copy(overconfident, tmp_path)

    def counts():
        return (store.query("SELECT method, count(*) FROM calibrations GROUP BY ALL ORDER BY ALL")[1],
                store.query("SELECT count(*) FROM metrics WHERE name LIKE '%@%'")[1][0][0],
                store.query("SELECT count(*) FROM metrics")[1][0][0])

    assert cli("calibrate", "--store", store.path)[0] == 0
    first = counts()
    first_rows = calibrations(store)
    assert cli("calibrate", "--store", store.path)[0] == 0
    assert counts() == first  # replaced, never duplicated
    assert [r["temperature"] for r in calibrations(store)] == [r["temperature"] for r in first_rows]
    assert cli("calibrate", "--method", "temperature+bias", "--store", store.path)[0] == 0
    methods, cal_metrics, _ = counts()
    assert methods == [("temperature", 5), ("temperature+bias", 5)]
    assert cal_metrics > first[1]
    # the default method's rows are untouched by the other method's
    assert [r["temperature"] for r in calibrations(store) if r["method"] == "temperature"] == \
        [r["temperature"] for r in first_rows]
    assert lookup(store, run_id(store), "ensemble", "ensemble", "best_eval_accuracy", "temperature")[1] is None


def test_epochs_and_compare_of_an_uncalibrated_run_are_unchanged(overconfident, tmp_path):
    store = copy(overconfident, tmp_path)
    rid = run_id(store)
    columns = store.query("SELECT * FROM epochs LIMIT 0")[0]
    epochs = store.query("SELECT * FROM epochs ORDER BY ALL")[1]
    code, before, err = cli("compare", "--store", store.path)
    assert code == 0 and "calibration" not in before
    code, before_json, _ = cli("compare", "--store", store.path, "--format", "json")
    assert cli("calibrate", "--method", "temperature+bias", "--store", store.path)[0] == 0
    assert store.query("SELECT * FROM epochs LIMIT 0")[0] == columns
    assert store.query("SELECT * FROM epochs ORDER BY ALL")[1] == epochs
    assert not {n for n in store.metric_names(rid) if "@" in n}
    code, after, err = cli("compare", "--store", store.path)
    assert code == 0 and "note:" not in err, err  # no "metrics no plugin registers" note for calibrate's rows
    assert after.startswith(before.rstrip("\n")) and "calibrations fitted on valid" in after
    assert cli("compare", "--store", store.path, "--format", "json")[1] == before_json


def test_rebuilding_an_ensemble_drops_its_calibration(overconfident, tmp_path):
    store = copy(overconfident, tmp_path)
    assert cli("calibrate", "--store", store.path)[0] == 0
    assert cli("ensemble", "--weights", "equal", "--store", store.path)[0] == 0  # the spec's ensemble, again
    kinds = [r["kind"] for r in calibrations(store)]
    assert kinds.count("ensemble") == 0 and kinds.count("member") == 4
    assert not store.query("SELECT * FROM metrics WHERE kind = 'ensemble' AND name LIKE '%@%'")[1]


def test_prior_correction_brings_an_over_predicted_minority_back(inverse_alpha, tmp_path):
    store = copy(inverse_alpha, tmp_path)
    code, out, err = cli("calibrate", "--method", "temperature+bias", "--store", store.path)
    assert code == 0, err + out
    (r,) = calibrations(store)
    key = (r["kind"], r["member"], r["checkpoint"])
    for split in ("valid", "test"):
        probs, labels = raw(store, *key, split)
        true = np.bincount(labels, minlength=4) / len(labels)
        before = np.bincount(probs.argmax(1), minlength=4) / len(labels)
        after = np.bincount(calibration.apply(probs, r["temperature"], r["bias"]).argmax(1), minlength=4) / len(labels)
        assert before[MINORITY] > 2 * true[MINORITY], (split, before, true)  # the notebook's finding
        assert after[MINORITY] < before[MINORITY] / 2, (split, after)
        tvd_before = metric(store, *key, split, "tvd@none")
        tvd_after = metric(store, *key, split, "tvd@temperature+bias")
        assert tvd_before == pytest.approx(0.5 * np.abs(before - true).sum())
        assert tvd_after < tvd_before / 2, (split, tvd_before, tvd_after)
    assert r["bias"][0] > r["bias"][MINORITY]  # "mixed" reviews go back from the minority to class 0
    assert "beta" in out and "bias" in out


@pytest.mark.parametrize("case", ["unknown run", "unfinished run", "unknown strategy", "unknown method",
                                  "valid without labels", "no validation predictions"])
def test_bad_input_exits_2_and_writes_nothing(case, overconfident, tmp_path):
    store = copy(overconfident, tmp_path)
    rid = run_id(store)
    args = ["calibrate", rid, "--store", store.path]
    expected = {"unknown run": "no-such-run", "unfinished run": "not finished", "unknown strategy": "--strategy",
                "unknown method": "--method", "valid without labels": "has no labels",
                "no validation predictions": "no stored validation predictions"}[case]
    if case == "unknown run":
        args[1] = "no-such-run"
    elif case == "unfinished run":
        with store.transaction() as con:
            con.execute("UPDATE runs SET status = 'running'")
    elif case == "unknown strategy":
        args += ["--strategy", "best_eval_acuracy"]
    elif case == "unknown method":
        args += ["--method", "platt"]
    elif case == "valid without labels":
        with store.transaction() as con:
            con.execute("UPDATE examples SET label = NULL WHERE split = 'valid'")
    else:  # as a refit run would be: trained on valid, so no validation predictions of its own
        from runner.store.rows import delete_predictions  # `predictions` is a view over the rows tables

        with store.transaction() as con:
            delete_predictions(con, "split = 'valid' AND member = 'b'", [])
    digest = hashlib.sha256(store.path.read_bytes()).hexdigest()
    code, out, err = cli(*args)
    assert code == 2, (case, out, err)
    assert err.startswith("error: ") and expected in err and "Traceback" not in err, err
    assert hashlib.sha256(store.path.read_bytes()).hexdigest() == digest
    assert not calibrations(store)


def test_json_output(overconfident, tmp_path):
    import json

    store = copy(overconfident, tmp_path)
    code, out, err = cli("calibrate", "--store", store.path, "--format", "json")
    assert code == 0, err
    records = json.loads(out)
    assert len(records) == 5
    first = records[0]
    assert first["kind"] == "member" and first["member"] == "a" and first["method"] == "temperature"
    assert first["eval_log_loss@temperature"] < first["eval_log_loss@none"]
