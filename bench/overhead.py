"""Is runner faster than a plain Hugging Face `Trainer` script doing the same work?

One invocation trains the quickstart's first member (scratch BERT, hidden 64 x 2 layers) on runner's
synthetic English reviews (`--size` examples, 11,000 by default, split 70/15/15 as the quickstart
does) for `--epochs` epochs (6), once per member seed (`--seeds`, 3 by default), three ways, each in
its own Python subprocess so that all pay the same interpreter and import start-up:

(a) default: `runner apply SPEC --store <a fresh folder>` with the spec as the quickstart writes it:
    the real CLI (validation dry run, progress, end-of-run table), every epoch's metrics and every
    validation and test probability stored, the test split predicted every epoch, a checkpoint per
    epoch, SWA over the last 2. A fresh store folder per seed, so the tokenization cache
    (runner.data.tokenized) starts cold: its in-process level is all that helps.
(b) fast: the same spec with the settings that make runner fast on this machine without changing
    the model (`FAST`, printed with the results): `[train] group_by_length = true` (Trainer's
    length grouping, the batches in random order (runner.train.sampling): batches of similar lengths pad
    little), and one store folder shared by
    the seeds, as `repeats`, a sweep or a re-run share one, so every seed after the first reads its
    tokens from `tokenized/` instead of tokenizing (the first seed pays for it).
(c) plain: the notebook's way: a `Trainer` evaluating the validation *and* test split every epoch
    (`eval_dataset={"valid": ..., "test": ...}`), a checkpoint every epoch, `load_best_model_at_end`
    on the validation accuracy, `save_total_limit=2`, early stopping with the spec's patience, focal
    loss through `compute_loss_func`, accuracy through `compute_metrics`; no store, no SWA, texts
    tokenized in the script. It uses exactly runner's inputs: the split from
    `runner.data.synthetic.generate` + `runner.data.prepare.prepare` (checked: its dataset hash equals the one
    runner stored), the model and tokenizer from `runner.builtins.backbones.build_scratch` with the
    same seed, every `TrainingArguments` value from runner's resolution of the spec.

Accuracy beside time: for each run the *selected checkpoint* is the epoch with the best validation
accuracy (ties to the earliest: runner's `best_eval_accuracy`, and what `load_best_model_at_end`
keeps), and its test accuracy is reported; means over the seeds. Wall time is measured around each
subprocess (start to exit); the ratios are each variant's mean wall time over plain's. CPU time
(user + sys, from `getrusage`) is shown too. The order of the three alternates from seed to seed.

Threads: the subprocesses run with OMP_NUM_THREADS / MKL_NUM_THREADS removed from their
environment, so torch uses every core, as a user's run would. Run it alone (under
`flock /tmp/runner-heavy.lock`): a benchmark measured beside another job is noise.

The runner subprocesses start through a small bootstrap (`_runner` mode of this script) that times
runner's bulk store writes (`Store.log_checkpoint`, `Store.put_examples`: rows written / seconds
inside them), every other `Store` call, `Trainer.predict` (the test split every epoch, SWA) and the
tokenization (runner.data.tokenized: tokenizing, or reading `tokenized/`) before it hands over to
`runner.cli.app`. Before the runs, `--tokenization` (on by default) times one member's tokenization
in process on the quickstart's data and on `--size`: what it cost before the cache (the dry run and
the training each tokenized every split), a miss, a hit in memory, a hit on disk.

    python bench/overhead.py                          # 11,000 reviews, 6 epochs, seeds 1 2 3
    python bench/overhead.py --size 3000 --epochs 2 --seeds 1   # a quick look
    python bench/overhead.py --no-tokenization        # the training comparison only

The last line of output is one JSON object with the figures (for the README / notes).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "specs" / "quickstart.toml"
# What `fast` turns on, as (spec key, value); and what it does beyond the spec (printed with the table)
FAST = (("train.group_by_length", True),)
FAST_NOTES = ("[train] group_by_length = true (length-grouped batches, in random order)", "tokenization cache warm: one store folder for all seeds")
VARIANTS = ("default", "fast", "plain")


# -- a minimal TOML writer (the spec has strings, numbers, booleans, lists and tables only) ------------


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def to_toml(doc: dict) -> str:
    lines = [f"{k} = {_toml_value(v)}" for k, v in doc.items() if not isinstance(v, (dict, list)) or
             (isinstance(v, list) and not all(isinstance(x, dict) for x in v))]
    for k, v in doc.items():
        if isinstance(v, dict):
            sub = {kk: vv for kk, vv in v.items() if isinstance(vv, dict)}
            lines.append(f"\n[{k}]")
            lines += [f"{kk} = {_toml_value(vv)}" for kk, vv in v.items() if kk not in sub]
            for kk, vv in sub.items():
                lines.append(f"\n[{k}.{kk}]")
                lines += [f"{kkk} = {_toml_value(vvv)}" for kkk, vvv in vv.items()]
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            for item in v:
                lines.append(f"\n[[{k}]]")
                lines += [f"{kk} = {_toml_value(vv)}" for kk, vv in item.items()]
    return "\n".join(lines) + "\n"


def derived_spec(size: int, epochs: int, seed: int, fast: bool) -> dict:
    """The quickstart with its first member only, `size` examples, `epochs` epochs, member seed `seed`."""
    doc = tomllib.loads(QUICKSTART.read_text())
    doc["name"] = "overhead-fast" if fast else "overhead"
    doc["members"] = doc["members"][:1]
    doc["members"][0]["seed"] = seed
    doc["data"].setdefault("options", {})["size"] = size
    doc["train"]["epochs"] = epochs
    if doc.get("swa", {}).get("k", 0) > epochs:  # runner refuses SWA over more epochs than it trains
        doc["swa"]["k"] = epochs
    if fast:
        for key, value in FAST:
            section, field = key.split(".")
            doc[section][field] = value
    return doc


def plain_config(spec_path: Path) -> dict:
    """Every value the plain script needs, from runner's own resolution of the derived spec."""
    from runner.plugins.registry import default_plugins_dir, load_registry
    from runner.spec import load_and_resolve

    resolved = load_and_resolve(spec_path, load_registry(default_plugins_dir(spec_path)))
    spec, m = resolved.spec, resolved.members[0]
    t = m.train
    return {
        "spec_seed": spec.seed,
        "data": {"valid": spec.data.valid, "test": spec.data.test, "labels": spec.data.labels,
                 "text_column": spec.data.text_column, "label_column": spec.data.label_column,
                 "max_length": spec.data.max_length, "special_tokens": list(spec.data.special_tokens),
                 "options": resolved.data_options.model_dump(mode="json")},
        "member": {"name": m.name, "seed": m.seed, "options": m.options.model_dump(mode="json")},
        "train": {"epochs": t.epochs, "batch_size": t.batch_size,
                  "eval_batch_size": t.eval_batch_size or 2 * t.batch_size,
                  "learning_rate": t.learning_rate, "lr_scheduler": t.lr_scheduler, "warmup": t.warmup,
                  "weight_decay": t.weight_decay, "gradient_accumulation_steps": t.gradient_accumulation_steps,
                  "max_grad_norm": t.max_grad_norm, "trainer_args": t.trainer_args},
        "loss": {"name": m.loss.name, "label_smoothing": m.loss.label_smoothing,
                 **m.loss_options.model_dump(mode="json")},
        "patience": spec.selection.early_stopping_patience,
        "metric": resolved.metric,
    }


# -- (a), (b) the runner subprocess -------------------------------------------------------------------


def runner_main(spec: str, store: str, timing_out: str) -> None:
    """Bootstrap: time Store calls, predictions and tokenization, then run the real CLI."""
    import atexit
    import functools

    from runner.data import tokenized
    from runner.store import store as store_mod

    stats = {"insert_rows": 0, "insert_s": 0.0, "insert_calls": 0, "store_other_s": 0.0, "store_other_calls": 0,
             "predict_s": 0.0, "predict_calls": 0, "tokenize_s": 0.0, "tokenize_calls": 0,
             "token_read_s": 0.0, "token_read_calls": 0}
    depth = [0]

    def wrap(name, bulk):
        fn = getattr(store_mod.Store, name)

        @functools.wraps(fn)
        def timed(*args, **kwargs):
            depth[0] += 1
            out = None
            t0 = time.perf_counter()
            try:
                out = fn(*args, **kwargs)
                return out
            finally:
                dt = time.perf_counter() - t0
                depth[0] -= 1
                if depth[0] == 0:  # count only the outermost Store call
                    if bulk:
                        stats["insert_s"] += dt
                        stats["insert_calls"] += 1
                        stats["insert_rows"] += int(out or 0)
                    else:
                        stats["store_other_s"] += dt
                        stats["store_other_calls"] += 1

        setattr(store_mod.Store, name, timed)

    for name in ("log_checkpoint", "put_examples"):
        wrap(name, bulk=True)
    for name, member in list(vars(store_mod.Store).items()):
        if callable(member) and not name.startswith("_") and name not in ("log_checkpoint", "put_examples",
                                                                          "connect", "transaction"):
            wrap(name, bulk=False)

    def timer(owner, name, key):
        fn = getattr(owner, name)

        @functools.wraps(fn)
        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                stats[f"{key}_s"] += time.perf_counter() - t0
                stats[f"{key}_calls"] += 1

        setattr(owner, name, timed)

    import transformers

    timer(transformers.Trainer, "predict", "predict")  # the test split every epoch, and SWA
    timer(tokenized, "_tokenize_all", "tokenize")  # a cache miss: every split of the data
    timer(tokenized, "_read", "token_read")  # a look in tokenized/ (a hit, or nothing there yet)
    atexit.register(lambda: Path(timing_out).write_text(json.dumps(stats)))

    from runner.cli import app

    app(["apply", spec, "--store", store], prog_name="runner")


# -- (c) the plain Trainer subprocess ---------------------------------------------------------------------


def plain_main(config_path: str, out_dir: str, result_out: str) -> None:
    """The notebook's training, with runner's data and model builders and nothing stored."""
    import logging
    import warnings
    from types import SimpleNamespace

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore")
    import numpy as np
    import torch
    from transformers import DataCollatorWithPadding, EarlyStoppingCallback, Trainer, TrainingArguments, set_seed
    from transformers.utils import logging as hf_logging

    from runner.builtins.backbones import ScratchOptions, build_scratch
    from runner.data import synthetic
    from runner.data.prepare import prepare
    from runner.plugins.contexts import BackboneContext, RawDataset
    from runner.train.losses import focal_loss

    hf_logging.set_verbosity_error()
    logging.getLogger("transformers").setLevel(logging.ERROR)
    cfg = json.loads(Path(config_path).read_text())
    d, m, t, lc = cfg["data"], cfg["member"], cfg["train"], cfg["loss"]

    # data: the synthetic loader's rows, split by runner.data.prepare.prepare (same seeds as runner)
    opts = d["options"]
    texts, labels = synthetic.generate(opts["size"], seed=cfg["spec_seed"], language=opts["language"],
                                       noise=opts["noise"])
    raw = RawDataset(splits={"train": [{"text": x, "label": int(y)} for x, y in zip(texts, labels)]},
                     label_names=list(synthetic.LABEL_NAMES))
    data_spec = SimpleNamespace(source="synthetic", valid=d["valid"], test=d["test"], labels=d["labels"],
                                text_column=d["text_column"], label_column=d["label_column"])
    data = prepare(data_spec, raw, cfg["spec_seed"])
    train, valid, test = data.splits["train"], data.splits["valid"], data.splits["test"]

    # model and tokenizer: the scratch backbone, seeded as runner seeds it
    set_seed(m["seed"])
    ctx = BackboneContext(model=None, num_labels=data.num_labels, label_names=data.label_names,
                          train_texts=train.texts, special_tokens=d["special_tokens"],
                          max_length=d["max_length"], seed=m["seed"])
    model, tokenizer = build_scratch(ctx, ScratchOptions(**m["options"]))

    class Encoded(torch.utils.data.Dataset):
        def __init__(self, split):
            self.enc = tokenizer(split.texts, truncation=True, max_length=d["max_length"])
            self.labels = split.labels

        def __len__(self):
            return len(self.labels)

        def __getitem__(self, i):
            item = {k: self.enc[k][i] for k in ("input_ids", "attention_mask", "token_type_ids") if k in self.enc}
            item["labels"] = int(self.labels[i])
            return item

    assert lc["name"] == "focal", "the quickstart uses focal loss"
    alpha = lc["alpha"]
    if isinstance(alpha, (int, float)):
        alpha = torch.full((data.num_labels,), float(alpha))
    elif isinstance(alpha, list):
        alpha = torch.tensor(alpha, dtype=torch.float32)
    elif alpha is not None:
        raise SystemExit(f"alpha {alpha!r} is not handled by this benchmark")

    def compute_loss(outputs, labels, num_items_in_batch=None):
        return focal_loss(outputs.logits, labels, gamma=lc["gamma"], alpha=alpha,
                          label_smoothing=lc["label_smoothing"])

    def compute_metrics(eval_pred):
        logits = eval_pred.predictions[0] if isinstance(eval_pred.predictions, tuple) else eval_pred.predictions
        return {"accuracy": float((np.argmax(logits, -1) == eval_pred.label_ids).mean())}

    args = TrainingArguments(
        output_dir=out_dir,
        num_train_epochs=t["epochs"],
        per_device_train_batch_size=t["batch_size"],
        per_device_eval_batch_size=t["eval_batch_size"],
        learning_rate=t["learning_rate"],
        lr_scheduler_type=t["lr_scheduler"],
        warmup_steps=t["warmup"],
        weight_decay=t["weight_decay"],
        gradient_accumulation_steps=t["gradient_accumulation_steps"],
        max_grad_norm=t["max_grad_norm"],
        seed=m["seed"],
        eval_strategy="epoch",
        save_strategy="epoch",
        logging_strategy="epoch",
        load_best_model_at_end=True,
        metric_for_best_model="eval_valid_accuracy",
        save_total_limit=2,
        report_to="none",
        disable_tqdm=True,
        dataloader_pin_memory=torch.cuda.is_available(),
        **t["trainer_args"],
    )
    callbacks = [EarlyStoppingCallback(early_stopping_patience=cfg["patience"])] if cfg["patience"] else []
    t0 = time.perf_counter()
    train_ds, eval_ds = Encoded(train), {"valid": Encoded(valid), "test": Encoded(test)}
    tokenize_s = time.perf_counter() - t0
    trainer = Trainer(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                      processing_class=tokenizer, data_collator=DataCollatorWithPadding(tokenizer),
                      compute_metrics=compute_metrics, compute_loss_func=compute_loss, callbacks=callbacks)
    trainer.train()
    rows = {}
    for h in trainer.state.log_history:
        for split in ("valid", "test"):
            if f"eval_{split}_accuracy" in h:
                rows.setdefault(int(round(h["epoch"])), {})[split] = h[f"eval_{split}_accuracy"]
    Path(result_out).write_text(json.dumps({"dataset_id": data.dataset_id, "tokenize_s": tokenize_s,
                                            "epochs": {e: r for e, r in sorted(rows.items())}}))


# -- tokenization, in process ------------------------------------------------------------------------------


def tokenization_figures(size: int, root: Path) -> dict:
    """One member's tokenization of every split, in seconds: before the cache (dry run + training
    each tokenized it all), a miss, a memory hit, a disk hit (a new process: memory empty)."""
    from types import SimpleNamespace

    from runner.builtins.backbones import ScratchOptions, build_scratch
    from runner.data import synthetic, tokenized
    from runner.data.prepare import prepare
    from runner.plugins.contexts import BackboneContext, RawDataset

    texts, labels = synthetic.generate(size, seed=13, language="en")
    raw = RawDataset(splits={"train": [{"text": x, "label": int(y)} for x, y in zip(texts, labels)]},
                     label_names=list(synthetic.LABEL_NAMES))
    spec = SimpleNamespace(source="synthetic", valid=0.15, test=0.15, labels=None, text_column="text",
                           label_column="label")
    data = prepare(spec, raw, 13)
    ctx = BackboneContext(model=None, num_labels=4, label_names=data.label_names,
                          train_texts=data.splits["train"].texts, max_length=64, seed=1)
    _, tok = build_scratch(ctx, ScratchOptions())

    def timed(fn) -> float:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    tokenized.MEMORY.clear()
    once = min(timed(lambda: tokenized._tokenize_all(tok, data, 64)) for _ in range(3))
    folder = root / f"tok{size}"
    miss = timed(lambda: tokenized.encoded_splits(tok, data, 64, folder))
    memory = timed(lambda: tokenized.encoded_splits(tok, data, 64, folder))
    tokenized.MEMORY.clear()
    disk = timed(lambda: tokenized.encoded_splits(tok, data, 64, folder))
    tokenized.MEMORY.clear()
    return {"texts": size, "before_s": 2 * once, "miss_s": miss, "memory_s": memory, "disk_s": disk}


# -- the driver --------------------------------------------------------------------------------------------


def timed_run(cmd: list[str], env: dict) -> tuple[float, float]:
    """(wall seconds, CPU seconds user+sys) of one subprocess, start to exit."""
    import resource

    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    dt = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout)
        raise SystemExit(f"{cmd[2]} failed with exit code {proc.returncode}")
    return dt, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)


def selected(epochs: dict[int, dict]) -> tuple[int, float, float]:
    """(epoch, valid accuracy, test accuracy) of the best validation accuracy, ties to the earliest."""
    best = None
    for e in sorted(epochs):
        if best is None or epochs[e]["valid"] > epochs[best]["valid"]:
            best = e
    return best, epochs[best]["valid"], epochs[best]["test"]


def runner_epochs(store: Path) -> tuple[str, dict[int, dict]]:
    import duckdb

    con = duckdb.connect(str(store), read_only=True)
    try:
        dataset_id = con.execute("SELECT dataset_id FROM runs").fetchall()[0][0]
        rows = con.execute("SELECT epoch, eval_accuracy, test_accuracy FROM epochs ORDER BY epoch").fetchall()
    finally:
        con.close()
    return dataset_id, {int(e): {"valid": float(v), "test": float(t)} for e, v, t in rows}


def one_run(variant: str, seed: int, tmp: Path, opts, env: dict) -> dict:
    spec_path = tmp / "spec" / f"{variant}-{seed}.toml"
    spec_path.write_text(to_toml(derived_spec(opts.size, opts.epochs, seed, fast=variant == "fast")))
    work = tmp / f"{variant}-{seed}"
    work.mkdir()
    if variant == "plain":
        cfg_path = work / "plain.json"
        cfg_path.write_text(json.dumps(plain_config(spec_path)))
        result = work / "plain_result.json"
        wall, cpu = timed_run([sys.executable, __file__, "_plain", str(cfg_path), str(work / "out"), str(result)], env)
        out = json.loads(result.read_text())
        epochs = {int(k): v for k, v in out["epochs"].items()}
        run = {"dataset_id": out["dataset_id"], "tokenize_s": out["tokenize_s"]}
    else:
        # fast: one store folder for every seed (the tokenization cache is shared); default: one each
        folder = tmp / "fast-store" if variant == "fast" else work / "store"
        folder.mkdir(exist_ok=True)
        timing = work / "timing.json"
        wall, cpu = timed_run([sys.executable, __file__, "_runner", str(spec_path), str(folder / f"r{seed}.duckdb"),
                               str(timing)], env)
        st = json.loads(timing.read_text())
        dataset_id, epochs = runner_epochs(folder / f"r{seed}.duckdb")
        run = {"dataset_id": dataset_id, "tokenize_s": st["tokenize_s"] + st["token_read_s"],
               "tokenized_now": st["tokenize_calls"] > 0, "insert_rows": st["insert_rows"],
               "insert_s": st["insert_s"], "store_s": st["insert_s"] + st["store_other_s"],
               "predict_s": st["predict_s"]}
    epoch, valid_acc, test_acc = selected(epochs)
    run.update(variant=variant, seed=seed, wall_s=wall, cpu_s=cpu, epochs=len(epochs), selected_epoch=epoch,
               valid_accuracy=valid_acc, test_accuracy=test_acc)
    return run


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="runner apply (default and fast settings) vs a plain Trainer script: "
                                             "wall time and test accuracy over member seeds.")
    ap.add_argument("--size", type=int, default=11000, help="synthetic reviews in all (70/15/15 split)")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="member seeds, one run of each variant")
    ap.add_argument("--threads", type=int, default=None,
                    help="cap torch's threads in the subprocesses (default: none, every core, as a user's run)")
    ap.add_argument("--no-tokenization", dest="tokenization", action="store_false",
                    help="skip the in-process tokenization timings")
    opts = ap.parse_args(argv)
    if opts.size < 100:
        ap.error("--size must be at least 100")
    if opts.epochs < 1:
        ap.error("--epochs must be at least 1")

    from rich.console import Console
    from rich.table import Table

    console = Console()
    # every core, as a user's run: the caller's thread caps are not passed on
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env.update(TOKENIZERS_PARALLELISM="false", PYTHONWARNINGS="ignore")
    if opts.threads:
        env.update(OMP_NUM_THREADS=str(opts.threads), MKL_NUM_THREADS=str(opts.threads))
    summary: dict = {"bench": "overhead", "size": opts.size, "epochs": opts.epochs, "seeds": opts.seeds,
                     "cpus": os.cpu_count(), "threads": opts.threads, "fast": list(FAST_NOTES)}
    with tempfile.TemporaryDirectory(prefix="runner-overhead-") as tmp:
        tmp = Path(tmp)
        (tmp / "spec").mkdir()
        if opts.tokenization:
            tok = Table(title="one member's tokenization of every split, in process (seconds)")
            for col in ("texts", "before the cache (dry run + training)", "miss", "memory hit", "disk hit"):
                tok.add_column(col, justify="right")
            figures = [tokenization_figures(n, tmp) for n in sorted({3000, opts.size})]
            for f in figures:
                tok.add_row(f"{f['texts']:,}", f"{f['before_s']:.3f}", f"{f['miss_s']:.3f}", f"{f['memory_s']:.4f}",
                            f"{f['disk_s']:.4f}")
            console.print(tok)
            summary["tokenization"] = [{k: round(v, 4) if isinstance(v, float) else v for k, v in f.items()}
                                       for f in figures]
        console.print(f"BERT h64 x 2 layers, {opts.size:,} synthetic reviews, {opts.epochs} epochs, member seeds "
                      f"{opts.seeds}, {os.cpu_count()} CPUs, subprocesses with "
                      f"{opts.threads or 'uncapped'} threads; fast = {'; '.join(FAST_NOTES)}", highlight=False, markup=False)
        runs: list[dict] = []
        for i, seed in enumerate(opts.seeds):
            order = VARIANTS[i % 3:] + VARIANTS[:i % 3]  # alternate who goes first
            for variant in order:
                r = one_run(variant, seed, tmp, opts, env)
                runs.append(r)
                console.print(f"seed {seed} {variant:>7}: {r['wall_s']:6.1f} s wall, {r['cpu_s']:6.1f} s CPU, "
                              f"{r['epochs']} epochs, selected epoch {r['selected_epoch']}: valid "
                              f"{r['valid_accuracy']:.4f}, test {r['test_accuracy']:.4f}; tokenization "
                              f"{r['tokenize_s']:.2f} s", highlight=False)

    by = {v: [r for r in runs if r["variant"] == v] for v in VARIANTS}
    mean = {v: {k: statistics.fmean(r[k] for r in by[v]) for k in ("wall_s", "cpu_s", "test_accuracy",
                                                                    "valid_accuracy", "tokenize_s")}
            for v in VARIANTS}
    sd = {v: statistics.stdev([r["test_accuracy"] for r in by[v]]) if len(by[v]) > 1 else 0.0 for v in VARIANTS}
    same_data = len({r["dataset_id"] for r in runs}) == 1
    same_epochs = {v: [r["epochs"] for r in by[v]] for v in VARIANTS}
    table = Table(title=f"runner apply vs a plain Trainer script · mean of {len(opts.seeds)} member seed(s)")
    for col in ("", "wall time", "× plain", "CPU time", "× plain ", "test acc (selected)", "Δ vs plain",
                "valid acc", "tokenization"):
        table.add_column(col, justify="left" if not col else "right")
    for v in VARIANTS:
        mv = mean[v]
        table.add_row(v, f"{mv['wall_s']:.1f} s", f"[bold]{mv['wall_s'] / mean['plain']['wall_s']:.3f}[/]",
                      f"{mv['cpu_s']:.1f} s", f"{mv['cpu_s'] / mean['plain']['cpu_s']:.3f}",
                      f"{mv['test_accuracy']:.4f} ± {sd[v]:.4f}",
                      f"{100 * (mv['test_accuracy'] - mean['plain']['test_accuracy']):+.2f} pt",
                      f"{mv['valid_accuracy']:.4f}", f"{mv['tokenize_s']:.2f} s")
    console.print(table)
    d = by["default"]
    console.print(f"runner default stored {statistics.fmean(r['insert_rows'] for r in d):,.0f} rows a run in "
                  f"{1000 * statistics.fmean(r['insert_s'] for r in d):.0f} ms of bulk writes "
                  f"({statistics.fmean(r['store_s'] for r in d):.2f} s in the store in all); Trainer.predict "
                  f"(test every epoch, SWA) {statistics.fmean(r['predict_s'] for r in d):.1f} s; same data "
                  f"(dataset hash) in every run: {same_data}; epochs trained {same_epochs}", highlight=False)
    summary.update({
        **{f"{v}_wall_s": round(mean[v]["wall_s"], 2) for v in VARIANTS},
        **{f"{v}_cpu_s": round(mean[v]["cpu_s"], 2) for v in VARIANTS},
        **{f"{v}_test_accuracy": round(mean[v]["test_accuracy"], 4) for v in VARIANTS},
        **{f"{v}_test_accuracy_sd": round(sd[v], 4) for v in VARIANTS},
        "default_ratio": round(mean["default"]["wall_s"] / mean["plain"]["wall_s"], 4),
        "fast_ratio": round(mean["fast"]["wall_s"] / mean["plain"]["wall_s"], 4),
        "same_data": same_data,
        "runs": [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items() if k != "dataset_id"}
                 for r in runs],
    })
    print(json.dumps(summary))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_runner":
        runner_main(*sys.argv[2:5])
    elif len(sys.argv) > 1 and sys.argv[1] == "_plain":
        plain_main(*sys.argv[2:5])
    else:
        main()
