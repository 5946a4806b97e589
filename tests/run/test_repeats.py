"""`repeats = N` (runner.run.repeats): a spec trained N times with other member seeds on the same data,
each replica a run tied to the others by `runs.repeat_group`; and a sweep's trial with repeats, whose
objective is the mean over its replicas."""

from __future__ import annotations

import json

import pytest
from sweep_helpers import cli, rows, write_spec


def plain(spec_text: str) -> str:
    """The spec without its [sweep] tables."""
    return spec_text[:spec_text.index("[sweep]")] + spec_text[spec_text.index("[[members]]"):]


def test_repeats_train_replicas_with_other_seeds_on_the_same_data(tmp_path):
    spec = write_spec(tmp_path, name="rep", members=("a", "b"))
    text = plain(spec.read_text()).replace('seed = 3\n', 'seed = 3\nrepeats = 3\n', 1)
    path = tmp_path / "rep.toml"
    path.write_text(text)
    store = tmp_path / "results.duckdb"
    code, out, err = cli("apply", path, "--store", store)
    assert code == 0, err
    runs = rows(store, "SELECT run_id, name, dataset_id, repeat_group, repeat_index, status FROM runs "
                       "ORDER BY repeat_index")
    assert [r[1] for r in runs] == ["rep", "rep-r1", "rep-r2"] and {r[5] for r in runs} == {"finished"}
    assert len({r[2] for r in runs}) == 1  # the same data split
    assert len({r[3] for r in runs}) == 1 and runs[0][3] is not None and [r[4] for r in runs] == [0, 1, 2]
    seeds = rows(store, "SELECT r.repeat_index, m.member, m.seed FROM members m JOIN runs r USING (run_id) "
                        "ORDER BY 1, 2")
    by = {(k, m): s for k, m, s in seeds}
    for k in (1, 2):
        for m in ("a", "b"):
            assert by[(k, m)] == by[(0, m)] + 1000 * k
    # the replicas differ (other seeds), replica 0 is the run the spec makes without `repeats`
    accs = rows(store, "SELECT run_id, value FROM metrics WHERE kind = 'member' AND member = 'a' AND split = 'valid' "
                       "AND name = 'loss' AND epoch = 1 ORDER BY run_id")
    assert len({round(v, 6) for _, v in accs}) == 3
    without = tmp_path / "without.toml"
    without.write_text(plain(spec.read_text()).replace('name = "sw"', 'name = "rep"'))
    code, _, err = cli("apply", without, "--store", store)
    assert code == 0 and "already finished" in err and runs[0][0] in err
    # applying again trains nothing
    code, _, err = cli("apply", path, "--store", store)
    assert code == 0 and rows(store, "SELECT count(*) FROM runs")[0][0] == 3

    # the export's model card says why the strategy: each strategy over the replicas, as `compare` has it
    code, out, err = cli("compare", "rep", "--store", store, "--format", "json")
    assert code == 0, err
    records = json.loads(out)
    spreads = {r["strategy"]: r for r in records if r.get("kind") == "seeds"}
    diffs = {r["strategy"]: r for r in records if r.get("kind") == "bootstrap"}
    assert spreads and diffs
    code, _, err = cli("export", "rep", tmp_path / "model", "--store", store)
    assert code == 0, err
    card = (tmp_path / "model" / "README.md").read_text()
    lines = card.splitlines()
    head = lines.index("| strategy | replicas | test accuracy | Δ accuracy | interval |")
    table = {}
    for line in lines[head + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        table[cells[0].strip("*")] = cells[1:]
    # the strategies `runner compare RUN` shows by default that have numbers (the spec's, last,
    # best_eval_loss; not swa: this spec has no [swa])
    assert "Over the run's 3 replicas" in card and {"last", "best_eval_loss"} <= set(table) <= set(spreads)
    assert "swa" not in table and spreads["swa"]["replicas"] == 0
    for s, (n, acc, delta, interval) in table.items():
        assert int(n) == spreads[s]["replicas"] == 3
        assert acc == f"{spreads[s]['test_accuracy']:.4f} ± {spreads[s]['test_accuracy_sd']:.4f}"
        if s in diffs:
            d = diffs[s]
            assert delta == f"{d['test_accuracy_diff']:+.4f}"
            assert interval == f"[{d['test_accuracy_diff_low']:+.4f}, {d['test_accuracy_diff_high']:+.4f}]"
        else:  # the baseline, shown in bold, has no difference from itself
            assert delta == interval == "" and s not in diffs
    assert len(table) >= 3 and sum(bool(c[2]) for c in table.values()) == len(table) - 1


def test_a_sweep_trial_with_repeats_scores_the_mean_over_its_seeds(tmp_path):
    spec = write_spec(tmp_path, name="rs", sweep='trials = 2\nsampler = "random"\npruner = "none"\nrepeats = 2',
                      space='"loss.gamma" = { low = 0.5, high = 4.0 }')
    store = tmp_path / "results.duckdb"
    code, out, err = cli("apply", spec, "--store", store)
    assert code == 0, err
    trials = rows(store, "SELECT number, value, value_sd, repeats, run_id FROM trials ORDER BY number")
    assert len(trials) == 2
    for number, value, sd, n, run_id in trials:
        assert n == 2 and sd is not None
        group = rows(store, "SELECT repeat_group FROM runs WHERE run_id = ?", [run_id])[0][0]
        replicas = rows(store, "SELECT run_id, name FROM runs WHERE repeat_group = ? ORDER BY repeat_index", [group])
        assert [r[1] for r in replicas] == [f"rs-t{number}", f"rs-t{number}-r1"]
        vals = [rows(store, "SELECT value FROM metrics WHERE run_id = ? AND kind = 'ensemble' AND member = 'ensemble' "
                            "AND checkpoint = 'best_eval_accuracy' AND split = 'valid' AND name = 'accuracy'",
                     [r[0]])[0][0] for r in replicas]
        assert value == pytest.approx(sum(vals) / 2)
        assert sd == pytest.approx(abs(vals[0] - vals[1]) / 2 ** 0.5)
    assert "seeds)" in out
    # the re-scoring table averages each strategy over the trial's seeds, with the spread
    code, out, err = cli("sweep", "rs", "--store", store)
    assert code == 0, err
    line = next(x for x in out.splitlines() if "best_eval_loss " in x or "best_eval_loss│" in x.replace(" ", ""))
    assert "±" in line and "[" in line  # test accuracy ± sd, and the interval against the objective's pick
