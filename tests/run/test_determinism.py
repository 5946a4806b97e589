"""Same spec, same seeds, same numbers: on one machine, with one thread count and one set of library
versions, two `runner apply` processes of a spec store bit-identical probabilities, metrics, fitted
ensemble weights and checkpoint weights. (Elsewhere the numbers agree within the tolerances
scripts/readme_outputs.py states, which tests/test_docs.py checks against the README.)"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from runner.store import Store

# The quickstart's settings (focal loss, selection by accuracy, SWA, ensemble weights fitted on valid,
# no full_determinism), at a size that trains in seconds.
SPEC = """
name = "same"
seed = 13

[data]
source = "synthetic"
valid = 0.2
test = 0.2
max_length = 32

[data.options]
size = 400

[train]
epochs = 1
batch_size = 32
learning_rate = 1e-3
lr_scheduler = "constant"

[loss]
name = "focal"
alpha = 1.0
gamma = 2.0
label_smoothing = 0.1

[selection]
metric = "eval_accuracy"

[swa]
k = 1

[ensemble]
checkpoint = "selected"
weights = "fit"

[[members]]
name = "bert"
backbone = "scratch"
options = { architecture = "bert", hidden_size = 32, layers = 1, heads = 2, vocab_size = 800 }

[[members]]
name = "roberta"
backbone = "scratch"
seed = 7
options = { architecture = "roberta", hidden_size = 32, layers = 1, heads = 2, vocab_size = 800 }
"""


def apply_in_a_fresh_process(folder: Path, hash_seed: str) -> Path:
    folder.mkdir()
    (folder / "spec.toml").write_text(SPEC, encoding="utf-8")
    store = folder / "results.duckdb"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONHASHSEED": hash_seed}
    proc = subprocess.run([sys.executable, "-m", "runner.cli", "apply", str(folder / "spec.toml"), "--store",
                           str(store)], cwd=folder, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return store


def stored(store: Path) -> dict:
    s = Store(store)
    return {
        "predictions": s.query("SELECT kind, member, checkpoint, split, idx, pred, probs FROM predictions "
                               "ORDER BY kind, member, checkpoint, split, idx")[1],
        "metrics": s.query("SELECT kind, member, checkpoint, split, name, value FROM metrics "
                           "ORDER BY kind, member, checkpoint, split, name")[1],
        "weights": s.query("SELECT ensemble, strategy, method, member, member_checkpoint, weight "
                           "FROM ensemble_weights ORDER BY ALL")[1],
    }


def weight_files(store: Path) -> dict:
    runs = store.parent / "runs"
    return {p.relative_to(runs).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(runs.rglob("*.safetensors"))}


def test_two_applies_of_one_spec_store_bit_identical_numbers(tmp_path):
    """Two processes (each its own PYTHONHASHSEED) on one thread: every stored probability, metric and
    fitted weight, and every saved weight file, is the same to the bit, not merely close."""
    a = apply_in_a_fresh_process(tmp_path / "a", "0")
    b = apply_in_a_fresh_process(tmp_path / "b", "1")
    first, second = stored(a), stored(b)
    assert len(first["predictions"]) > 0 and len(first["weights"]) == 2
    assert {r[0] for r in first["predictions"]} == {"member", "ensemble"}
    for table in first:
        assert first[table] == second[table], f"{table} differ between two applies of one spec"
    files = weight_files(a)
    assert any("/selected/" in f for f in files) and any("/swa/" in f for f in files)
    assert files == weight_files(b)
