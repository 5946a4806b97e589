"""Inputs for the contract search in tests/contract/test_contract.py: a TOML writer, a small valid spec and
its data, and hypothesis strategies that break them one field, one byte or one argument at a time.

Every case a strategy draws is plain data (dicts, lists, strings, numbers), so a case the search
found can be pasted into an `@example(...)` as it is printed, and `materialize_*` turns it into
files. Nothing here runs runner; the oracle lives in the test module.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import math
import re
import tomllib
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

# --------------------------------------------------------------------------------------------------
# TOML: tomllib only reads, and tomli_w is not a dependency. This writer covers what a spec needs,
# including nan/inf floats, any unicode key, control characters and NUL in strings.

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")  # fullmatch: "$" would also match before a final "\n"


def _toml_str(s: str) -> str:
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif o < 0x20 or o == 0x7F:
            out.append(f"\\u{o:04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _toml_key(k: str) -> str:
    return k if _BARE_KEY.fullmatch(k) else _toml_str(k)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return _toml_str(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        if not v:
            return "{}"
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"no TOML for {type(v).__name__}")


def _is_array_of_tables(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)


def _toml_table(d: dict, prefix: list[str], lines: list[str]) -> None:
    for k, v in d.items():
        if not isinstance(v, dict) and not _is_array_of_tables(v):
            lines.append(f"{_toml_key(k)} = {_toml_value(v)}")
    for k, v in d.items():
        if isinstance(v, dict):
            lines.append("")
            lines.append("[" + ".".join(_toml_key(p) for p in prefix + [k]) + "]")
            _toml_table(v, prefix + [k], lines)
    for k, v in d.items():
        if _is_array_of_tables(v):
            for item in v:
                lines.append("")
                lines.append("[[" + ".".join(_toml_key(p) for p in prefix + [k]) + "]]")
                for ik, iv in item.items():  # tables inside an array of tables are written inline
                    lines.append(f"{_toml_key(ik)} = {_toml_value(iv)}")


def toml_dumps(doc: dict) -> str:
    lines: list[str] = []
    _toml_table(doc, [], lines)
    return "\n".join(lines).lstrip("\n") + "\n"


def same_value(a: Any, b: Any) -> bool:
    """Equality where nan equals nan and a float is not an int (what a TOML round trip must keep)."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return set(a) == set(b) and all(same_value(a[k], b[k]) for k in a)  # a table's key order is free
    if isinstance(a, list):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    return a == b


def toml_round_trips(doc: dict) -> bool:
    return same_value(tomllib.loads(toml_dumps(doc)), doc)


# --------------------------------------------------------------------------------------------------
# The valid starting points: tiny enough that an apply costs a fraction of a second.

TINY_SCRATCH = {"hidden_size": 16, "layers": 1, "heads": 2, "intermediate_size": 16, "vocab_size": 100}
CSV_LABELS = ["neg", "pos"]
CSV_ROWS = 40
BASES = ("synthetic", "csv", "synthetic2", "jsonl")


def base_doc(base: str) -> dict:
    """A valid spec for `base`: every table written out, so removing or breaking any key is possible."""
    doc: dict[str, Any] = {
        "name": "contract",
        "seed": 7,
        "data": {"source": "synthetic", "valid": 0.25, "max_length": 16, "options": {"size": 40}},
        "train": {
            "epochs": 1, "batch_size": 16, "learning_rate": 0.001, "lr_scheduler": "linear", "warmup": 0,
            "weight_decay": 0.0, "gradient_accumulation_steps": 1, "max_grad_norm": 1.0, "precision": "auto",
            "trainer_args": {"adam_epsilon": 1e-8},
        },
        "loss": {"name": "cross_entropy", "label_smoothing": 0.0},
        "selection": {"metric": "eval_accuracy", "early_stopping_patience": 2},
        "swa": {"k": 0},
        "ensemble": {"checkpoint": "selected", "weights": "equal"},
        "members": [
            {"name": "a", "backbone": "scratch", "seed": 3, "options": dict(TINY_SCRATCH),
             "train": {"epochs": 1}, "loss": {"label_smoothing": 0.0}},
        ],
    }
    if base in ("csv", "jsonl"):
        doc["data"] = {"source": base, "train": f"train.{base}", "valid": 0.25, "text_column": "text",
                       "label_column": "label", "max_length": 16,
                       "options": {"delimiter": ","} if base == "csv" else {}}
    if base == "synthetic2":
        doc["members"].append({"name": "b", "backbone": "scratch", "seed": 4,
                               "options": dict(TINY_SCRATCH, architecture="roberta"),
                               "train": {"epochs": 1}, "loss": {"label_smoothing": 0.0}})
        doc["ensemble"]["weights"] = [1.0, 1.0]
    return doc


def base_rows(n: int = CSV_ROWS, labels: list = CSV_LABELS) -> list[dict]:
    words = ["awful", "great", "dull", "superb", "flat", "lovely"]
    return [{"text": f"review {i}: the film was {words[i % len(words)]}", "label": labels[i % len(labels)]}
            for i in range(n)]


def csv_bytes(rows: list[dict], fieldnames: list[str] | None = None, delimiter: str = ",") -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=delimiter, lineterminator="\n")
    fieldnames = fieldnames or (list(rows[0]) if rows else ["text", "label"])
    w.writerow(fieldnames)
    for r in rows:
        w.writerow([_csv_cell(r.get(f)) for f in fieldnames])
    return buf.getvalue().encode("utf-8")


def _csv_cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def jsonl_bytes(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")


# --------------------------------------------------------------------------------------------------
# Values a user can write by mistake (or on purpose), for any field.

LONG = "x" * 300  # longer than a path component may be (255 bytes)
NASTY_STRINGS = ["", " ", LONG, "한국어", "\u202eltr", "\x00", "a\nb", "..", ".", "/", "\\", "a/b", "a\\b",
                 "CON", "-rf", "'; DROP TABLE runs; --", "é" * 200]
NASTY_INTS = [0, -1, 1, 2, 2**31, 2**63 - 1, -(2**63), 10**30]
NASTY_FLOATS = [0.0, -0.0, 0.5, 1.0, -1.5, 1e-300, 5e-324, 1e308, math.inf, -math.inf, math.nan]
NASTY_OTHER = [True, False, [], [1, "a"], {}, {"a": {"b": 1}}, [[1]], ["x"]]
NASTY = NASTY_INTS + NASTY_FLOATS + NASTY_STRINGS + NASTY_OTHER


def nasty(small_ints_only: bool = False) -> st.SearchStrategy:
    values = [v for v in NASTY if not (small_ints_only and _big_int(v))]
    return st.sampled_from(values) | st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=12)


def _big_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 64


# Fields where a big integer is valid and makes the run hang rather than fail (a billion layers,
# a billion DataLoader worker processes, a billion steps): only small integers are drawn for them.
HANG_IF_BIG = {"layers", "dataloader_num_workers", "max_steps", "dataloader_prefetch_factor"}


def _vals(*values) -> st.SearchStrategy:
    if any(v is None for v in values):  # TOML has no null: an absent key is a "del" op on DELETABLE
        raise ValueError(f"_vals{values}: None cannot be written in a spec")
    return st.sampled_from(list(values))


FRACTIONS = _vals(0.25, 0.5, 0.1, 0.01, 0.001, 1e-9, 0.0, 1.0, 0.89, 0.9, -0.1, math.nan, math.inf, 1)
PATHS = _vals("train.csv", "missing.csv", "", ".", "..", "/", "/dev/null", LONG + ".csv", "a\x00b.csv",
              "sub/../train.csv", "~/train.csv", "TRAIN.CSV", "train.csv ")
SCHEDULERS = _vals("linear", "constant", "cosine", "cosine_with_restarts", "polynomial", "constant_with_warmup",
                   "inverse_sqrt", "reduce_lr_on_plateau", "cosine_with_min_lr", "cosine_warmup_with_min_lr",
                   "warmup_stable_decay", "LINEAR", "", "nope")

# Field-specific values next to the generic ones: close to valid, at the edges of a range, or valid
# values that only fail later (the interesting ones). Huge values are left out where they are valid
# and merely slow (epochs = 1000, layers = 10**6, size = 5_000_000): a slow run breaks no promise.
SPEC_FIELDS: dict[tuple, st.SearchStrategy] = {
    ("name",): _vals("x", "a.b", "A-1", "a" * 200, "a" * 300, "..", ".", "a/b", "-a", "_a", "한국어", "a b"),
    ("seed",): _vals(0, -1, 2**32 - 1, 2**32, 2**63 - 1, -(2**63), 1.5, "1", True),
    ("data", "source"): _vals("csv", "jsonl", "parquet", "synthetic", "CSV", "", "nope"),
    ("data", "train"): PATHS,
    ("data", "valid"): FRACTIONS | PATHS,
    ("data", "test"): FRACTIONS | PATHS,
    ("data", "text_column"): _vals("text", "label", "", "Text", "missing", "text "),
    ("data", "label_column"): _vals("label", "text", "", "Label", "missing"),
    ("data", "labels"): _vals(["neg", "pos"], ["pos", "neg"], ["neg", "pos", "extra"], ["neg"], [], ["neg", "neg"],
                              ["0", "1"], ["", "x"], [1, 2], [f"c{i}" for i in range(300)],
                              ["strong_negative", "weak_negative", "weak_positive", "strong_positive"],
                              ["weak_positive", "strong_positive", "strong_negative", "weak_negative"]),
    ("data", "max_length"): _vals(8, 7, 9, 16, 512, 8192, 8193, 0, -1, 2**63 - 1, 16.0),
    ("data", "special_tokens"): _vals([], ["[X]"], [""], [LONG], ["\x00"], ["[CLS]"], ["a", "a"], ["한"], 5),
    ("data", "options", "size"): _vals(20, 19, 21, 40, 0, -1, 5_000_001, 2**63 - 1, 40.0, "40"),
    ("data", "options", "language"): _vals("en", "ko", "EN", "", "fr"),
    ("data", "options", "noise"): _vals(0.0, 0.5, 0.51, 1e-300, math.nan, math.inf, -0.0),
    ("data", "options", "delimiter"): _vals(",", ";", "\t", "", ",,", "\x00", "\n", '"', "한"),
    ("train", "epochs"): _vals(1, 2, 0, -1, 1001, 2**63 - 1, 1.0, 1.5, "1", True),
    ("train", "batch_size"): _vals(1, 2, 16, 0, -1, 2**31, 2**62, 2**63 - 1, 10**30),
    ("train", "eval_batch_size"): _vals(1, 2**31, 2**63 - 1, 0, -1),
    ("train", "learning_rate"): _vals(1e-3, 1.0, 1.0000001, 0, -1, 1e-300, 5e-324, math.nan, math.inf, "1e-3"),
    ("train", "lr_scheduler"): SCHEDULERS,
    ("train", "warmup"): _vals(0, 0.5, 1, 10, 2**63 - 1, 1e308, math.inf, math.nan, -1),
    ("train", "weight_decay"): _vals(0, 0.01, 1e308, math.inf, math.nan, -1),
    ("train", "gradient_accumulation_steps"): _vals(1, 2, 2**31, 2**63 - 1, 0),
    ("train", "max_grad_norm"): _vals(0, 1, 1e-300, 1e308, math.inf, math.nan, -1),
    ("train", "precision"): _vals("auto", "fp32", "fp16", "bf16", "FP16", ""),
    ("loss", "name"): _vals("cross_entropy", "focal", "", "Focal", "nope"),
    ("loss", "label_smoothing"): _vals(0, 0.5, 0.999, 1, 1e-300, math.nan, math.inf, -1),
    ("loss", "gamma"): _vals(0, 2, 2.97, 1e308, math.inf, math.nan, -1),
    ("loss", "modulation"): _vals("true_class", "per_class", "true-class", "", 1),
    ("loss", "alpha"): _vals("inverse_frequency", 1.0, 0, -1, [1, 1], [1, 1, 1, 1], [math.inf, 1], [math.nan, 1],
                             [0, 0], [1e308, 1e308], [], "x", [[1]], 1e308),
    ("loss", "class_weights"): _vals("inverse_frequency", [1, 1], [1, 1, 1, 1], [math.inf, 1], [math.nan, 1],
                                     [0, 0], [-1, 1], [1e308, 1e308], [], "x"),
    ("selection", "metric"): _vals("eval_accuracy", "eval_loss", "eval_f1_macro", "-eval_accuracy", "+eval_loss",
                                   "accuracy", "loss", "", "+", "-", "eval_", "eval_nope", " eval_loss ",
                                   "++eval_loss", "-+eval_loss"),
    ("selection", "early_stopping_patience"): _vals(1, 0, -1, 2**63 - 1, 1.5, True),
    ("swa", "k"): _vals(0, 1, 2, -1, 2**63 - 1),
    ("ensemble", "checkpoint"): _vals("selected", "swa", "last", "best", "best_eval_loss", ""),
    ("ensemble", "weights"): _vals("equal", "fit", "", [1.0], [1, 1], [0, 1], [0, 0], [math.nan, 1], [math.inf, 1],
                                   [-1, 2], [1e308, 1e308], [1e-320, 0], ["1", "1"], 1),
    ("members",): _vals([], "x", [5], {}),
    # [adapt]: masked-LM before fine-tuning; a trained adaptation is small here (1 epoch)
    ("adapt",): _vals({}, {"epochs": 1}, 5, "x", [], True),
    ("adapt", "epochs"): _vals(1, 0, -1, 1001, 1.5, "1", True),
    ("adapt", "learning_rate"): _vals(1e-3, 0, -1, 1.5, math.nan, math.inf),
    ("adapt", "batch_size"): _vals(1, 8, 0, -1, 2**63 - 1),
    ("adapt", "max_length"): _vals(8, 7, 16, 8193, 0),
    ("adapt", "mlm_probability"): _vals(0.15, 0.0, 1.0, 0.999, 1e-9, -0.1, math.nan),
    ("adapt", "whole_word_mask"): _vals(True, False, "yes", 1),
    ("adapt", "texts"): _vals(["train"], ["train", "valid"], ["test"], ["valid"], [], ["tset"], ["train", "train"],
                              "train", [1]),
    ("adapt", "extra"): _vals([], ["train.csv"], ["missing.txt"], [""], ["/dev/null"], [".."], [LONG], ["a\x00b"],
                              "x"),
    ("adapt", "seed"): _vals(0, -1, 2**32, 1.5),
}

MEMBER_FIELDS: dict[tuple, st.SearchStrategy] = {
    ("name",): _vals("b", "a", "..", ".", "a" * 300, "a" * 250, "x/y", "한국어", "", "A_b-1.c"),
    ("backbone",): _vals("scratch", "hf", "", "Scratch", "nope"),
    ("model",): _vals("x", "..", "../", ".", "/", "mdl/sub/..", "a" * 300, "한국어/모델", "org/model",
                      "./missing"),
    ("seed",): _vals(0, -1, 2**32, 2**63 - 1, -(2**63), "1"),
    ("options",): _vals({}, 5, "x", [], {"nope": 1}),
    ("options", "architecture"): _vals("bert", "roberta", "gpt2", ""),
    ("options", "hidden_size"): _vals(16, 32, 3, 1, 0, -1, 2**31 - 1, 2**63 - 1),
    ("options", "layers"): _vals(1, 2, 0, -1, 1.0, "1"),
    ("options", "heads"): _vals(1, 2, 3, 16, 32, 0, -1, 2**63 - 1),
    ("options", "intermediate_size"): _vals(1, 16, 0, -1, 2**63 - 1),
    ("options", "vocab_size"): _vals(100, 99, 101, 2**31, 2**63 - 1, 0),
    ("options", "dropout"): _vals(0.0, 0.5, 0.999, 1.0, math.nan, -0.0, math.inf),
    ("options", "lowercase"): _vals(True, False, "yes", 1),
    ("options", "tokenizer"): _vals("wordpiece", "words", "bpe", "sentencepiece", "", 1),
    ("train",): _vals({}, 5, {"nope": 1}, {"trainer_args": {"optim": "sgd"}}),
    ("train", "epochs"): _vals(1, 2, 0, -1, 2**63 - 1, 1.5),
    ("train", "learning_rate"): _vals(1e-3, 1.0, 0, math.nan, math.inf),
    ("train", "batch_size"): _vals(1, 2**63 - 1, 0),
    ("train", "warmup"): _vals(1, math.inf, 2**63 - 1),
    ("train", "lr_scheduler"): SCHEDULERS,
    ("loss",): _vals({}, 5, {"name": "focal"}, {"name": "nope"}, {"name": "focal", "gamma": math.inf},
                     {"gamma": 2.0}, {"name": "cross_entropy", "class_weights": [math.nan, 1]}),
    ("loss", "label_smoothing"): _vals(0.5, 1, math.nan, -1),
    ("loss", "name"): _vals("focal", "cross_entropy", "", "nope"),
    ("adapt",): _vals(False, True, {}, {"epochs": 1}, {"nope": 1}, 5, "x"),
    ("adapt", "epochs"): _vals(1, 0, 1.5),
    ("adapt", "texts"): _vals(["train"], [], ["test"]),
}

# Real TrainingArguments fields with values that construct, or fail late, or are plain wrong. Left
# out: those that only make a run slow or wait for something that never comes (max_steps = 10**9,
# torch_compile, dataloader_num_workers = 10**6, local_rank = 3, push_to_hub reaching the network).
TRAINER_ARGS: dict[str, st.SearchStrategy] = {
    "adam_epsilon": _vals(0, -1, math.inf, math.nan, 1e-300),
    "adam_beta1": _vals(2.0, -1, math.nan, 0.9),
    "adam_beta2": _vals(1.0, 2.0, math.nan),
    "optim": _vals("adamw_torch", "sgd", "adafactor", "adagrad", "rmsprop", "lomo", "galore_adamw", "nope", ""),
    "optim_args": _vals("garbage", "a=1", "", "lr=x"),
    "lr_scheduler_kwargs": _vals({}, {"foo": 1}, {"min_lr": 0.0}, "x", {"num_cycles": math.nan}),
    "dataloader_num_workers": _vals(0, -1, 1),
    "dataloader_drop_last": _vals(True, False),
    "dataloader_prefetch_factor": _vals(2, 0, -1),
    "dataloader_persistent_workers": _vals(True),
    "eval_accumulation_steps": _vals(0, -1, 1),
    "logging_steps": _vals(0, -1, 1, math.nan, 0.5),
    "logging_first_step": _vals(True),
    "save_steps": _vals(0, -1, 0.5),
    "eval_steps": _vals(0, -1),
    "max_steps": _vals(-1, 0, 1, 3),
    "eval_delay": _vals(0, 1, 2, -1, math.inf),
    "eval_on_start": _vals(True),
    "prediction_loss_only": _vals(True, False),
    "batch_eval_metrics": _vals(True),
    "eval_do_concat_batches": _vals(False),
    "include_for_metrics": _vals(["inputs"], ["loss"], ["nope"], "inputs"),
    "label_names": _vals(["x"], [], ["labels", "labels"], "labels"),
    "neftune_noise_alpha": _vals(1.0, -1, math.inf, math.nan),
    "gradient_checkpointing": _vals(True),
    "gradient_checkpointing_kwargs": _vals({"use_reentrant": False}, {"nope": 1}),
    "auto_find_batch_size": _vals(True),
    "full_determinism": _vals(True),
    "use_cpu": _vals(True, False),
    "tf32": _vals(True),
    "fsdp": _vals("full_shard", "nope", True),
    "deepspeed": _vals("ds.json", {"zero_optimization": {"stage": 2}}),
    "debug": _vals("underflow_overflow", "nope", ""),
    "log_level": _vals("debug", "nope", "critical"),
    "report_to": _vals("none", "all", [], "tensorboard", "wandb", ["none", "none"], 5),
    "run_name": _vals(LONG, "", "\x00"),
    "torch_empty_cache_steps": _vals(0, -1, 1),
    "ddp_timeout": _vals(-1, 2**63 - 1),
    "skip_memory_metrics": _vals(False),
    "restore_callback_states_from_checkpoint": _vals(False),
    "save_only_model": _vals(True),
    "ignore_data_skip": _vals(True),
    "include_num_input_tokens_seen": _vals(True, "all", "nope"),
    "average_tokens_across_devices": _vals(True, False),
    "train_sampling_strategy": _vals("random", "sequential", "group_by_length", "nope"),
    "use_liger_kernel": _vals(True),
    "accelerator_config": _vals({"split_batches": True}, {"nope": 1}, "x"),
    "resume_from_checkpoint": _vals("/nonexistent", ""),
    "hub_model_id": _vals("", LONG),
    "dataloader_pin_memory": _vals(True),
    "project": _vals(LONG, ""),
}

# Keys that are not in the schema, for any table.
UNKNOWN_KEYS = ["nope", "Epochs", "", LONG, "한국어", "a.b", "\x00", " ", "members", "a\nb"]

TABLES = [(), ("data",), ("data", "options"), ("train",), ("train", "trainer_args"), ("loss",), ("selection",),
          ("swa",), ("ensemble",), ("members", 0), ("members", 0, "options"), ("members", 0, "train"),
          ("members", 0, "loss"), ("adapt",)]


def _member_extra_member(name: str | None = "b", model: str | None = None, backbone: str = "scratch") -> dict:
    m: dict[str, Any] = {"backbone": backbone, "options": dict(TINY_SCRATCH) if backbone == "scratch" else {}}
    if name is not None:
        m["name"] = name
    if model is not None:
        m["model"] = model
    return m


def spec_op() -> st.SearchStrategy:
    """One change to the spec: ("set", path, value), ("del", path) or ("append", path, value)."""
    field_ops = st.sampled_from(sorted(SPEC_FIELDS, key=str)).flatmap(
        lambda p: st.tuples(st.just("set"), st.just(list(p)), SPEC_FIELDS[p] | nasty(p[-1] in HANG_IF_BIG)))
    member_ops = st.tuples(st.sampled_from(sorted(MEMBER_FIELDS, key=str)), st.sampled_from([0, 0, 1])).flatmap(
        lambda pm: st.tuples(st.just("set"), st.just(["members", pm[1], *pm[0]]),
                            MEMBER_FIELDS[pm[0]] | nasty(pm[0][-1] in HANG_IF_BIG)))
    trainer_ops = st.sampled_from(sorted(TRAINER_ARGS)).flatmap(
        lambda k: st.tuples(st.just("set"), st.just(["train", "trainer_args", k]),
                           TRAINER_ARGS[k] | nasty(k in HANG_IF_BIG)))
    member_trainer_ops = st.sampled_from(sorted(TRAINER_ARGS)).flatmap(
        lambda k: st.tuples(st.just("set"), st.just(["members", 0, "train", "trainer_args", k]), TRAINER_ARGS[k]))
    unknown_ops = st.tuples(st.just("set"), st.tuples(st.sampled_from(TABLES), st.sampled_from(UNKNOWN_KEYS)).map(
        lambda tk: [*tk[0], tk[1]]), nasty())
    whole_table_ops = st.tuples(st.just("set"), st.sampled_from(TABLES[1:]).map(list),
                                st.sampled_from([5, "x", [], [1, 2], {}, True]))
    del_ops = st.tuples(st.just("del"), st.sampled_from(sorted(DELETABLE, key=str)).map(list))
    append_ops = st.tuples(st.just("append"), st.just(["members"]), st.one_of(
        st.builds(_member_extra_member, st.sampled_from(["b", "a", None, "..", "c" * 200])),
        st.builds(_member_extra_member, st.just(None), st.sampled_from(
            ["m1/bert-base", "m2/bert-base", "..", "../", "mdl/sub/..", "./x"]), st.sampled_from(["hf", "scratch"])),
    ))
    return st.one_of(field_ops, field_ops, member_ops, trainer_ops, member_trainer_ops, unknown_ops,
                     whole_table_ops, del_ops, append_ops)


def _leaf_paths(d: Any, prefix: tuple = ()) -> list[tuple]:
    out = []
    if isinstance(d, dict):
        for k, v in d.items():
            out.append(prefix + (k,))
            out.extend(_leaf_paths(v, prefix + (k,)))
    elif isinstance(d, list):
        for i, v in enumerate(d):
            out.extend(_leaf_paths(v, prefix + (i,)))
    return out


# Removing these makes a run slow, not wrong (a default of 3000 synthetic rows, 64 hidden units).
_SLOW_WHEN_REMOVED = {("data", "options", "size"), ("data", "options"), ("members", 0, "options"),
                      ("members", 1, "options"), ("data", "max_length")}
DELETABLE = sorted({p for b in BASES for p in _leaf_paths(base_doc(b))} - _SLOW_WHEN_REMOVED, key=str)


@st.composite
def spec_cases(draw) -> dict:
    base = draw(st.sampled_from(["synthetic", "csv", "synthetic2", "jsonl"]))
    ops = draw(st.lists(spec_op(), min_size=1, max_size=3))
    return {"base": base, "ops": [list(op) for op in ops]}


def apply_ops(doc: dict, ops: list) -> list:
    """Apply the ops to `doc` in place; return those that applied (a path through a non-table is skipped)."""
    applied = []
    for op in ops:
        kind, path = op[0], op[1]
        node = doc
        ok = True
        for p in path[:-1]:
            if isinstance(node, dict) and isinstance(p, str):
                node = node.setdefault(p, {}) if kind == "set" else node.get(p)
            elif isinstance(node, list) and isinstance(p, int) and p < len(node):
                node = node[p]
            else:
                ok = False
                break
            if node is None:
                ok = False
                break
        last = path[-1] if path else None
        if not ok or not isinstance(node, (dict, list)):
            continue
        if kind == "set":
            if isinstance(node, dict) and isinstance(last, str):
                node[last] = copy.deepcopy(op[2])
            elif isinstance(node, list) and isinstance(last, int) and last < len(node):
                node[last] = copy.deepcopy(op[2])
            else:
                continue
        elif kind == "del":
            if isinstance(node, dict) and last in node:
                del node[last]
            else:
                continue
        elif kind == "append":
            target = node.get(last) if isinstance(node, dict) else None
            if not isinstance(target, list):
                continue
            target.append(copy.deepcopy(op[2]))
        applied.append(op)
    return applied


# --------------------------------------------------------------------------------------------------
# Data files.

LABEL_SETS: dict[str, list] = {
    "words": ["neg", "pos"],
    "four": ["strong_negative", "weak_negative", "weak_positive", "strong_positive"],
    "korean": ["부정", "긍정", "중립"],
    "ids": [0, 1, 2],
    "years": [2019, 2020, 2021, 2022],
    "one_based": [1, 2, 3],
    "gapped": [0, 2, 5],
    "huge": [10**5, 10**5 + 1],  # 2**40 would make runner build 2**40 label names: a hang, not a finding
    "negative": [-1, 0, 1],
    "floats": [0.5, 1.5, 2.5],
    "bools": [True, False],
    "numeric_strings": ["1", "2"],  # written as numbers in a CSV: the same as ids 1, 2 to a reader
    "spaces": ["neg", "neg "],
    "case": ["neg", "Neg"],
    "comma_quote": ['a,b', 'say "hi"', "line\nbreak"],
    "mixed": ["neg", 1],
    "lists": [[1], [2]],
    "objects": [{"a": 1}, {"a": 2}],
    "with_null": ["neg", "pos", None],
    "with_empty": ["neg", "pos", ""],
    "single": ["neg"],
    "many": [f"c{i}" for i in range(30)],
}
# Label sets whose number of classes is certain whatever the file format: runner must then store
# exactly that many probabilities per row (integers count as class names unless exactly 0..n-1).
CLEAN_LABEL_SETS = {"words", "four", "korean", "ids", "years", "one_based", "gapped", "huge", "negative", "floats",
                    "bools", "case", "comma_quote", "many"}
TEXT_KINDS = ("plain", "korean", "long", "nul", "newline", "rtl", "quote", "empty_one", "spaces_one")
CORRUPTIONS = ("bom", "utf16", "cp949", "latin1", "empty", "header_only", "dup_header", "ragged", "crlf", "cr_only",
               "no_final_newline", "nul_byte", "truncate_mid_row", "garbage_tail", "blank_lines")
# Text edits first, then at most one re-encoding, then the BOM: each step still sees the text it edits.
_CORRUPTION_ORDER = [c for c in CORRUPTIONS if c not in ("utf16", "cp949", "latin1", "bom")] + [
    "utf16", "cp949", "latin1", "bom"]
HARMLESS_CORRUPTIONS = {"bom", "crlf", "no_final_newline", "blank_lines"}


@st.composite
def data_cases(draw) -> dict:
    fmt = draw(st.sampled_from(["csv", "jsonl"]))
    label_set = draw(st.sampled_from(sorted(LABEL_SETS)))
    declared = draw(st.sampled_from(["none", "none", "exact", "reversed", "missing_one", "extra"]))
    return {
        "fmt": fmt,
        "labels": label_set,
        "declared": declared,
        "rows": draw(st.sampled_from([40, 40, 12, 8, 4, 2, 1, 0, 60])),
        "text": draw(st.sampled_from(TEXT_KINDS)),
        "corrupt": draw(st.lists(st.sampled_from(CORRUPTIONS), max_size=2, unique=True)),
        "valid": draw(st.sampled_from([0.25, 0.25, 0.5, 0.1, 0.05, 0.01, 1e-6, "file", "file"])),
        "test": draw(st.sampled_from([None, None, 0.2, 0.01, "file", "file_unlabelled", "file_some_labels"])),
    }


def _texts(kind: str, n: int, offset: int = 0) -> list[str]:
    words = ["awful", "great", "dull", "superb", "flat", "lovely"]
    texts = [f"review {i + offset}: the film was {words[i % len(words)]}" for i in range(n)]
    if not texts:
        return texts
    if kind == "korean":
        texts = [f"리뷰 {i + offset}: 영화가 {'좋았다' if i % 2 else '별로였다'}" for i in range(n)]
    elif kind == "long":
        texts[0] = "long " * 4000
    elif kind == "nul":
        texts[0] = "nul \x00 inside"
    elif kind == "newline":
        texts[0] = "two\nlines, and \"quotes\""
    elif kind == "rtl":
        texts[0] = "\u202eevif :weiver"
    elif kind == "quote":
        texts[0] = '"unbalanced'
    elif kind == "empty_one":
        texts[0] = ""
    elif kind == "spaces_one":
        texts[0] = "   "
    return texts


def _rows(case: dict, n: int, offset: int = 0, labelled: bool | str = True) -> list[dict]:
    labels = LABEL_SETS[case["labels"]]
    texts = _texts(case["text"], n, offset)
    rows = []
    for i, t in enumerate(texts):
        r: dict[str, Any] = {"text": t}
        if labelled is True or (labelled == "some" and i % 2 == 0):
            r["label"] = labels[i % len(labels)]
        elif labelled == "some":
            r["label"] = None
        rows.append(r)
    return rows


def _encode_file(case: dict, rows: list[dict], fmt: str, with_label_column: bool = True) -> bytes:
    if fmt == "csv":
        return csv_bytes(rows, ["text", "label"] if with_label_column else ["text"])
    return jsonl_bytes(rows)


def _corrupt(data: bytes, how: str, fmt: str) -> bytes:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:  # already re-encoded: a second encoding or edit has nothing to work on
        return data if how != "bom" else b"\xef\xbb\xbf" + data
    if how == "bom":
        return b"\xef\xbb\xbf" + data
    if how == "utf16":
        return text.encode("utf-16")
    if how == "cp949":
        return (text + ("리뷰 끝,부정\n" if fmt == "csv" else '{"text": "리뷰 끝", "label": "부정"}\n')).encode(
            "cp949", errors="replace")
    if how == "latin1":
        return (text + ("café crème,neg\n" if fmt == "csv" else '{"text": "café", "label": "neg"}\n')).encode(
            "latin-1", errors="replace")
    if how == "empty":
        return b""
    if how == "header_only":
        return (text.split("\n", 1)[0] + "\n").encode() if fmt == "csv" else b""
    if how == "dup_header":
        if fmt == "csv":
            lines = text.split("\n")
            return "\n".join(line + ",dup" if i else line + ",label" for i, line in enumerate(lines) if line).encode()
        return "".join(line[:-1] + ', "label": "dup"}\n' for line in text.splitlines() if line).encode()
    if how == "ragged":
        return data + (b"extra,cells,here,4\n" if fmt == "csv" else b"[1, 2]\n")
    if how == "crlf":
        return text.replace("\n", "\r\n").encode()
    if how == "cr_only":
        return text.replace("\n", "\r").encode()
    if how == "no_final_newline":
        return data.rstrip(b"\n")
    if how == "nul_byte":
        return data[: len(data) // 2] + b"\x00" + data[len(data) // 2:]
    if how == "truncate_mid_row":
        return data[: max(0, len(data) - 9)]
    if how == "garbage_tail":
        return data + b"\xff\xfe\x00\x01garbage\n"
    if how == "blank_lines":
        return text.replace("\n", "\n\n").encode()
    raise ValueError(how)


def materialize_data(case: dict, folder: Path) -> tuple[dict, dict]:
    """Write a data case's files into `folder`; return (spec document, facts for the oracle)."""
    fmt = case["fmt"]
    doc = base_doc(fmt)
    files: dict[str, bytes] = {}
    train_rows = _rows(case, case["rows"])
    train = _encode_file(case, train_rows, fmt)
    for how in sorted(case["corrupt"], key=_CORRUPTION_ORDER.index):
        train = _corrupt(train, how, fmt)
    files[f"train.{fmt}"] = train
    all_rows = list(train_rows)
    if case["valid"] == "file":
        valid_rows = _rows(case, 8, offset=1000)
        files[f"valid.{fmt}"] = _encode_file(case, valid_rows, fmt)
        doc["data"]["valid"] = f"valid.{fmt}"
        all_rows += valid_rows
    else:
        doc["data"]["valid"] = case["valid"]
    if case["test"] is not None:
        if isinstance(case["test"], float):
            doc["data"]["test"] = case["test"]
        else:
            labelled = {"file": True, "file_unlabelled": False, "file_some_labels": "some"}[case["test"]]
            test_rows = _rows(case, 8, offset=2000, labelled=labelled)
            files[f"test.{fmt}"] = _encode_file(case, test_rows, fmt, with_label_column=labelled is not False)
            doc["data"]["test"] = f"test.{fmt}"
            if labelled is True:
                all_rows += test_rows
    labels = LABEL_SETS[case["labels"]]
    names = [_csv_cell(x) if fmt == "csv" else (x if isinstance(x, str) else json.dumps(x)) for x in labels]
    declared = {"none": None, "exact": names, "reversed": names[::-1], "missing_one": names[:-1],
                "extra": names + ["zz_extra"]}[case["declared"]]
    if declared is not None:
        doc["data"]["labels"] = declared
    for name, content in files.items():
        (folder / name).write_bytes(content)
    clean = (case["labels"] in CLEAN_LABEL_SETS and set(case["corrupt"]) <= HARMLESS_CORRUPTIONS)
    distinct = len({json.dumps(r["label"], sort_keys=True) for r in all_rows if "label" in r})
    facts = {
        "data_files": sorted(files),
        # the number of classes a correct runner must train, when it is certain
        "num_labels": (len(declared) if declared is not None else distinct) if clean else None,
    }
    return doc, facts


# --------------------------------------------------------------------------------------------------
# Stores and command-line arguments.

STORE_KINDS = ("none", "empty", "golden", "garbage", "zero_bytes", "truncated_head", "truncated_half", "sqlite",
               "foreign", "text", "directory", "read_only_folder", "memory", "missing_folder", "long_name",
               "unicode_name", "wal_garbage")
STORE_COMMANDS = ("apply", "runs", "sql", "compare", "ensemble", "plot", "predict", "export", "calibrate", "refit")


@st.composite
def store_cases(draw) -> dict:
    return {"store": draw(st.sampled_from(STORE_KINDS)), "command": draw(st.sampled_from(STORE_COMMANDS))}


RUN_REFS = ["{run}", "{name}", "", "nope", "{run}x", "{run_prefix}", "x' OR '1'='1", "..", "한국어", LONG,
            "ensemble",
            "%", "*"]
WEIGHTS = ["equal", "fit", "1,1", "1,2", "nan,1", "inf,1", "-1,2", "1", "1,1,1", "", ",", "1e309,1", "0,0",
           "garbage", "1;1", " 1 , 1 ", "1e308,1e308", "5e-324,0", "0x1,1", "1_0,1", "nan,nan", "FIT"]
MEMBERS = [None, "a", "b", "a,b", "b,a", "a,a", "nope", "", ",", "a,nope", "ensemble", "A"]
CHECKPOINTS = ["selected", "swa", "last", "best_eval_loss", "best_eval_accuracy", "best_eval_f1_macro",
               "epoch-1", "", "nope", "SWA"]
ENSEMBLE_NAMES = [None, "mine", "", "..", "a/b", LONG, "한국어", "a", "selected", "best_eval_accuracy", "x\ny"]
QUERIES = [
    "SELECT 1", "select count(*) from runs", "select * from predictions limit 3", "", "   ", "-- only a comment",
    ";", "select 1; select 2", "select * from nope", "selec 1", "CREATE TABLE x (a INT)",
    "INSERT INTO runs SELECT * FROM runs",
    "DELETE FROM runs", "DROP TABLE runs", "UPDATE runs SET name = 'x'", "ATTACH 'other.duckdb' AS o",
    "ATTACH ':memory:' AS m", "COPY runs TO 'out.csv'", "COPY (SELECT 1) TO 'out.parquet' (FORMAT parquet)",
    "SELECT * FROM read_csv('/etc/hostname')", "SELECT * FROM read_text('/etc/hostname')",
    "SELECT * FROM 'other.csv'", "INSTALL httpfs", "LOAD httpfs", "SET memory_limit = '1GB'", "PRAGMA version",
    "PRAGMA database_list", "CALL pragma_version()", "SET enable_external_access = true",
    "EXPORT DATABASE 'dump'", "CHECKPOINT", "VACUUM", "BEGIN", "COMMIT", "SELECT getenv('HOME')",
    "SELECT * FROM duckdb_settings()", "DESCRIBE runs", "SHOW TABLES", "SUMMARIZE runs", "EXPLAIN SELECT 1",
    "SELECT " + "+".join(["1"] * 3000), "SELECT " + "(" * 1000 + "1" + ")" * 1000,
    " UNION ALL ".join(["SELECT 1"] * 500), "SELECT '" + "x" * 100000 + "'", "SELECT 1/0", "SELECT 'a'::INT",
    "SELECT \x00", "SELECT '한국어'", "WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t WHERE n < 10) "
    "SELECT * FROM t", "SELECT * FROM range(3)", "USE memory", "DETACH DATABASE memory",
]
OUTS = [None, "plot.png", "missing/plot.png", "plot.txt", "plot", "", ".", "plot.pdf", "plot.svg", LONG + ".png",
        "{read_only}/plot.png", "{store}", "{spec}"]
FORMATS = [None, "table", "csv", "json", "markdown"]
# `runner report --out` and `runner schema --out`: only a file the command wrote before may be replaced
REPORT_OUTS = [None, "report.html", "missing/r.html", "r.txt", "", ".", LONG + ".html", "{read_only}/r.html",
               "{store}", "{spec}", "{user_file}", "{earlier}", "r.HTM", "리포트.html", "{empty_file}"]
SCHEMA_OUTS = [None, "runner.schema.json", "missing/s.json", "s.txt", "", ".", LONG + ".json",
               "{read_only}/s.json", "{store}", "{spec}", "{user_file}", "{earlier}", "스키마.json", "{empty_file}"]
# runner predict / export / calibrate / refit
SOURCES = RUN_REFS + ["{export}", "{folder}", "{spec}", "{store}"]
INPUTS = ["good", "good", "unlabelled", "jsonl", "parquet", "other_column", "empty", "header_only", "no_text_column",
          "missing", "folder", "txt", "binary", "latin1", "unknown_label", "some_labels", "empty_text", "unicode",
          "long_text", "{store}", "{spec}", "crlf_bom"]
PREDICT_OUTS = [None, None, "pred.csv", "pred.jsonl", "pred.parquet", "pred.txt", "missing/pred.csv",
                "{read_only}/pred.csv", "{store}", "{input}", "", ".", LONG + ".csv", "예측.csv"]
PREDICT_FORMATS = [None, None, "csv", "jsonl", "parquet", "xml", "", "CSV"]
EXPORT_DIRS = ["new", "new", "nested/new", "empty_folder", "a_file", "not_empty", "{read_only}/model", "", ".",
               LONG, "모델 dir", "{store}"]
STRATEGIES = [None, None, "selected", "swa", "last", "best_eval_loss", "best_eval_accuracy", "epoch-1", "epoch-2",
              "epoch-99", "", "nope", "SWA", "epoch-", "epoch-0"]
# `--set KEY=VALUE`: keys that exist, that do not, malformed pairs, values of every type
SETS = ["loss.label_smoothing=0.05", "train.epochs=1", "train.epochs=0", "train.epochs=abc", "nope.x=1",
        "loss.gamma", "=", "=1", "members[0].seed=5", "members[9].seed=5", "members.a.seed=-1",
        "members.zz.seed=1", "train.learning_rate=nan", "loss.alpha[1]=2", "data.options.size=1e309",
        "train.batch_size=[1,2]", "name=other", "name=../x", "seed=1", "train..epochs=1", "train.epochs[0]=1",
        "ensemble.weights=\"fit\"", "loss.name=nope", LONG + "=1"]
METHODS = [None, None, "temperature", "temperature+bias", "nope", "", "TEMPERATURE", "bias"]


@st.composite
def cli_cases(draw) -> dict:
    command = draw(st.sampled_from(["runs", "compare", "ensemble", "ensemble", "sql", "sql", "plot", "plugins",
                                    "validate", "apply", "predict", "predict", "predict", "export", "export",
                                    "calibrate", "calibrate", "refit", "sweep", "validate", "apply", "gc",
                                    "report", "report", "schema"]))
    case: dict[str, Any] = {"command": command}
    def mostly(good: list, bad: list):
        """A value from `good` three times in four, so that a case with several options often runs through."""
        return draw(st.sampled_from(good if draw(st.integers(0, 3)) else bad))

    if command == "predict":
        case["source"] = mostly(["{run}", "{name}", "{export}"], SOURCES)
        case["input"] = mostly(["good", "unlabelled", "jsonl", "parquet", "unicode", "crlf_bom", "long_text"], INPUTS)
        case["strategy"] = mostly([None, "selected", "swa", "best_eval_accuracy"], STRATEGIES)
        case["output"] = mostly([None, "pred.csv", "pred.jsonl", "pred.parquet", "예측.csv"], PREDICT_OUTS)
        case["predict_format"] = mostly([None, None, "csv", "jsonl"], PREDICT_FORMATS)
        case["text_column"] = mostly([None], [None, "text", "review", "nope", ""])
        case["flags"] = draw(st.lists(st.sampled_from(["--members", "--calibrated", "--no-store"]), max_size=2,
                                      unique=True))
        case["batch_size"] = mostly([None, "1", "7"], ["0", "-1", "abc", "100000"])
    if command == "export":
        case["run"] = mostly(["{run}", "{name}"], RUN_REFS)
        case["dir"] = mostly(["new", "nested/new", "empty_folder", "모델 dir"], EXPORT_DIRS)
        case["strategy"] = mostly([None, "selected", "swa", "best_eval_loss"], STRATEGIES)
    if command == "calibrate":
        case["run"] = mostly([None, "{run}", "{name}"], RUN_REFS)
        case["strategy"] = mostly([None, "selected", "swa", "best_eval_loss"], STRATEGIES)
        case["method"] = mostly([None, "temperature", "temperature+bias"], METHODS)
        case["format"] = draw(st.sampled_from(FORMATS))
    if command == "refit":
        case["run"] = mostly([None, "{run}", "{name}"], RUN_REFS)
        case["strategy"] = mostly([None, "selected", "swa", "last"], STRATEGIES)
    if command in ("predict", "export", "calibrate", "refit") and draw(st.integers(0, 4)) == 0:
        case["plugins"] = draw(st.sampled_from(["missing", "file", "empty"]))
    if command in ("compare", "ensemble", "plot"):
        case["run"] = draw(st.sampled_from([None, None] + RUN_REFS))
    if command == "ensemble":
        case["weights"] = draw(st.sampled_from([None] + WEIGHTS))
        case["members"] = draw(st.sampled_from(MEMBERS))
        case["checkpoint"] = draw(st.sampled_from([None] + CHECKPOINTS))
        case["name"] = draw(st.sampled_from(ENSEMBLE_NAMES))
    if command == "sql":
        case["query"] = draw(st.sampled_from(QUERIES))
        case["allow_write"] = draw(st.sampled_from([False, False, True]))
        case["timeout"] = draw(st.sampled_from([None, None, "0", "-1", "nan", "inf", "1e309", "abc", "0.001", "5"]))
        case["memory_limit"] = draw(st.sampled_from([None, None, "64MB", "lots", "0", "-1GB", "1TB", "", "10%"]))
    if command == "compare" and case.get("run") is not None and draw(st.integers(0, 2)) == 0:
        case["other"] = draw(st.sampled_from(RUN_REFS))  # `compare A B`: the golden store has one run
    if command == "gc":
        case["dry_run"] = draw(st.booleans())
    if command == "compare":
        case["strategies"] = draw(st.sampled_from([None, None, "last", "nope", "", ",", "last,last",
                                                   "best_eval_loss,swa", "SWA"]))
        case["all_strategies"] = draw(st.integers(0, 3)) == 0
        case["columns"] = draw(st.sampled_from([None, None, None, "eval_objective,shares", "eval_loss", "", ",",
                                                "test_accuracy,test_accuracy", "tvd"]))
        case["classes"] = draw(st.integers(0, 2)) == 0
        case["split"] = draw(st.sampled_from([None, None, None, "valid", "test", "input-nope", "", "train"]))
    if command in ("compare", "ensemble") and draw(st.booleans()):
        case["plugins"] = draw(st.sampled_from(["missing", "file", "empty", LONG]))
    if command == "validate":
        case["store"] = draw(st.booleans())
    if command == "plot":
        case["out"] = draw(st.sampled_from(OUTS))
    if command == "report":
        case["run"] = draw(st.sampled_from([None, None] + RUN_REFS))
        case["out"] = mostly([None, "report.html", "리포트.html", "{earlier}"], REPORT_OUTS)
        case["sweep_flag"] = draw(st.integers(0, 4)) == 0  # --sweep: the golden store holds no sweep
        if draw(st.integers(0, 3)) == 0:
            case["plugins"] = draw(st.sampled_from(["missing", "file", "empty"]))
    if command == "schema":
        case["out"] = mostly([None, "runner.schema.json", "{earlier}"], SCHEMA_OUTS)
        if draw(st.booleans()):
            case["spec"] = draw(st.sampled_from(["golden", "missing", "directory", "not_utf8"]))
        case["plugins"] = draw(st.sampled_from([None, None, "missing", "file", "empty", LONG]))
    if command in ("runs", "compare", "ensemble", "sql", "plugins"):
        case["format"] = draw(st.sampled_from(FORMATS))
    if command in ("plugins", "validate", "apply"):
        case["plugins"] = draw(st.sampled_from([None, None, "missing", "file", "empty", LONG]))
    if command == "plugins" and draw(st.booleans()):
        case["spec"] = draw(st.sampled_from(["golden", "missing", "directory", "not_utf8"]))
    if command in ("validate", "apply"):
        case["spec"] = draw(st.sampled_from(["golden", "missing", "directory", "empty_file", "not_utf8", "binary",
                                             LONG + ".toml", "unicode", "golden_relative"]))
    if command == "apply":
        case["force"] = draw(st.booleans())
        # --backend/--address: a Ray that is started costs seconds an example, so a search case
        # with ray always names an address (one nothing answers at, or none to find): exit 2 before a write
        case["backend"] = draw(st.sampled_from([None] * 6 + ["local", "ray", "nope", "", "RAY"]))
        case["address"] = draw(st.sampled_from([None] * 6 + ["127.0.0.1:9", "auto", "nohost", "ray://127.0.0.1:9",
                                                             "", "host:99999", "[::1]:9"]))
        if case["backend"] == "ray" and case["address"] is None:
            case["address"] = "127.0.0.1:9"
        case["workers"] = draw(st.sampled_from([None] * 6 + ["2", "0", "65", "abc"]))
    if command in ("validate", "apply") and draw(st.integers(0, 2)) == 0:
        case["sets"] = draw(st.lists(st.sampled_from(SETS), min_size=1, max_size=3))
    if command == "sweep":
        case["run"] = draw(st.sampled_from([None, "golden"] + RUN_REFS))
        case["format"] = draw(st.sampled_from(FORMATS))
    return case


def save_tiny_hf_model(folder: Path, texts: list[str]) -> None:
    """A tiny BERT classifier and its tokenizer saved like a Hub repository (for `hf` members)."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(strip_accents=False, lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=200, special_tokens=specials))
    fast = BertTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                             sep_token="[SEP]", mask_token="[MASK]", model_max_length=64)
    config = BertConfig(vocab_size=len(fast), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=16, max_position_embeddings=64, num_labels=2)
    torch.manual_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    BertForSequenceClassification(config).save_pretrained(folder)
    fast.save_pretrained(folder)
