"""runner.hf.StoreCallback added to a plain Trainer script: the store holds what `runner apply` would.

Two scripts (seeds 1 and 2, members of the run `my-exp`) train a tiny BERT with their own focal loss;
the read commands then answer for the run, and an interrupted script resumes without a duplicate row.
"""

from __future__ import annotations

import numpy as np
import pytest
from script_helpers import LABELS, script

from runner.hf import StoreCallback
from runner.store import Store


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two scripts with the callback, the second with SWA over its last 2 epochs."""
    tmp = tmp_path_factory.mktemp("hf")
    store = tmp / "results.duckdb"
    trainers = {}
    for seed, swa in ((1, 0), (2, 2)):
        trainer, splits, d = script(tmp / f"out-{seed}", seed)
        trainer.add_callback(StoreCallback(store=store, name="my-exp", labels=LABELS, member=f"seed-{seed}",
                                           splits=splits, texts={"valid": d["valid"][0], "test": d["test"][0]},
                                           swa=swa, say=lambda _: None))
        trainer.train()
        trainers[seed] = (trainer, splits, d)
    return tmp, store, trainers


def test_the_scripts_are_one_run_with_apply_records(trained):
    tmp, store, trainers = trained
    st = Store(store)
    run = st.run("my-exp")
    assert run.status == "finished"
    assert [m.name for m in run.members] == ["seed-1", "seed-2"] and all(m.status == "finished" for m in run.members)
    assert run.selection_metric == "eval_accuracy" and run.selected_strategy == "best_eval_accuracy"
    for seed, (trainer, splits, d) in trainers.items():
        member = f"seed-{seed}"
        epochs = st.member_epochs(run.run_id, member)
        assert [e.epoch for e in epochs] == [1, 2, 3]
        # the validation loss is the script's focal loss, exactly as Trainer logged it
        logged = {int(round(h["epoch"])): h["eval_loss"] for h in trainer.state.log_history if "eval_loss" in h}
        assert {e.epoch: e.metrics["eval_loss"] for e in epochs} == pytest.approx(logged, abs=1e-6)
        best = max(epochs, key=lambda e: (e.metrics["eval_accuracy"], -e.epoch)).epoch
        assert run.member(member).selected_checkpoint == f"epoch-{best}"
        counts = st.query("SELECT checkpoint, split, count(*) FROM predictions WHERE run_id = ? AND member = ? "
                          "GROUP BY ALL ORDER BY ALL", [run.run_id, member])[1]
        expected = [(f"epoch-{e}", s, len(d[s][1])) for e in (1, 2, 3) for s in ("test", "valid")]
        if seed == 2:
            expected += [("swa", "test", len(d["test"][1])), ("swa", "valid", len(d["valid"][1]))]
        assert sorted(counts) == sorted(expected)
        # examples hold the texts in split order; each split's labels are the script's
        texts = st.query("SELECT text, label FROM examples WHERE dataset_id = ? AND split = 'test' ORDER BY idx",
                         [run.dataset_id])[1]
        assert [t for t, _ in texts] == d["test"][0] and [y for _, y in texts] == d["test"][1]
        # the member folder ships selected/ (and swa/), with no pickle and no epoch checkpoint left
        folder = tmp / "runs" / run.run_id / member
        assert (folder / "selected" / "model.safetensors").is_file() and (folder / "selected" / "runner.json").is_file()
        assert not (folder / "checkpoints").exists()
        assert not [p for p in folder.rglob("*") if p.suffix in (".bin", ".pt", ".pth")]
        assert (folder / "swa").is_dir() == (seed == 2)
        # Trainer's own output folder is as Trainer left it (save_total_limit = 2)
        assert len(list((tmp / f"out-{seed}").glob("checkpoint-*"))) == 2


def test_stored_probabilities_are_the_selected_checkpoints(trained):
    """The selected/ checkpoint, loaded by runner and predicted by Trainer, gives the stored test probabilities."""
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    from runner.core.maths import softmax
    from runner.train.backbones import load_checkpoint

    tmp, store, trainers = trained
    st = Store(store)
    run = st.run("my-exp")
    for seed, (_, splits, _) in trainers.items():
        m = run.member(f"seed-{seed}")
        model, tokenizer, info = load_checkpoint(tmp / "runs" / run.run_id / m.name / "selected")
        assert info["backbone"] == "hf" and info["label_names"] == LABELS
        args = TrainingArguments(output_dir=str(tmp / "predict"), per_device_eval_batch_size=7, report_to="none",
                                 use_cpu=True)
        out = Trainer(model=model, args=args, data_collator=DataCollatorWithPadding(tokenizer)).predict(splits["test"])
        stored = st.query("SELECT probs FROM predictions WHERE run_id = ? AND member = ? AND checkpoint = ? "
                          "AND split = 'test' ORDER BY idx", [run.run_id, m.name, m.selected_checkpoint])[1]
        # other batches pad differently: float32 sums differ in the last bits (measured < 1e-6)
        np.testing.assert_allclose(np.array([r[0] for r in stored]), softmax(out.predictions), atol=1e-5)


def test_read_commands_answer_for_the_run(trained, run_cli):
    tmp, store, _ = trained
    code, out, err = run_cli("compare", "my-exp", "--store", store)
    assert code == 0, err
    assert "best_eval_accuracy" in out and "swa" in out
    code, out, err = run_cli("ensemble", "my-exp", "--store", store)
    assert code == 0, err
    assert "seed-1" in out and "seed-2" in out
    code, out, err = run_cli("plot", "my-exp", "--store", store, "--out", tmp / "my-exp.png")
    assert code == 0, err
    assert (tmp / "my-exp.png").stat().st_size > 10_000
    code, out, err = run_cli("export", "my-exp", tmp / "exported", "--store", store)
    assert code == 0, err
    assert (tmp / "exported" / "manifest.json").is_file()


def test_an_interrupted_script_resumes_without_a_duplicate_row(tmp_path):
    from transformers import TrainerCallback

    class Crash(TrainerCallback):
        def on_epoch_end(self, args, state, control, **kwargs):
            if round(state.epoch) == 2:
                raise KeyboardInterrupt  # the kernel interrupted in epoch 3, after epoch 2's save

    store = tmp_path / "results.duckdb"

    def callback(splits):
        return StoreCallback(store=store, name="crash", labels=LABELS, splits=splits, say=lambda _: None)

    trainer, splits, _ = script(tmp_path / "out", 5, callbacks=[Crash()])
    trainer.add_callback(callback(splits))
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    st = Store(store)
    run = st.run("crash")
    assert run.members[0].status == "running" and st.stored_epochs(run.run_id, "member") == [1]

    trainer, splits, _ = script(tmp_path / "out", 5)
    trainer.add_callback(callback(splits))
    trainer.train(resume_from_checkpoint=True)
    run = st.run("crash")
    assert run.status == "finished" and st.stored_epochs(run.run_id, "member") == [1, 2, 3]
    dupes = st.query("SELECT count(*) FROM (SELECT checkpoint, split, idx FROM predictions WHERE run_id = ? "
                     "GROUP BY ALL HAVING count(*) > 1)", [run.run_id])[1][0][0]
    assert dupes == 0 and len(st.run_ids()) == 1


def test_mistakes_are_named_before_training(tmp_path):
    from runner.errors import InputError

    with pytest.raises(InputError, match="'valid'"):
        StoreCallback(store=tmp_path / "r.duckdb", labels=LABELS, splits={"dev": []})
    with pytest.raises(InputError, match="metric"):
        StoreCallback(store=tmp_path / "r.duckdb", labels=LABELS, splits={"valid": []}, metric="eval_bleu")
    with pytest.raises(InputError, match="labels"):
        StoreCallback(store=tmp_path / "r.duckdb", labels=["only"], splits={"valid": []})
    assert not (tmp_path / "r.duckdb").exists()


def test_a_notebook_reads_the_run_as_dataframes(trained):
    """runner.open: DataFrames equal to the store's rows; reading changes nothing in the file."""
    import runner

    tmp, store, trainers = trained
    before = store.stat().st_mtime_ns
    view = runner.open(store)
    runs = view.runs()
    assert list(runs["name"]) == ["my-exp"] and runs["members_finished"].tolist() == [2]
    epochs = view.epochs("my-exp")
    assert len(epochs) == 6 and {"eval_accuracy", "test_accuracy", "eval_loss"} <= set(epochs.columns)
    st = Store(store)
    run = st.run("my-exp")
    stored = {(e.epoch, k): v for e in st.member_epochs(run.run_id, "seed-1") for k, v in e.metrics.items()}
    one = epochs[epochs["member"] == "seed-1"]
    assert dict(zip(one["epoch"], one["test_accuracy"])) == {e: stored[(e, "test_accuracy")] for e in (1, 2, 3)}
    preds = view.predictions("my-exp", member="seed-2", split="test")
    d = trainers[2][2]
    assert preds["text"].tolist() == d["test"][0] and preds["label"].tolist() == d["test"][1]
    probs = view.probabilities("my-exp", member="seed-2", split="test")
    assert probs.shape == (len(d["test"][1]), len(LABELS)) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert (probs.argmax(1) == preds["pred"].to_numpy()).all()
    swa = view.probabilities("my-exp", member="seed-2", checkpoint="swa")
    assert not np.array_equal(swa, probs)
    confusion = view.confusion("my-exp", member="seed-2")
    assert list(confusion["label"]) == LABELS and int(confusion[LABELS].to_numpy().sum()) == len(d["test"][1])
    accuracy = np.trace(confusion[LABELS].to_numpy()) / len(d["test"][1])
    compare = view.compare("my-exp")
    selected = compare[(compare["strategy"] == "best_eval_accuracy") & (compare["member"] == "seed-2")]
    assert float(selected["test_accuracy"].iloc[0]) == pytest.approx(accuracy)
    with pytest.raises(runner.InputError, match="member="):
        view.probabilities("my-exp")  # two members: which one?
    assert store.stat().st_mtime_ns == before
