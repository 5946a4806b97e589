"""`runner adopt`: Trainer output folders written before runner (save_total_limit=2), stored as a run.

Two plain Trainer scripts (tests/script_helpers.py: seeds 1 and 2, 3 epochs, a focal loss) leave
`checkpoint-*` folders of their last two epochs; adopt stores each as a member of one run, and the
read commands, SWA over the kept checkpoints and the ensemble across them answer for it.
"""

from __future__ import annotations

import csv
import hashlib
import json
import pickle
import shutil

import numpy as np
import pytest
from script_helpers import LABELS, script

from runner.store import Store


def _write_csv(path, texts, labels):
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows([t, LABELS[y]] for t, y in zip(texts, labels))
    return path


def _digest(folder):
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    """Two Trainer output folders as a notebook leaves them, and the valid/test files."""
    tmp = tmp_path_factory.mktemp("adopt")
    trainers = {}
    for seed in (1, 2):
        trainer, splits, d = script(tmp / f"out-{seed}", seed)
        trainer.train()
        trainers[seed] = (trainer, splits)
    data = [f"valid={_write_csv(tmp / 'valid.csv', *d['valid'])}", f"test={_write_csv(tmp / 'test.csv', *d['test'])}"]
    return tmp, trainers, d, data


@pytest.fixture(scope="module")
def adopted(outputs):
    from typer.testing import CliRunner

    from runner.cli import app

    tmp, trainers, d, data = outputs
    store = tmp / "results.duckdb"
    before = {seed: _digest(tmp / f"out-{seed}") for seed in (1, 2)}
    results = {}
    for seed in (1, 2):
        args = ["adopt", str(tmp / f"out-{seed}"), "--name", "old-exp", "--member", f"seed-{seed}", "--labels",
                ",".join(LABELS), "--store", str(store)]
        for item in data:
            args += ["--data", item]
        results[seed] = CliRunner().invoke(app, args)
    return tmp, store, trainers, d, before, results


def test_each_folder_is_a_member_with_its_logged_epochs_and_kept_checkpoints(adopted):
    tmp, store, trainers, d, before, results = adopted
    for seed, r in results.items():
        assert r.exit_code == 0, r.output
        assert "checkpoint-18 (epoch 3)" in r.output
    st = Store(store)
    run = st.run("old-exp")
    assert run.status == "finished" and [m.name for m in run.members] == ["seed-1", "seed-2"]
    for seed, (trainer, _) in trainers.items():
        member = f"seed-{seed}"
        epochs = {e.epoch: e.metrics for e in st.member_epochs(run.run_id, member)}
        assert sorted(epochs) == [1, 2, 3]
        # the losses are Trainer's own (the script's focal loss), as trainer_state.json logged them
        logged = {int(round(h["epoch"])): h["eval_loss"] for h in trainer.state.log_history if "eval_loss" in h}
        assert {e: m["eval_loss"] for e, m in epochs.items()} == pytest.approx(logged, abs=1e-9)
        # epoch 1's checkpoint is gone (save_total_limit=2): its losses only, no predictions
        assert "eval_accuracy" not in epochs[1] and "test_accuracy" in epochs[2] and "test_accuracy" in epochs[3]
        counts = dict(((c, s), n) for c, s, n in st.query(
            "SELECT checkpoint, split, count(*) FROM predictions WHERE run_id = ? AND member = ? GROUP BY ALL",
            [run.run_id, member])[1])
        assert counts == {(c, s): len(d[s][1]) for c in ("epoch-2", "epoch-3", "swa") for s in ("valid", "test")}
        assert st.query("SELECT swa_epochs FROM members WHERE run_id = ? AND member = ?",
                        [run.run_id, member])[1][0][0] == [2, 3]
        selected = run.member(member).selected_checkpoint
        assert selected in ("epoch-2", "epoch-3")
        folder = tmp / "runs" / run.run_id / member
        assert (folder / "selected" / "model.safetensors").is_file() and (folder / "swa" / "tokenizer.json").is_file()
        assert not [p for p in folder.rglob("*") if p.suffix in (".bin", ".pt", ".pth")]
        # the output folder is as Trainer left it: nothing written, moved or deleted there
        assert _digest(tmp / f"out-{seed}") == before[seed]


def test_stored_probabilities_are_the_checkpoints_own(adopted):
    """Trainer.predict of a kept checkpoint (loaded as the script would) gives the stored probabilities."""
    from transformers import AutoModelForSequenceClassification, DataCollatorWithPadding, Trainer, TrainingArguments

    from runner.core.maths import softmax

    tmp, store, trainers, d, _, _ = adopted
    st = Store(store)
    run = st.run("old-exp")
    trainer, splits = trainers[1]
    model = AutoModelForSequenceClassification.from_pretrained(str(tmp / "out-1" / "checkpoint-12"))
    args = TrainingArguments(output_dir=str(tmp / "predict"), per_device_eval_batch_size=7, report_to="none",
                             use_cpu=True)
    out = Trainer(model=model, args=args, data_collator=DataCollatorWithPadding(trainer.processing_class)).predict(
        splits["test"])
    stored = st.query("SELECT probs FROM predictions WHERE run_id = ? AND member = 'seed-1' AND checkpoint = "
                      "'epoch-2' AND split = 'test' ORDER BY idx", [run.run_id])[1]
    # other batches pad differently: float32 sums differ in the last bits (measured < 1e-6)
    np.testing.assert_allclose(np.array([r[0] for r in stored]), softmax(out.predictions), atol=1e-5)


def test_compare_swa_and_the_ensemble_answer_for_adopted_runs(adopted, run_cli):
    tmp, store, *_ = adopted
    code, out, err = run_cli("compare", "old-exp", "--store", store, "--all")
    assert code == 0, err
    assert "swa" in out and "best_eval_loss" in out and "seed-2" in out
    code, out, err = run_cli("ensemble", "old-exp", "--store", store)
    assert code == 0, err
    assert "seed-1" in out and "seed-2" in out
    code, out, err = run_cli("export", "old-exp", tmp / "exported", "--store", store)
    assert code == 0, err
    assert (tmp / "exported" / "manifest.json").is_file()


def test_bad_folders_are_named_before_anything_is_written(outputs, run_cli, tmp_path):
    tmp, _, _, data = outputs
    store = tmp_path / "results.duckdb"
    data_args = [a for item in data for a in ("--data", item)]

    def adopt(folder, *more):
        return run_cli("adopt", folder, *data_args, "--labels", ",".join(LABELS), "--store", store, *more)

    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = adopt(empty)
    assert code == 2 and f"OUTPUT_DIR {empty}: no checkpoint-* folder" in err

    # a checkpoint holding its weights only as a pickle that, unpickled, would write a file: never loaded
    pickled = tmp_path / "pickled"
    shutil.copytree(tmp / "out-1", pickled)
    (pickled / "checkpoint-18" / "model.safetensors").unlink()
    marker = tmp_path / "unpickled"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (pickled / "checkpoint-18" / "pytorch_model.bin").write_bytes(pickle.dumps(Payload()))
    code, _, err = adopt(pickled)
    assert code == 2 and str(pickled / "checkpoint-18" / "model.safetensors") in err and "pytorch_model.bin" in err
    assert not marker.exists()

    # a config naming custom code: refused, nothing imported
    custom = tmp_path / "custom"
    shutil.copytree(tmp / "out-1", custom)
    config = custom / "checkpoint-12" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "auto_map": {
        "AutoModelForSequenceClassification": "evil.Model"}}))
    code, _, err = adopt(custom)
    assert code == 2 and f"{config}: auto_map" in err

    code, _, err = adopt(tmp / "out-1", "--metric", "eval_bleu")
    assert code == 2 and "--metric eval_bleu" in err
    code, _, err = run_cli("adopt", tmp / "out-1", "--data", "dev=x.csv", "--store", store)
    assert code == 2 and "--data dev=x.csv" in err
    code, _, err = adopt(tmp / "out-1", "--labels", "a,b")
    assert code == 2 and "2 labels" in err and "config.json" in err
    assert "Traceback" not in err and not store.exists() and not (tmp_path / "runs").exists()


SPEC_DATA = """
name = "script-data"

[data]
source = "csv"
train = "train.csv"
valid = "valid.csv"
test = "test.csv"
labels = {labels}
max_length = {max_length}

[[members]]
backbone = "scratch"
"""


def _probs(store, name: str, member: str, checkpoint: str) -> dict[tuple[str, str], list[float]]:
    """(split, text) -> the stored probabilities of one checkpoint."""
    st = Store(store)
    rows = st.query("SELECT p.split, e.text, p.probs FROM predictions p JOIN runs r USING (run_id) JOIN examples e "
                    "ON e.dataset_id = r.dataset_id AND e.split = p.split AND e.idx = p.idx WHERE r.name = ? AND "
                    "p.member = ? AND p.checkpoint = ?", [name, member, checkpoint])[1]
    return {(s, t): list(p) for s, t, p in rows}


def test_a_spec_as_data_gives_the_splits_of_its_files(adopted, run_cli, tmp_path):
    """`--data spec.toml`: the spec's [data] (here csv files of the script's own splits) is what the
    checkpoints predict, the same examples and probabilities as `--data valid=... --data test=...`."""
    tmp, store, _, d, _, _ = adopted
    for split in ("train", "valid", "test"):
        _write_csv(tmp_path / f"{split}.csv", *d[split])
    config = json.loads((tmp / "out-1" / "checkpoint-18" / "config.json").read_text())
    length = min(int(config["max_position_embeddings"]), 512)  # what adopt takes without a spec
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC_DATA.format(labels=json.dumps(LABELS), max_length=length), encoding="utf-8")
    other = tmp_path / "results.duckdb"
    code, out, err = run_cli("adopt", tmp / "out-1", "--data", spec, "--name", "from-spec", "--member", "seed-1",
                             "--store", other)
    assert code == 0, err
    run = Store(other).run("from-spec")
    assert run.status == "finished" and run.dataset_id == Store(store).run("old-exp").dataset_id
    by_spec, by_files = _probs(other, "from-spec", "seed-1", "epoch-3"), _probs(store, "old-exp", "seed-1", "epoch-3")
    assert sorted(by_spec) == sorted(by_files) and len(by_spec) == len(d["valid"][0]) + len(d["test"][0])
    # the same model, texts and batches in one process: the same float32 sums
    np.testing.assert_allclose([by_spec[k] for k in sorted(by_spec)], [by_files[k] for k in sorted(by_files)],
                               atol=1e-7)


def test_an_interrupted_adopt_stores_the_member_afresh_when_run_again(adopted, run_cli, tmp_path):
    """Ctrl-C after the first kept checkpoint is stored: the member is `failed`, and the same command
    stores it again from its first checkpoint, as an uninterrupted adopt does (adopt only predicts, so
    starting over costs seconds, and the rows can never mix two states of an output folder that a
    continued training changed in between)."""
    from runner.hf.adopt import adopt, plan_adopt
    from runner.plugins.registry import load_registry

    tmp, store, _, d, _, _ = adopted
    data = [f"{s}={tmp / f'{s}.csv'}" for s in ("valid", "test")]
    registry = load_registry(None)
    plan = plan_adopt(tmp / "out-1", data, registry, name="interrupted", member="seed-1", labels=LABELS)
    other = tmp_path / "results.duckdb"

    def ctrl_c(line: str) -> None:
        if "1/2 predicted" in line:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        adopt(plan, Store(other), registry, say=ctrl_c)
    st = Store(other)
    assert st.run("interrupted").member("seed-1").status == "failed"
    assert _probs(other, "interrupted", "seed-1", "epoch-2") and not _probs(other, "interrupted", "seed-1", "epoch-3")

    code, out, err = run_cli("adopt", tmp / "out-1", *[a for item in data for a in ("--data", item)], "--name",
                             "interrupted", "--member", "seed-1", "--labels", ",".join(LABELS), "--store", other)
    assert code == 0, err
    run = Store(other).run("interrupted")
    assert run.status == "finished" and len(Store(other).run_ids()) == 1
    for checkpoint in ("epoch-2", "epoch-3", "swa"):
        again, clean = _probs(other, "interrupted", "seed-1", checkpoint), _probs(store, "old-exp", "seed-1",
                                                                                 checkpoint)
        assert sorted(again) == sorted(clean)  # each example once: nothing of the first attempt left twice
        np.testing.assert_allclose([again[k] for k in sorted(again)], [clean[k] for k in sorted(clean)], atol=1e-7)
