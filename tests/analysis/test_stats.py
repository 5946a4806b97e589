"""Uncertainty over seeds (runner.analysis.stats) and `runner compare` of a run with replicas (runner.analysis.compare_seeds).

The bootstrap against known answers: identical strategies give exactly [0, 0], always right against
always wrong exactly +1, swapping the strategies mirrors the interval, an example effect shared by
every replica is not averaged away, and the interval covers the true difference about as often as it
says on synthetic crossed (seed x example) data. Then three tiny replica runs (the same spec with other
member seeds, tied by Store.set_repeat): compare's tables over seeds, and its numbers recomputed from
the store.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from runner.analysis.stats import paired_bootstrap, spread
from runner.core.maths import correct, nll
from runner.store import Store

# -- runner.analysis.stats --------------------------------------------------------------------------------


def test_spread_is_mean_sample_sd_min_max_of_the_values_present():
    s = spread([0.7, None, 0.8, float("nan"), 0.9])
    assert s.n == 3 and s.mean == pytest.approx(0.8) and s.sd == pytest.approx(0.1)
    assert (s.min, s.max) == (0.7, 0.9)
    one = spread([0.5])
    assert one.n == 1 and one.mean == 0.5 and one.sd is None
    assert spread([None]).n == 0 and spread([]).mean is None


def test_identical_strategies_give_exactly_zero():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 2, size=(3, 50)).astype(float)
    iv = paired_bootstrap(a, a.copy())
    assert (iv.estimate, iv.low, iv.high) == (0.0, 0.0, 0.0)
    assert iv.p_le_zero == 1.0 and iv.replicas == 3 and iv.examples == 50 and iv.resamples == 2000


def test_always_right_against_always_wrong_is_plus_one():
    iv = paired_bootstrap(np.ones((4, 30)), np.zeros((4, 30)))
    assert (iv.estimate, iv.low, iv.high, iv.p_le_zero) == (1.0, 1.0, 1.0, 0.0)


def test_scores_of_probabilities():
    probs = np.array([[0.7, 0.3], [0.4, 0.6], [0.5, 0.5]])
    labels = np.array([0, 0, 0])
    assert correct(probs, labels).tolist() == [1.0, 0.0, 1.0]  # a tie goes to the first class, as argmax
    assert nll(probs, labels) == pytest.approx(-np.log([0.7, 0.4, 0.5]))
    both = np.stack([probs, probs[::-1]])  # (replicas, examples, classes)
    assert correct(both, labels).shape == (2, 3)


def test_seeded_deterministic_and_antisymmetric():
    rng = np.random.default_rng(1)
    a, b = rng.random((3, 40)), rng.random((3, 40))
    assert paired_bootstrap(a, b, seed=5) == paired_bootstrap(a, b, seed=5)
    ab, ba = paired_bootstrap(a, b), paired_bootstrap(b, a)
    assert ba.estimate == pytest.approx(-ab.estimate)
    assert (ba.low, ba.high) == pytest.approx((-ab.high, -ab.low))
    assert paired_bootstrap(a, b, resamples=100, level=0.5).resamples == 100
    with pytest.raises(ValueError):
        paired_bootstrap(a, b[:, :10])


def test_an_example_effect_shared_by_every_replica_is_not_averaged_away():
    """Five replicas that agree on every example carry no more information about the examples than
    one: the interval is as wide as one replica's, not sqrt(5) times narrower (which resampling the
    examples anew for each replica would give)."""
    rng = np.random.default_rng(2)
    row = rng.normal(0.1, 1.0, size=200)
    one = paired_bootstrap(row, np.zeros_like(row))
    five = paired_bootstrap(np.tile(row, (5, 1)), np.zeros((5, 200)))
    ratio = (five.high - five.low) / (one.high - one.low)
    assert 0.85 < ratio < 1.15


def test_seed_variance_widens_the_interval():
    """Replicas that differ by a constant each (a seed effect, nothing per example): the interval is
    about the spread of the replicas' means, which resampling the examples alone would miss (it would
    be [mean, mean])."""
    rows = np.array([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7])[:, None] + np.zeros((8, 100))
    iv = paired_bootstrap(rows, np.zeros_like(rows))
    assert iv.estimate == pytest.approx(0.35)
    se = rows[:, 0].std(ddof=1) / math.sqrt(8)
    assert iv.low < 0.35 - 1.5 * se and iv.high > 0.35 + 1.5 * se
    assert iv.low > 0.35 - 3 * se and iv.high < 0.35 + 3 * se


def test_coverage_on_synthetic_crossed_data():
    """Data with a seed effect, an example effect shared by the seeds, and noise: the 90% interval
    covers the true difference at least about 90% of the time (the crossed bootstrap errs wide)."""
    rng = np.random.default_rng(3)
    truth, hits, sims = 0.05, 0, 120
    for s in range(sims):
        d = (truth + rng.normal(0, 0.03, (6, 1)) + rng.normal(0, 0.15, (1, 150))
             + rng.normal(0, 0.2, (6, 150)))
        iv = paired_bootstrap(d, np.zeros_like(d), resamples=400, level=0.9, seed=s)
        hits += iv.low <= truth <= iv.high
    assert 0.84 <= hits / sims <= 1.0


# -- runner compare over replicas ----------------------------------------------------------------

SPEC = """
name = "{name}"
seed = 5

[data]
source = "synthetic"
valid = 0.25
test = 0.3
max_length = 32

[data.options]
size = 300

[train]
epochs = 2
batch_size = 16
learning_rate = 1e-2
lr_scheduler = "constant"

[ensemble]
weights = "equal"

[[members]]
name = "a"
backbone = "gru"
seed = {seed_a}
options = {{ embedding_dim = 32, hidden_size = 32, vocab_size = 500 }}

[[members]]
name = "b"
backbone = "gru"
seed = {seed_b}
options = {{ embedding_dim = 32, hidden_size = 24, vocab_size = 500 }}
"""

REPO = Path(__file__).resolve().parents[2]
SHOWN = ["best_eval_loss", "best_eval_accuracy", "last", "swa"]


def cli(*args):
    from typer.testing import CliRunner

    from runner.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def replicated(tmp_path_factory):
    folder = tmp_path_factory.mktemp("replicas")
    (folder / "plugins").mkdir()  # the GRU backbone plugin: tiny scratch BERTs learn nothing from 300 examples
    shutil.copy(REPO / "plugins" / "gru_encoder.py", folder / "plugins")
    store = folder / "results.duckdb"
    ids = []
    for k in range(3):
        spec = folder / f"r{k}.toml"
        spec.write_text(SPEC.format(name="st" if k == 0 else f"st-r{k}", seed_a=11 + 1000 * k, seed_b=12 + 1000 * k))
        code, _, err = cli("apply", spec, "--store", store)
        assert code == 0, err
        ids.append(Store(store).run("st" if k == 0 else f"st-r{k}").run_id)
    before = {f: cli("compare", "st", "--store", store, "--strategies", ",".join(SHOWN), "--format", f)
              for f in ("table", "json")}
    for k, run_id in enumerate(ids):
        Store(store).set_repeat(run_id, "grp", k)
    return store, ids, before


def by_hand(store, run_id, strategy):
    """(probs, labels) on test of the run's ensemble under `strategy`, from its members' stored
    probabilities at the checkpoints `selections` holds for it, equal weights (the spec's): the
    ensembles apply did not store, computed independently of runner.posthoc."""
    st = Store(store)
    picks = dict(st.query("SELECT member, checkpoint FROM selections WHERE run_id = ? AND strategy = ?",
                          [run_id, strategy])[1])
    probs, labels = [], None
    for member in sorted(picks):
        got = st.query(
            "SELECT p.probs, e.label FROM predictions p JOIN runs r USING (run_id) JOIN examples e "
            "ON e.dataset_id = r.dataset_id AND e.split = 'test' AND e.idx = p.idx "
            "WHERE p.run_id = ? AND p.kind = 'member' AND p.member = ? AND p.checkpoint = ? "
            "AND p.split = 'test' ORDER BY p.idx", [run_id, member, picks[member]])[1]
        probs.append(np.array([r[0] for r in got], dtype=np.float32))
        labels = np.array([r[1] for r in got])
    mean = np.tensordot(np.full(len(probs), 1 / len(probs)), np.stack(probs), axes=1).astype(np.float32)
    return mean / mean.sum(axis=1, keepdims=True), labels


def recomputed(store, ids, strategy):
    """Each replica's per-example test correctness of its ensemble under `strategy`."""
    return np.stack([correct(*by_hand(store, run_id, strategy)) for run_id in ids])


def stored(store, ids, strategy, name):
    """Each replica's test accuracy or log-loss of its ensemble under `strategy`, by hand."""
    out = []
    for run_id in ids:
        probs, labels = by_hand(store, run_id, strategy)
        out.append(float(np.mean(correct(probs, labels))) if name == "accuracy" else float(np.mean(nll(probs, labels))))
    return out


def test_compare_reports_strategies_over_seeds_with_paired_intervals(replicated):
    store, ids, before = replicated
    code, out, err = cli("compare", "st", "--store", store, "--strategies", ",".join(SHOWN), "--format", "json")
    assert code == 0, err
    records = json.loads(out)
    plain = json.loads(before["json"][1])
    assert [{k: r[k] for k in plain[0]} for r in records[:len(plain)]] == plain  # the run's own rows stay
    seeds = {r["strategy"]: r for r in records if r["kind"] == "seeds"}
    boot = {r["strategy"]: r for r in records if r["kind"] == "bootstrap"}
    assert list(seeds) == SHOWN
    assert set(boot) == set(SHOWN) - {"best_eval_accuracy"}  # the run's selection is the baseline
    for s in ("best_eval_loss", "best_eval_accuracy", "last"):
        acc, loss = stored(store, ids, s, "accuracy"), stored(store, ids, s, "log_loss")
        r = seeds[s]
        assert r["replicas"] == 3 and r["member"] == "ensemble"
        assert r["test_accuracy"] == pytest.approx(np.mean(acc)) and r["test_accuracy_sd"] == pytest.approx(
            np.std(acc, ddof=1))
        assert (r["test_accuracy_min"], r["test_accuracy_max"]) == pytest.approx((min(acc), max(acc)))
        assert r["test_log_loss"] == pytest.approx(np.mean(loss))
        assert r["test_log_loss_sd"] == pytest.approx(np.std(loss, ddof=1))
    assert seeds["swa"]["replicas"] == 0 and boot["swa"]["replicas"] == 0  # no [swa]: nothing to show
    base = recomputed(store, ids, "best_eval_accuracy")
    for s in ("best_eval_loss", "last"):
        iv = paired_bootstrap(recomputed(store, ids, s), base)
        b = boot[s]
        assert b["baseline"] == "best_eval_accuracy" and b["replicas"] == 3 and b["examples"] == base.shape[1]
        assert (b["test_accuracy_diff"], b["test_accuracy_diff_low"], b["test_accuracy_diff_high"],
                b["p_diff_le_0"]) == pytest.approx((iv.estimate, iv.low, iv.high, iv.p_le_zero))
        # the estimate is the difference of the mean stored accuracies
        diff = np.mean(stored(store, ids, s, "accuracy")) - np.mean(stored(store, ids, "best_eval_accuracy",
                                                                           "accuracy"))
        assert b["test_accuracy_diff"] == pytest.approx(diff, abs=1e-6)
        assert b["test_accuracy_diff_low"] <= b["test_accuracy_diff"] <= b["test_accuracy_diff_high"]
    widths = [boot[s]["test_accuracy_diff_high"] - boot[s]["test_accuracy_diff_low"] for s in ("best_eval_loss", "last")]
    assert max(widths) > 0  # the strategies differ somewhere: the comparison above is not of zeros

    # every replica is reported from any of them, and csv has the same rows
    code, again, _ = cli("compare", ids[2], "--store", store, "--strategies", ",".join(SHOWN), "--format", "json")
    assert [r for r in json.loads(again) if r["kind"] in ("seeds", "bootstrap")] == list(seeds.values()) + list(
        boot.values())
    code, csv_out, _ = cli("compare", "st", "--store", store, "--strategies", ",".join(SHOWN), "--format", "csv")
    lines = csv_out.strip().splitlines()
    assert code == 0 and len(lines) == 1 + len(records) and "test_accuracy_diff_low" in lines[0]


def test_the_table_shows_both_tables_after_the_runs_own(replicated):
    store, ids, before = replicated
    code, out, err = cli("compare", "st", "--store", store, "--strategies", ",".join(SHOWN))
    assert code == 0, err
    assert out.startswith(before["table"][1].rstrip("\n"))  # the run's own table, unchanged, first
    assert "over 3 seeds" in out and "minus best_eval_accuracy's" in out and "P(Δ ≤ 0)" in out
    acc = stored(store, ids, "best_eval_loss", "accuracy")
    assert f"{np.mean(acc):.4f} ± {np.std(acc, ddof=1):.4f}" in out
    print(out)


def test_replica_ensembles_missing_are_computed_never_stored(replicated):
    """A strategy whose ensemble no replica built at apply time (`last`: apply builds only the
    selected one) is computed for every replica by compare, and stored by none."""
    store, ids, _ = replicated
    code, _, err = cli("compare", "st", "--store", store, "--strategies", ",".join(SHOWN), "--format", "json")
    assert code == 0, err
    for run_id in ids:
        have = {r[0] for r in Store(store).query("SELECT DISTINCT checkpoint FROM metrics WHERE run_id = ? AND "
                                                 "kind = 'ensemble'", [run_id])[1]}
        assert have == {"best_eval_accuracy"}


def test_a_run_alone_in_its_group_is_unchanged(replicated, tmp_path):
    """A group of one replica is a plain run: compare prints exactly what it printed before."""
    store, ids, before = replicated
    copy = tmp_path / "results.duckdb"
    shutil.copy(store, copy)
    Store(copy).set_repeat(ids[0], "solo", 0)
    for f in ("table", "json"):
        code, out, err = cli("compare", "st", "--store", copy, "--strategies", ",".join(SHOWN), "--format", f)
        assert code == 0, err
        assert out == before[f][1]
    assert "seeds" not in before["table"][1]
