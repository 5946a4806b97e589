"""The spec's pydantic models: what a TOML spec may contain, with types, ranges and defaults.

Every bound here is a cheap check that predicts a failure later: a seed that numpy's RNG would
refuse, a batch size no machine can hold, `inf` where a number of steps is meant, a NUL byte in a
path. Catching them here means `runner validate` names the key instead of training failing later.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_serializer, model_validator

from runner.spec.adapt import AdaptSpec
from runner.spec.base import MAX_SEED, Strict, Text
from runner.spec.compute import ComputeSpec
from runner.spec.problems import LocatedError, close_matches, describe
from runner.spec.sweep import SweepSpec
from runner.spec.track import TrackSpec

# Run and member names become folder names (runs/<run_id>/<member>/) and SQL values: a letter or
# digit first (so never `.`, `..` or a hidden file), then letters, digits, `_ . -`; at most 100
# characters, which keeps every derived path well inside the OS limits.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$"
# Training arguments that runner sets itself from the spec; naming one in trainer_args is an error
# that says which spec field to use instead.
SHUFFLED_BATCHES = "shuffled"  # how a stored spec writes `group_by_length = true` (TrainSpec)
OWNED_TRAINER_ARGS = {
    "output_dir": "it is runs/<run_id>/<member>/ beside the store",
    "num_train_epochs": "use [train].epochs",
    "max_steps": "use [train].epochs",
    "per_device_train_batch_size": "use [train].batch_size",
    "per_device_eval_batch_size": "use [train].eval_batch_size",
    "learning_rate": "use [train].learning_rate",
    "lr_scheduler_type": "use [train].lr_scheduler",
    "warmup_steps": "use [train].warmup",
    "weight_decay": "use [train].weight_decay",
    "gradient_accumulation_steps": "use [train].gradient_accumulation_steps",
    "max_grad_norm": "use [train].max_grad_norm",
    "seed": "use the spec's or the member's seed",
    "data_seed": "use the spec's or the member's seed",
    "eval_strategy": "runner evaluates every epoch",
    "save_strategy": "runner saves every epoch",
    "logging_strategy": "runner logs every epoch",
    "eval_steps": "runner evaluates every epoch",
    "save_steps": "runner saves every epoch",
    "metric_for_best_model": "use [selection].metric",
    "greater_is_better": "use [selection].metric with a + or - prefix",
    "load_best_model_at_end": "runner keeps the selected checkpoint itself",
    "save_total_limit": "runner keeps the checkpoints that selection and SWA need",
    "fp16": "use [train].precision",
    "bf16": "use [train].precision",
    "label_smoothing_factor": "use [loss].label_smoothing",
    "label_names": "runner tells Trainer the label names itself",
    "remove_unused_columns": "runner builds the model inputs itself",
    "prediction_loss_only": "runner stores every example's predictions, so evaluation must return them",
    "eval_do_concat_batches": "runner stores each split's predictions as one array",
    "batch_eval_metrics": "runner computes its metrics once per split, from all the probabilities",
    "dataloader_drop_last": "runner predicts every example of every split, so no batch may be dropped",
}


class DataSpec(Strict):
    source: str = Field("csv",
        description="The dataset loader: csv, jsonl, parquet, synthetic, or a plugin's (`runner plugins` lists them).")
    train: Text | None = Field(None,
        description="The training file (a path, relative to the spec), or none for a loader that makes its own data.")
    valid: Text | float | None = Field(0.1,
        description="The validation split: a file, or a fraction of train split off stratified and seeded.")
    test: Text | float | None = Field(None,
        description="The test split: a file, or a fraction of train; its labels are optional.")
    text_column: Text = Field("text", min_length=1, description="The column holding the text.")
    label_column: Text = Field("label", min_length=1, description="The column holding the label.")
    labels: list[Text] | None = Field(None,
        description="The label names in order (label ids 0..n-1); default: read from the data.")
    max_length: int = Field(128, ge=8, le=8192, description="Tokens per example; longer texts are truncated.")
    special_tokens: list[Text] = Field(default_factory=list,
        description="Tokens added to every tokenizer, never split (e.g. \"<movie>\").")
    options: dict[str, Any] = Field(default_factory=dict,
        description="The dataset loader's own options (checked by its options model).")

    @field_validator("valid", "test")
    @classmethod
    def _fraction(cls, v):
        if isinstance(v, float) and not 0.0 < v < 1.0:
            raise ValueError("a fraction split must be between 0 and 1 (exclusive)")
        return v

    @field_validator("labels")
    @classmethod
    def _labels(cls, v):
        if v is not None:
            if len(v) < 2:
                raise ValueError("a classifier needs at least 2 labels")
            if any(not x.strip() for x in v):
                raise ValueError("label names must not be empty")
            if len(set(v)) != len(v):
                raise ValueError("label names must be unique")
            if any(len(x) > 200 for x in v):
                raise ValueError("label names are at most 200 characters")
        return v

    @field_validator("special_tokens")
    @classmethod
    def _special_tokens(cls, v):
        if any(not t.strip() or t != t.strip() for t in v):
            raise ValueError("special tokens must be non-empty, without leading or trailing spaces")
        if len(set(v)) != len(v):
            raise ValueError("special tokens must be unique")
        return v

    @model_validator(mode="after")
    def _fractions_leave_train(self):
        total = sum(x for x in (self.valid, self.test) if isinstance(x, float))
        if total >= 0.9:
            raise ValueError(f"valid and test fractions add up to {total:g}, leaving almost nothing to train on")
        return self


class TrainSpec(Strict):
    epochs: int = Field(3, ge=1, le=1000, description="Epochs to train (early stopping may end sooner).")
    batch_size: int = Field(32, ge=1, le=65536, description="Training batch size per device.")
    eval_batch_size: int | None = Field(None, ge=1, le=65536,
        description="Evaluation batch size; default: batch_size.")
    learning_rate: float = Field(5e-5, gt=0, le=1, description="Peak learning rate.")
    lr_scheduler: str = Field("linear",
        description="Learning-rate schedule (a transformers SchedulerType: linear, constant, cosine...).")
    warmup: float = Field(0.0, ge=0, le=1e9,
        description="Warm-up: below 1 a fraction of the steps, from 1 a number of steps.")
    weight_decay: float = Field(0.0, ge=0, le=1e6, description="AdamW weight decay.")
    gradient_accumulation_steps: int = Field(1, ge=1, le=65536, description="Batches accumulated per optimizer step.")
    max_grad_norm: float = Field(1.0, ge=0, le=1e9, description="Gradient clipping norm (0: none).")
    precision: Literal["auto", "fp32", "fp16", "bf16"] = Field("auto",
        description="auto (bf16/fp16 on CUDA, else fp32), fp32, fp16 or bf16.")
    # Trainer's length grouping (train_sampling_strategy = "group_by_length"): batches of similar
    # lengths, so dynamic padding pads little; runner.train.sampling then shuffles the batches' order
    group_by_length: bool = Field(False,
        description="Batch examples of similar lengths (Trainer's length grouping, the batches in random order); "
                    "evaluation stays in order.")
    compile: bool = Field(False, description="torch.compile the model.")
    trainer_args: dict[str, Any] = Field(default_factory=dict,
        description="Any other TrainingArguments field, checked against the installed transformers.")

    @model_serializer(mode="wrap")
    def _omit_defaults_added_later(self, handler):
        # Fields added after runs were stored are left out while off, so every spec hash stored
        # before them stays valid (an unchanged spec continues its run).
        d = handler(self)
        for key in ("group_by_length", "compile"):
            if d.get(key) is False:
                d.pop(key)
        if d.get("group_by_length") is True:
            # stored as "shuffled": runs stored as `true` had Trainer's batch order (longest to
            # shortest within each group of 50 batches), so they keep a hash of their own
            d["group_by_length"] = SHUFFLED_BATCHES
        return d

    @field_validator("group_by_length", mode="before")
    @classmethod
    def _stored_group_by_length(cls, v):
        return True if v == SHUFFLED_BATCHES else v

    @field_validator("warmup")
    @classmethod
    def _warmup(cls, v):
        if v >= 1 and not float(v).is_integer():
            raise ValueError(f"{v:g} is neither a fraction below 1 nor a whole number of steps")
        return v

    @field_validator("lr_scheduler")
    @classmethod
    def _scheduler(cls, v):
        from transformers.trainer_utils import SchedulerType

        allowed = [s.value for s in SchedulerType]
        if v not in allowed:
            raise ValueError(f"unknown scheduler {v!r}; one of: {', '.join(allowed)}")
        return v

    @field_validator("trainer_args")
    @classmethod
    def _trainer_args(cls, v):
        from transformers import TrainingArguments

        known = {f.name for f in dataclasses.fields(TrainingArguments) if f.init}
        problems = []
        for key in v:
            if key in OWNED_TRAINER_ARGS:
                problems.append(f"{key!r} is set by runner ({OWNED_TRAINER_ARGS[key]})")
            elif key not in known:
                close = close_matches(key, known)
                hint = f"; did you mean {close}?" if close else ""
                problems.append(f"{key!r} is not a TrainingArguments field of this transformers version{hint}")
            elif isinstance(v[key], float) and not math.isfinite(v[key]):
                problems.append(f"{key!r} is {v[key]}; give a finite number")
            else:
                problem = _trainer_arg_type_problem(key, v[key])
                if problem:
                    problems.append(problem)
                elif isinstance(v[key], int) and not isinstance(v[key], bool) and _is_float_field(key):
                    v[key] = float(v[key])  # `adam_beta1 = 0` means 0.0; torch refuses a mix of ints and floats
        if "report_to" in v:
            problems.extend(_report_to_problems(v["report_to"]))
        if problems:
            raise ValueError("; ".join(problems))
        return v


def _training_argument_types() -> dict[str, Any]:
    import typing

    from transformers import TrainingArguments

    return typing.get_type_hints(TrainingArguments)


def _is_float_field(key: str) -> bool:
    return _training_argument_types().get(key) is float


def _trainer_arg_type_problem(key: str, value) -> str | None:
    """Why `value` does not fit the TrainingArguments field `key`'s declared type, or None.

    TrainingArguments does not check types: a float where a string belongs, or a string of digits
    where a number belongs, is only met by the code that uses it, halfway through training.
    """
    from pydantic import TypeAdapter, ValidationError

    hint = _training_argument_types().get(key)
    if hint is None:
        return None
    adapter = TypeAdapter(hint)
    try:
        adapter.validate_python(value, strict=True)
        return None
    except ValidationError:
        pass
    except Exception:  # a type pydantic cannot check: leave it to the dry run
        return None
    try:
        converted = adapter.validate_python(value)
    except ValidationError:
        converted = None
    else:
        # lax mode turns "32" into 32 and true into 1: TOML has real types, so those are mistakes
        if not (isinstance(value, str) and not isinstance(converted, str)) and not isinstance(value, bool):
            return None
    want = str(hint).replace("typing.", "").replace("transformers.training_args.", "")
    return f"{key!r} must be {want}, not {describe(value)}"


def _report_to_problems(value) -> list[str]:
    """`report_to` names integrations whose packages must be installed, or training fails at its start."""
    try:
        from transformers.integrations import get_available_reporting_integrations
        from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK
    except ImportError:  # another transformers version: leave it to TrainingArguments
        return []
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        return [f"'report_to' must be a name or a list of names, not {describe(value)}"]
    available = set(get_available_reporting_integrations())
    problems = []
    for n in names:
        if n in ("none", "all"):
            continue
        if n not in INTEGRATION_TO_CALLBACK:
            problems.append(f"'report_to' names {n!r}, which is not a reporting integration; one of: "
                            + ", ".join(sorted(INTEGRATION_TO_CALLBACK)))
        elif n not in available:
            problems.append(f"'report_to' names {n!r}, but its package is not installed (pip install it, or "
                            "remove it)")
    return problems


class LossSpec(BaseModel):
    """`name` and `label_smoothing`; every other key goes to the loss plugin's options model."""

    model_config = ConfigDict(extra="allow", strict=True, allow_inf_nan=False)
    name: str = Field("cross_entropy",
        description="The loss: cross_entropy, focal, or a plugin's; its options are the other keys of this table.")
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0, description="Label smoothing, 0 to below 1.")

    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class SelectionSpec(Strict):
    metric: str = Field("eval_accuracy",
        description="The validation metric that selects the checkpoint kept as selected/ (eval_accuracy, eval_loss, "
                    "eval_f1_macro, eval_log_loss or a plugin's; +name/-name force the direction).")
    early_stopping_patience: int | None = Field(None, ge=1, le=1000,
        description="Stop a member after this many epochs without improvement (none: never).")

    def parsed(self) -> tuple[str, bool | None]:
        """(metric name without eval_ and sign, forced greater_is_better or None to infer)."""
        m = self.metric.strip()
        forced = None
        if m[:1] in ("+", "-"):
            forced = m[0] == "+"
            m = m[1:]
        if m.startswith("eval_"):
            m = m[len("eval_"):]
        return m, forced


class SwaSpec(Strict):
    k: int = Field(0, ge=0, le=1000, description="Average the weights of the last K epoch checkpoints (0: no SWA).")


class EnsembleSpec(Strict):
    checkpoint: Literal["selected", "swa", "last"] = Field("selected",
        description="Which checkpoint of each member the ensemble averages: selected, swa or last.")
    weights: list[float] | Literal["equal", "fit"] = Field("equal",
        description="One weight per member, \"equal\", or \"fit\" (fitted on validation predictions).")

    @field_validator("weights")
    @classmethod
    def _weights(cls, v):
        if isinstance(v, list):
            if any(w < 0 for w in v):
                raise ValueError("weights must be non-negative")
            if sum(v) <= 0:
                raise ValueError("weights must not all be zero")
        return v


class RefitSpec(Strict):
    """`[refit]`: after the run, retrain every member on train+valid for the number of epochs this
    selection strategy chose for it (None = no refit). A refit is a run of its own, linked to its
    parent; the strategy is checked against the registered ones in resolve.py."""

    strategy: str | None = Field(None, min_length=1, max_length=200,
        description="After the run, retrain every member on train+valid for the epochs this strategy chose "
                    "(\"selected\" or a registered strategy).")


class MemberSpec(Strict):
    name: str | None = Field(None, pattern=NAME_PATTERN,
        description="The member's name (a folder name): a letter or digit, then letters, digits, _ . -; default "
                    "from the model or backbone.")
    backbone: str = Field(
        description="A registered backbone: hf (a Hugging Face model), scratch (a small model trained from "
                    "scratch), or a plugin's.")
    model: Text | None = Field(None, min_length=1,
        description="For backbones that take one: a Hub id (klue/bert-base) or a local folder made by save_pretrained.")
    options: dict[str, Any] = Field(default_factory=dict,
        description="The backbone's own options (checked by its options model).")
    seed: int | None = Field(None, ge=0, le=MAX_SEED,
        description="The member's seed; default: the spec's seed + the member's index.")
    train: dict[str, Any] = Field(default_factory=dict, description="[train] keys overridden for this member.")
    loss: dict[str, Any] = Field(default_factory=dict,
        description="[loss] keys overridden for this member (another name starts from that loss's defaults).")
    # runner.spec.adapt: false opts out of [adapt], true adapts with its defaults, a table overrides it
    adapt: bool | dict[str, Any] | None = Field(None,
        description="false: no [adapt] for this member; true: adapt with the defaults; a table: [adapt] keys "
                    "overridden.")


class Spec(Strict):
    name: str = Field(pattern=NAME_PATTERN,
        description="The run's name (a folder name): a letter or digit, then letters, digits, _ . -.")
    seed: int = Field(42, ge=0, le=MAX_SEED,
        description="The seed of data splits and, plus the member's index, of each member.")
    data: DataSpec = Field(description="The dataset: where it comes from, its splits and columns.")
    train: TrainSpec = Field(default_factory=TrainSpec, description="Training settings shared by every member.")
    loss: LossSpec = Field(default_factory=LossSpec, description="The loss shared by every member.")
    selection: SelectionSpec = Field(default_factory=SelectionSpec,
        description="How each member's checkpoint is selected.")
    swa: SwaSpec = Field(default_factory=SwaSpec, description="Stochastic weight averaging over the last epochs.")
    ensemble: EnsembleSpec = Field(default_factory=EnsembleSpec, description="The soft-vote ensemble of the members.")
    refit: RefitSpec = Field(default_factory=RefitSpec, description="Retraining on train+valid after the run.")
    adapt: AdaptSpec | None = Field(None,
        description="Masked-LM adaptation of each member's encoder to the task's texts before fine-tuning.")
    compute: ComputeSpec = Field(default_factory=lambda: ComputeSpec(),  # defined in compute.py, below
        description="Where members train: here, or as Ray tasks on a cluster (not part of the spec hash).")
    sweep: SweepSpec | None = Field(None, description="A hyperparameter search whose trials are runs of this spec.")
    track: TrackSpec = Field(default_factory=TrackSpec,
        description="Trackers (MLflow, W&B) the run is also logged to (not part of the spec hash).")
    # runner.run.repeats: train the spec this many times with other member seeds (the data stays the same)
    repeats: int = Field(1, ge=1, le=100,
        description="Train the spec this many times with other member seeds on the same data.")
    members: list[MemberSpec] = Field(min_length=1, max_length=1000,
        description="The models to train ([[members]] tables).")

    @model_validator(mode="after")
    def _cross_checks(self):
        if isinstance(self.ensemble.weights, list) and len(self.ensemble.weights) != len(self.members):
            raise LocatedError(
                "ensemble.weights",
                f"{len(self.ensemble.weights)} weights for {len(self.members)} members; give one weight per member",
            )
        return self
