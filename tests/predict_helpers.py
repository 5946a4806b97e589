"""What tests/use/test_predict.py and tests/use/test_export.py share: one small real run, trained once per session.

Three tiny scratch members (two BERTs that share a tokenizer and a RoBERTa with its own), three
epochs, SWA over the last two, fitted ensemble weights: every path `runner predict` and `runner
export` take (shared tokenization, a second tokenizer, SWA, stored and built ensembles) is exercised.
"""

from __future__ import annotations

import csv
import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

SPEC = """
name = "predict-run"
seed = 3

[data]
source = "synthetic"
valid = 0.2
test = 0.2
max_length = 40

[data.options]
size = 400

[train]
epochs = 3
batch_size = 16
learning_rate = 1e-2
lr_scheduler = "constant"

[loss]
name = "cross_entropy"

[selection]
metric = "eval_accuracy"

[swa]
k = 2

[ensemble]
weights = "fit"

[[members]]
name = "a"
backbone = "scratch"
seed = 1
options = { architecture = "bert", hidden_size = 32, layers = 1, heads = 2, vocab_size = 600 }

[[members]]
name = "b"
backbone = "scratch"
seed = 2
options = { architecture = "roberta", hidden_size = 32, layers = 1, heads = 2, vocab_size = 600 }

[[members]]
name = "c"
backbone = "scratch"
seed = 3
options = { architecture = "bert", hidden_size = 16, layers = 1, heads = 2, vocab_size = 600 }
"""


@dataclass(frozen=True)
class Trained:
    folder: Path
    store: Path
    run_id: str
    dataset_id: str
    labels: list[str]


_CACHE: dict[str, Trained] = {}


def cli(*args, catch: bool = True):
    """The real CLI in-process: (exit code, stdout, stderr); an escaping exception is re-raised."""
    from runner.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=True)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def trained(tmp_path_factory) -> Trained:
    """The session's run (trained on first use)."""
    if "run" not in _CACHE:
        from runner.store import Store

        d = tmp_path_factory.mktemp("predict_run")
        (d / "spec.toml").write_text(SPEC)
        code, out, err = cli("apply", d / "spec.toml", "--store", d / "results.duckdb")
        assert code == 0, err + out
        st = Store(d / "results.duckdb")
        run = st.run("predict-run")
        _CACHE["run"] = Trained(d, d / "results.duckdb", run.run_id, run.dataset_id, list(run.label_names))
    return _CACHE["run"]


def split_csv(t: Trained, split: str, path: Path, labels: bool = True) -> Path:
    """A stored split written out as a CSV a user would have (text, label name)."""
    from runner.store import Store

    rows = Store(t.store).query("SELECT text, label FROM examples WHERE dataset_id = ? AND split = ? ORDER BY idx",
                                [t.dataset_id, split])[1]
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"] if labels else ["text"])
        for text, label in rows:
            w.writerow([text, t.labels[label]] if labels else [text])
    return path


def stored_probs(store: Path, run_id: str, kind: str, member: str, checkpoint: str, split: str) -> np.ndarray:
    from runner.store import Store

    rows = Store(store).query("SELECT probs FROM predictions WHERE run_id = ? AND kind = ? AND member = ? AND "
                              "checkpoint = ? AND split = ? ORDER BY idx", [run_id, kind, member, checkpoint, split])[1]
    return np.array([r[0] for r in rows], dtype=np.float64)


def read_output(path: Path) -> tuple[list[str], dict[str, np.ndarray]]:
    """(predicted labels, column -> float array) of a CSV that `runner predict` wrote."""
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0])[:2] == ["pred_label", "pred_id"]
    cols = {k: np.array([float(r[k]) for r in rows]) for k in rows[0] if k.startswith("p_") or ".p_" in k}
    return [r["pred_label"] for r in rows], cols


def probs_of(cols: dict[str, np.ndarray], labels: list[str], prefix: str = "") -> np.ndarray:
    return np.stack([cols[f"{prefix}p_{name}"] for name in labels], axis=1)


def store_copy(t: Trained, name: str) -> Path:
    """A copy of the run's store beside it (so runs/ is found): for tests that change what it holds."""
    path = t.folder / name
    shutil.copy(t.store, path)
    return path


def digest(path: Path):
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns
