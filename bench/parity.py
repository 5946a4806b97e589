"""Does runner give the numbers a plain Hugging Face `Trainer` script gives, for the same settings?

For each language (synthetic `en` and `ko`, sized like the quickstart), two sides train the quickstart's
first member (a BERT with hidden size 64 and 2 layers built from scratch; focal loss with gamma 2,
alpha 1, label smoothing 0.1; constant LR 1e-3; 5 epochs; early stopping patience 3; checkpoint
selection by `eval_accuracy`) once per seed:

(a) runner: a spec generated from specs/quickstart.toml (that one member, `repeats = SEEDS`, the
    language), trained by the real CLI: `python -m runner.cli apply SPEC --store STORE`. Replica k
    trains with member seed 13 + 1000 k. Its numbers are read back from the store: the checkpoint the
    `best_eval_accuracy` strategy selected and that checkpoint's stored test predictions.
(b) plain: the notebook's way, written here independently of runner's training code: a `Trainer`
    subclass that overrides `compute_loss(self, model, inputs, return_outputs=False,
    num_items_in_batch=None)` with its own focal loss (the label-smoothed cross-entropy times
    alpha_y (1 - p_y)^gamma), a `BertConfig` built from the spec's numbers, `set_seed(seed)` then
    `from_config` (the same seed as runner's replica), `TrainingArguments` from the spec's values,
    validation every epoch, `load_best_model_at_end` with `metric_for_best_model="eval_accuracy"`,
    early stopping, and, as the script of the issue this bench answers did, the test split predicted
    every epoch too (in a callback, inside `torch.random.fork_rng`: a DataLoader draws a seed from
    torch's generator, which would otherwise shift the training's random stream); the test
    accuracy of the best epoch is then checked against a prediction with the model loaded at the end.
    Same data: the train/valid/test split is runner's (the synthetic loader's rows split by
    `runner.data.prepare.prepare`); the script checks that its content hash equals the `dataset_id` runner
    stored and that its texts and labels are the stored `examples`. Same tokenizer: it loads the
    tokenizer files runner saved with each replica's selected checkpoint (and checks that every
    replica's files are byte-identical: the scratch tokenizer is deterministic). Same model config:
    its `BertConfig` is checked against the `config.json` runner saved.

Reported per language: mean selected-checkpoint test accuracy of each side, the difference
runner - plain with two 95% intervals (a t-interval of the per-seed differences, paired by seed; and
runner.analysis.stats' paired two-level bootstrap over seeds x test examples), how many seeds gave identical
test predictions, and the wall-time ratio runner / plain (each side is one subprocess training every
seed, timed start to exit; both predict valid and test every epoch, and runner also runs its
validation dry run, writes every epoch's predictions to the store and averages SWA over the last 2
epochs, predicting both splits with it). Target: |difference| <= 0.3 point, the interval containing 0.

    python bench/parity.py                         # en and ko, 5 seeds each
    python bench/parity.py --languages ko --seeds 10 --size 3000
    python bench/parity.py --languages ko --seeds 2 --size 300 --epochs 2   # what tests/train/test_parity.py runs

The last line of output is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "specs" / "quickstart.toml"
STRATEGY = "best_eval_accuracy"
# two-sided 95% quantiles of Student's t, by degrees of freedom (no scipy here); beyond 30: normal
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
        10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101,
        19: 2.093, 20: 2.086, 21: 2.080, 22: 2.074, 23: 2.069, 24: 2.064, 25: 2.060, 26: 2.056, 27: 2.052,
        28: 2.048, 29: 2.045, 30: 2.042}


def t_interval(diffs: list[float]) -> tuple[float, float, float, float]:
    """(mean, sd, low, high): the 95% t-interval of the mean of paired differences."""
    n = len(diffs)
    mean = sum(diffs) / n
    if n < 2:
        return mean, float("nan"), float("nan"), float("nan")
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
    half = T975.get(n - 1, 1.960) * sd / math.sqrt(n)
    return mean, sd, mean - half, mean + half


# -- the spec ------------------------------------------------------------------------------------------


def spec_text(language: str, seeds: int, size: int | None, modulation: str | None = None,
              name: str | None = None, epochs: int | None = None) -> str:
    """The quickstart with only its first member, for `language`, trained `seeds` times."""
    q = tomllib.loads(QUICKSTART.read_text())
    d, t, loss, m = q["data"], q["train"], q["loss"], q["members"][0]
    if epochs is not None:
        t["epochs"] = epochs
        q["swa"]["k"] = min(q["swa"]["k"], epochs)
    o = m["options"]
    size = size or q["data"]["options"]["size"]
    lines = [
        f'name = "{name or f"parity-{language}"}"',
        f"seed = {q['seed']}",
        f"repeats = {seeds}",
        "",
        "[data]",
        'source = "synthetic"',
        f"valid = {d['valid']}",
        f"test = {d['test']}",
        f"max_length = {d['max_length']}",
        "",
        "[data.options]",
        f"size = {size}",
        f'language = "{language}"',
        "",
        "[train]",
        *(f"{k} = {json.dumps(v)}" for k, v in t.items()),
        "",
        "[loss]",
        *(f"{k} = {json.dumps(v)}" for k, v in loss.items()),
        *([f'modulation = "{modulation}"'] if modulation else []),
        "",
        "[selection]",
        *(f"{k} = {json.dumps(v)}" for k, v in q["selection"].items()),
        "",
        "[swa]",
        f"k = {q['swa']['k']}",
        "",
        "[[members]]",
        f'name = "{m["name"]}"',
        'backbone = "scratch"',
        "options = { " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in o.items()) + " }",
    ]
    return "\n".join(lines) + "\n"


def run_cli(args: list[str], env: dict) -> float:
    """Seconds the real CLI took, start to exit; stops the bench if it fails."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "runner.cli", *args], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"runner {args[0]} failed with exit code {proc.returncode}")
    return time.perf_counter() - t0


def stored_replicas(store: Path, name: str) -> list[dict]:
    """Per replica of `name` (in repeat order): run id, member, seed, selected checkpoint and epoch,
    its test accuracy, and per-example test predictions by idx."""
    import duckdb
    import numpy as np

    con = duckdb.connect(str(store), read_only=True)
    try:
        runs = con.execute("SELECT run_id, dataset_id FROM runs WHERE repeat_group = "
                           "(SELECT repeat_group FROM runs WHERE name = ?) ORDER BY repeat_index", [name]).fetchall()
        out = []
        for run_id, dataset_id in runs:
            member, seed = con.execute("SELECT member, seed FROM members WHERE run_id = ?", [run_id]).fetchone()
            checkpoint = con.execute("SELECT checkpoint FROM selections WHERE run_id = ? AND member = ? "
                                     "AND strategy = ?", [run_id, member, STRATEGY]).fetchone()[0]
            rows = con.execute("SELECT idx, pred, epoch FROM predictions WHERE run_id = ? AND kind = 'member' AND "
                               "member = ? AND checkpoint = ? AND split = 'test' ORDER BY idx",
                               [run_id, member, checkpoint]).fetchall()
            acc = con.execute("SELECT value FROM metrics WHERE run_id = ? AND kind = 'member' AND member = ? "
                              "AND checkpoint = ? AND split = 'test' AND name = 'accuracy'",
                              [run_id, member, checkpoint]).fetchone()[0]
            out.append({"run_id": run_id, "dataset_id": dataset_id, "member": member, "seed": int(seed),
                        "checkpoint": checkpoint, "epoch": int(rows[0][2]), "test_accuracy": float(acc),
                        "pred": np.array([r[1] for r in rows], dtype=np.int64)})
        labels = con.execute("SELECT label FROM examples WHERE dataset_id = ? AND split = 'test' ORDER BY idx",
                             [out[0]["dataset_id"]]).fetchall()
        examples = {split: con.execute("SELECT text, label FROM examples WHERE dataset_id = ? AND split = ? "
                                       "ORDER BY idx", [out[0]["dataset_id"], split]).fetchall()
                    for split in ("train", "valid", "test")}
    finally:
        con.close()
    for r in out:
        r["labels"] = np.array([x[0] for x in labels], dtype=np.int64)
    return out, examples


def files_digest(folder: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in folder.iterdir() if p.name.startswith(("tokenizer", "special_tokens", "vocab"))):
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


# -- (b) the plain Trainer script ------------------------------------------------------------------------


def plain_main(config_path: str, result_path: str) -> None:
    """Train every seed the notebook's way; write per-seed predictions and figures as JSON."""
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    import numpy as np
    import torch
    import torch.nn.functional as F
    from transformers import (
        AutoTokenizer,
        BertConfig,
        BertForSequenceClassification,
        DataCollatorWithPadding,
        EarlyStoppingCallback,
        Trainer,
        TrainerCallback,
        TrainingArguments,
        set_seed,
    )
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    logging.getLogger("transformers").setLevel(logging.ERROR)
    cfg = json.loads(Path(config_path).read_text())
    spec = tomllib.loads(Path(cfg["spec"]).read_text())
    d, t, lc, sel, m = spec["data"], spec["train"], spec["loss"], spec["selection"], spec["members"][0]
    o = m["options"]

    # the data: runner's split of the synthetic loader's rows, checked against what runner stored
    from types import SimpleNamespace

    from runner.data import synthetic
    from runner.data.prepare import prepare
    from runner.plugins.contexts import RawDataset

    texts, labels = synthetic.generate(d["options"]["size"], seed=spec["seed"], language=d["options"]["language"])
    raw = RawDataset(splits={"train": [{"text": x, "label": int(y)} for x, y in zip(texts, labels)]},
                     label_names=list(synthetic.LABEL_NAMES))
    data = prepare(SimpleNamespace(source="synthetic", valid=d["valid"], test=d["test"], labels=None,
                                   text_column="text", label_column="label"), raw, spec["seed"])
    assert data.dataset_id == cfg["dataset_id"], "not the data runner trained on"
    for split, rows in cfg["examples"].items():
        assert [[x, int(y)] for x, y in zip(data.splits[split].texts, data.splits[split].labels)] == rows, split
    num_labels = data.num_labels

    class Encoded(torch.utils.data.Dataset):
        def __init__(self, tokenizer, split):
            self.enc = tokenizer(split.texts, truncation=True, max_length=d["max_length"])
            self.labels = split.labels

        def __len__(self):
            return len(self.labels)

        def __getitem__(self, i):
            item = {k: self.enc[k][i] for k in self.enc}
            item["labels"] = int(self.labels[i])
            return item

    gamma, smoothing = float(lc["gamma"]), float(lc["label_smoothing"])
    alpha = torch.full((num_labels,), float(lc["alpha"])) if isinstance(lc["alpha"], (int, float)) \
        else torch.tensor(lc["alpha"], dtype=torch.float32)

    class FocalTrainer(Trainer):
        """The notebook's loss: the label-smoothed cross-entropy times alpha_y * (1 - p_y)^gamma."""

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            labels = inputs.pop("labels")
            outputs = model(**inputs)
            logits = outputs.logits.float()
            ce = F.cross_entropy(logits, labels, reduction="none", label_smoothing=smoothing)
            p_true = torch.softmax(logits, dim=-1).gather(1, labels.unsqueeze(1)).squeeze(1)
            loss = (alpha.to(logits.device)[labels] * (1 - p_true) ** gamma * ce).mean()
            return (loss, outputs) if return_outputs else loss

    def accuracy(eval_pred):
        logits = eval_pred.predictions[0] if isinstance(eval_pred.predictions, tuple) else eval_pred.predictions
        return {"accuracy": float((np.argmax(logits, -1) == eval_pred.label_ids).mean())}

    class TestEveryEpoch(TrainerCallback):
        """The test split predicted after each validation, as the issue's script did, inside a forked
        RNG: a DataLoader draws a seed from torch's generator, and training must not see the draw."""

        def __init__(self, dataset):
            self.dataset, self.trainer, self.accuracy = dataset, None, {}

        def on_evaluate(self, args, state, control, **kwargs):
            with torch.random.fork_rng(devices=[]):
                out = self.trainer.predict(self.dataset)
            self.accuracy[int(round(state.epoch))] = float((np.argmax(out.predictions, -1) == out.label_ids).mean())

    results = []
    for rep in cfg["replicas"]:
        seed, work = rep["seed"], Path(cfg["work"]) / f"seed-{rep['seed']}"
        tokenizer = AutoTokenizer.from_pretrained(rep["tokenizer_dir"])
        set_seed(seed)
        config = BertConfig(vocab_size=len(tokenizer), hidden_size=o["hidden_size"], num_hidden_layers=o["layers"],
                            num_attention_heads=o["heads"], intermediate_size=4 * o["hidden_size"],
                            hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
                            max_position_embeddings=d["max_length"], pad_token_id=tokenizer.pad_token_id,
                            num_labels=num_labels)
        model = BertForSequenceClassification(config)
        args = TrainingArguments(
            output_dir=str(work), num_train_epochs=t["epochs"], per_device_train_batch_size=t["batch_size"],
            per_device_eval_batch_size=2 * t["batch_size"], learning_rate=t["learning_rate"],
            lr_scheduler_type=t["lr_scheduler"], seed=seed, eval_strategy="epoch", save_strategy="epoch",
            logging_strategy="epoch", load_best_model_at_end=True, metric_for_best_model="eval_accuracy",
            save_total_limit=2, report_to="none", disable_tqdm=True, use_cpu=not torch.cuda.is_available(),
        )
        test = Encoded(tokenizer, data.splits["test"])
        every_epoch = TestEveryEpoch(test)
        trainer = FocalTrainer(model=model, args=args, train_dataset=Encoded(tokenizer, data.splits["train"]),
                               eval_dataset=Encoded(tokenizer, data.splits["valid"]), processing_class=tokenizer,
                               data_collator=DataCollatorWithPadding(tokenizer), compute_metrics=accuracy,
                               callbacks=[EarlyStoppingCallback(early_stopping_patience=sel["early_stopping_patience"]),
                                          every_epoch])
        every_epoch.trainer = trainer
        if cfg.get("callback_store"):  # --callback: the same script with runner.hf.StoreCallback added
            from runner.hf import StoreCallback

            trainer.add_callback(StoreCallback(store=cfg["callback_store"], name="plain", member=f"seed-{seed}",
                                               labels=data.label_names, swa=0, say=lambda _: None,
                                               splits={"valid": trainer.eval_dataset, "test": test},
                                               texts={s: data.splits[s].texts for s in ("valid", "test")}))
        trainer.train()
        evals = [(int(round(h["epoch"])), h["eval_accuracy"]) for h in trainer.state.log_history
                 if "eval_accuracy" in h]
        best_epoch = max(evals, key=lambda e: (e[1], -e[0]))[0]  # Trainer keeps the first best
        out = trainer.predict(test)  # the best checkpoint, loaded at the end
        pred = np.argmax(out.predictions, -1)
        accuracy_now = float((pred == data.splits["test"].labels).mean())
        assert abs(accuracy_now - every_epoch.accuracy[best_epoch]) < 1e-9, "the loaded model is not the best epoch's"
        results.append({"seed": seed, "epoch": best_epoch, "pred": pred.tolist(), "test_accuracy": accuracy_now,
                        "config": {k: getattr(config, k) for k in cfg["config_keys"]}})
    Path(result_path).write_text(json.dumps(results))


# -- the driver ----------------------------------------------------------------------------------------------


CONFIG_KEYS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
               "hidden_dropout_prob", "attention_probs_dropout_prob", "max_position_embeddings", "pad_token_id",
               "type_vocab_size", "hidden_act", "layer_norm_eps", "initializer_range")


def one_language(language: str, seeds: int, size: int | None, tmp: Path, env: dict, epochs: int | None = None,
                 callback: bool = False) -> dict:
    import numpy as np

    from runner.analysis.stats import paired_bootstrap

    work = tmp / language
    (work / "specs").mkdir(parents=True)
    spec = work / "specs" / f"parity-{language}.toml"
    spec.write_text(spec_text(language, seeds, size, epochs=epochs))
    store = work / "results.duckdb"
    runner_s = run_cli(["apply", str(spec), "--store", str(store)], env)
    reps, examples = stored_replicas(store, f"parity-{language}")
    tokenizer_dirs = [work / "runs" / r["run_id"] / r["member"] / "selected" for r in reps]
    digests = {files_digest(p) for p in tokenizer_dirs}
    cfg = {"spec": str(spec), "work": str(work / "plain"), "dataset_id": reps[0]["dataset_id"],
           "examples": {k: [[x, int(y)] for x, y in v] for k, v in examples.items()},
           "replicas": [{"seed": r["seed"], "tokenizer_dir": str(p)} for r, p in zip(reps, tokenizer_dirs)],
           "config_keys": CONFIG_KEYS}
    if callback:
        cfg["callback_store"] = str(work / "plain.duckdb")
    (work / "plain.json").write_text(json.dumps(cfg))
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "_plain", str(work / "plain.json"), str(work / "plain_out.json")],
                          env=env, capture_output=True, text=True)
    plain_s = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"the plain script failed with exit code {proc.returncode}")
    plain = json.loads((work / "plain_out.json").read_text())

    same_config = True
    for r, p, folder in zip(reps, plain, tokenizer_dirs):
        saved = json.loads((folder / "config.json").read_text())
        same_config &= all(saved.get(k) == p["config"][k] for k in CONFIG_KEYS)
    labels = reps[0]["labels"]
    a = np.stack([(r["pred"] == labels).astype(np.float64) for r in reps])  # per-example correctness
    b = np.stack([(np.array(p["pred"]) == labels).astype(np.float64) for p in plain])
    acc_a = [r["test_accuracy"] for r in reps]
    acc_b = [p["test_accuracy"] for p in plain]
    diffs = [x - y for x, y in zip(acc_a, acc_b)]
    mean, sd, low, high = t_interval(diffs)
    boot = paired_bootstrap(a, b)
    stored = callback_parity(store, work / "plain.duckdb", reps) if callback else {}
    return {
        **stored,
        "language": language, "seeds": len(reps), "examples": int(a.shape[1]),
        "runner_mean": float(np.mean(acc_a)), "plain_mean": float(np.mean(acc_b)),
        "difference": mean, "difference_sd": sd, "t95": [low, high], "t95_width": high - low,
        "bootstrap95": [boot.low, boot.high], "bootstrap95_width": boot.high - boot.low,
        "identical_predictions": sum(int(np.array_equal(r["pred"], np.array(p["pred"]))) for r, p in zip(reps, plain)),
        "same_selected_epoch": sum(int(r["epoch"] == p["epoch"]) for r, p in zip(reps, plain)),
        "same_tokenizer_files": len(digests) == 1, "same_config": bool(same_config),
        "same_data": True,  # the plain script asserts it
        "runner_s": runner_s, "plain_s": plain_s, "wall_ratio": runner_s / plain_s,
        "per_seed": [{"seed": r["seed"], "runner": r["test_accuracy"], "plain": p["test_accuracy"],
                      "runner_epoch": r["epoch"], "plain_epoch": p["epoch"]} for r, p in zip(reps, plain)],
    }


def callback_parity(store: Path, plain_store: Path, reps: list[dict]) -> dict:
    """--callback: runner's stored probabilities against those StoreCallback stored from the plain script,
    seed by seed, for every epoch and split both hold: the largest difference, and how many epochs' test
    predictions (argmax) are identical."""
    import duckdb
    import numpy as np

    def probs(path: Path, run_where: str, arg: str, member_where: str, member: str) -> dict:
        con = duckdb.connect(str(path), read_only=True)
        try:
            rows = con.execute("SELECT p.checkpoint, p.split, p.idx, p.probs FROM predictions p JOIN runs r USING "
                               f"(run_id) WHERE {run_where} AND {member_where} AND p.kind = 'member' "
                               "AND p.checkpoint LIKE 'epoch-%' ORDER BY ALL", [arg, member]).fetchall()
        finally:
            con.close()
        out: dict = {}
        for checkpoint, split, _, p in rows:
            out.setdefault((checkpoint, split), []).append(p)
        return {k: np.array(v) for k, v in out.items()}

    worst, same, total = 0.0, 0, 0
    for r in reps:
        a = probs(store, "r.run_id = ?", r["run_id"], "p.member = ?", r["member"])
        b = probs(plain_store, "r.name = ?", "plain", "p.member = ?", f"seed-{r['seed']}")
        for key in sorted(set(a) & set(b)):
            worst = max(worst, float(np.abs(a[key] - b[key]).max()))
            if key[1] == "test":
                total += 1
                same += int(np.array_equal(a[key].argmax(1), b[key].argmax(1)))
    return {"callback_max_abs_prob_diff": worst, "callback_identical_test_epochs": f"{same}/{total}"}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="runner apply vs a plain Trainer script: accuracy over seeds, time.")
    ap.add_argument("--languages", nargs="+", default=["en", "ko"], choices=["en", "ko"])
    ap.add_argument("--seeds", type=int, default=5, help="seeds per language (runner's `repeats`)")
    ap.add_argument("--size", type=int, default=None, help="synthetic reviews (default: the quickstart's)")
    ap.add_argument("--epochs", type=int, default=None, help="[train].epochs (default: the quickstart's)")
    ap.add_argument("--callback", action="store_true", help="also add runner.hf.StoreCallback to the plain script "
                                                            "and compare its stored probabilities with runner's")
    opts = ap.parse_args(argv)
    if opts.seeds < 2:
        ap.error("--seeds must be at least 2 (an interval needs two)")

    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(Console().width, 160))
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false", PYTHONWARNINGS="ignore")
    out = []
    with tempfile.TemporaryDirectory(prefix="runner-parity-") as tmp:
        for language in opts.languages:
            r = one_language(language, opts.seeds, opts.size, Path(tmp), env, opts.epochs, opts.callback)
            out.append(r)
            for s in r["per_seed"]:
                console.print(f"{language} seed {s['seed']}: runner {s['runner']:.4f} (epoch {s['runner_epoch']}), "
                              f"plain {s['plain']:.4f} (epoch {s['plain_epoch']})", highlight=False)
    table = Table(title="runner vs a plain Trainer script · selected-checkpoint test accuracy, mean over seeds")
    for col in ("data", "seeds", "runner", "plain", "runner - plain", "95% t (width)", "95% bootstrap (width)",
                "identical preds", "wall ratio"):
        table.add_column(col, justify="right")
    for r in out:
        table.add_row(f"synthetic {r['language']} ({r['examples']} test)", str(r["seeds"]), f"{r['runner_mean']:.4f}",
                      f"{r['plain_mean']:.4f}", f"{100 * r['difference']:+.2f} pt",
                      f"[{100 * r['t95'][0]:+.2f}, {100 * r['t95'][1]:+.2f}] ({100 * r['t95_width']:.2f})",
                      f"[{100 * r['bootstrap95'][0]:+.2f}, {100 * r['bootstrap95'][1]:+.2f}] "
                      f"({100 * r['bootstrap95_width']:.2f})",
                      f"{r['identical_predictions']}/{r['seeds']}", f"{r['wall_ratio']:.3f}")
    console.print(table)
    console.print("same data (dataset hash and examples) / tokenizer files / model config: "
                  + "; ".join(f"{r['language']} {r['same_data']}/{r['same_tokenizer_files']}/{r['same_config']}"
                              for r in out), highlight=False)
    print(json.dumps({"bench": "parity", "results": out}))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_plain":
        plain_main(*sys.argv[2:4])
    else:
        main()
