"""One member over 2 processes: `torchrun --nproc_per_node 2 -m runner apply SPEC`, gloo on CPU.

Trainer's DDP shards every split over the ranks and gathers the predictions back; runner must store
each example exactly once, under its own index, with only rank 0 writing. Checked against one
process on the same spec:

- the same example ids in every (member, checkpoint, split), each exactly once;
- the stored probabilities are the saved model's own: predicting the test split in one process from
  the `selected/` checkpoint rank 0 wrote gives them back (so no probability sits under another
  example's index, which the per-index count alone could not show);
- test accuracy within a tolerance of the one-process run. The runs are not the same optimisation
  (each rank draws its own shard of every batch, so the examples meet the model in another order),
  only the same recipe with the same global batch (2 x 16 against 1 x 32). The tolerance is three
  binomial standard errors of the test split's accuracy (about 0.07 here: 400 test examples at
  0.68): a DDP run that trained on half the data, or scored against shuffled labels, falls far
  outside it. The recipe (2000 reviews, 6 epochs, linear decay) trains to where the order of the
  batches matters little: over seeds 11-13 one and two processes differed by 0.002-0.005, where 5
  epochs at a constant rate, still learning, differed by up to 0.09.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from runner.store import Store

pytestmark = pytest.mark.ddp

SPEC = """
name = "ddp"
seed = 11

[data]
source = "synthetic"
valid = 0.2
test = 0.2
max_length = 64

[data.options]
size = 2000

[train]
epochs = 6
batch_size = {batch}
learning_rate = 2e-3
lr_scheduler = "linear"

[loss]
name = "cross_entropy"

[swa]
k = 2

[[members]]
name = "a"
backbone = "scratch"
options = {{ hidden_size = 64, layers = 2, heads = 2 }}
"""


def apply(d: Path, nproc: int) -> subprocess.CompletedProcess:
    d.mkdir(parents=True)
    spec = d / "spec.toml"
    spec.write_text(SPEC.format(batch=32 // nproc))
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", PYTHONWARNINGS="ignore")
    head = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
            if nproc > 1 else [sys.executable])
    cmd = head + ["-m", "runner", "apply", str(spec), "--store", str(d / "results.duckdb")]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    one, two = apply(root / "one", 1), apply(root / "two", 2)
    assert one.returncode == 0, one.stderr
    assert two.returncode == 0, two.stderr
    return root / "one", root / "two", two


def stored_ids(store: Path) -> dict[tuple, list[int]]:
    rows = Store(store).query("SELECT member, checkpoint, split, list(idx ORDER BY idx) FROM predictions "
                              "GROUP BY ALL ORDER BY ALL")[1]
    return {(m, c, s): ids for m, c, s, ids in rows}


def test_every_example_is_stored_exactly_once_as_in_one_process(runs):
    one, two, _ = runs
    a, b = stored_ids(one / "results.duckdb"), stored_ids(two / "results.duckdb")
    assert set(a) == set(b) and len(b) == 6 * 2 + 2  # epochs 1-6 and swa, valid and test
    n = dict(Store(two / "results.duckdb").query("SELECT split, count(*) FROM examples GROUP BY split")[1])
    for key, ids in b.items():
        assert ids == a[key], key
        assert ids == list(range(n[key[2]])), key  # each index once: no padding duplicate, none missing


def test_the_stored_probabilities_are_the_saved_model_s_own(runs):
    from runner.train.backbones import load_checkpoint

    _, two, _ = runs
    store = Store(two / "results.duckdb")
    run = store.run()
    member = run.member("a")
    model, tokenizer, _ = load_checkpoint(two / "runs" / run.run_id / "a" / "selected")
    model.eval()
    texts = [t for (t,) in store.query("SELECT text FROM examples WHERE dataset_id = ? AND split = 'test' "
                                       "ORDER BY idx", [run.dataset_id])[1]]
    with torch.inference_mode():
        enc = tokenizer(texts, truncation=True, max_length=64, padding=True, return_tensors="pt")
        probs = torch.softmax(model(**enc).logits.double(), dim=-1).numpy()
    stored = np.array([p for (p,) in store.query(
        "SELECT probs FROM predictions WHERE run_id = ? AND member = 'a' AND checkpoint = ? AND split = 'test' "
        "ORDER BY idx", [run.run_id, member.selected_checkpoint])[1]])
    assert stored.shape == probs.shape
    assert np.abs(stored - probs).max() < 1e-4


def test_accuracy_is_within_three_standard_errors_of_one_process(runs):
    one, two, _ = runs

    def test_accuracy(store):
        return Store(store).query("SELECT value FROM metrics WHERE kind = 'member' AND checkpoint = 'swa' "
                                  "AND split = 'test' AND name = 'accuracy'")[1][0][0]

    a, b = test_accuracy(one / "results.duckdb"), test_accuracy(two / "results.duckdb")
    n = Store(one / "results.duckdb").query("SELECT count(*) FROM examples WHERE split = 'test'")[1][0][0]
    tolerance = 3 * math.sqrt(a * (1 - a) / n)
    assert a > 0.5, f"the one-process run learned too little ({a:.3f}) for the comparison to mean anything"
    assert abs(a - b) <= tolerance, (a, b, tolerance)


def test_only_rank_0_writes_and_prints(runs):
    _, two, proc = runs
    s = Store(two / "results.duckdb")
    assert s.query("SELECT count(*), min(status) FROM runs")[1] == [(1, "finished")]
    assert s.query("SELECT member, status FROM members")[1] == [("a", "finished")]
    assert proc.stdout.count("Run ddp-") == 1  # one summary table: the follower printed nothing
    assert proc.stderr.count("Run ddp-") == 1  # one "Run ...: 1 members" line
    assert "Traceback" not in proc.stderr
    run_id = s.run_ids()[0]
    assert not (two / "runs" / run_id / "_error.log").exists()
    assert sorted(p.name for p in (two / "runs" / run_id / "a").iterdir()) == ["selected", "swa"]


def test_an_adaptation_under_torchrun_is_trained_by_every_rank_and_written_once(tmp_path):
    """[adapt] under DDP: rank 0 alone looks in the cache and writes it; both ranks train the MLM."""
    d = tmp_path / "adapt"
    d.mkdir()
    spec = d / "spec.toml"
    spec.write_text(SPEC.format(batch=16).replace("size = 2000", "size = 300").replace("epochs = 6", "epochs = 1")
                    .replace("[swa]\nk = 2", "[adapt]\nepochs = 1\nlearning_rate = 1e-3"))
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", PYTHONWARNINGS="ignore")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "runner",
           "apply", str(spec), "--store", str(d / "results.duckdb")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    s = Store(d / "results.duckdb")
    assert s.query("SELECT status FROM runs")[1] == [("finished",)]
    (key, path), = s.query("SELECT adapt_key, path FROM adaptations")[1]
    assert (Path(path) / "model.safetensors").is_file() and (Path(path) / "adapt.json").is_file()
    assert not list((d / "adapted").glob("*.partial"))
    rows = s.query("SELECT epoch, split, count(*) FROM adapt_losses WHERE adapt_key = ? GROUP BY ALL ORDER BY ALL", [key])[1]
    assert rows and all(n == 1 for *_, n in rows) and {e for e, *_ in rows} == {0, 1}
    assert s.query("SELECT adapt_key FROM members")[1] == [(key,)]
