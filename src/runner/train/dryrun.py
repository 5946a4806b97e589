"""The validation dry run: everything training builds, built and exercised once, without training.

For each member: the loss and `TrainingArguments` (checked for every member first, cheaply), every
RNG seeded with the member's seed, each model's reachability (the backbone's `check`, for every
member before any is built, so that one run names every unreachable model), then the real model and
tokenizer, the `Trainer` itself, its optimizer and LR scheduler (Trainer's own creation functions),
one real batch of each split through its own data loaders, a forward pass and the loss on each (and
a backward pass on the training batch), with the logits' shape and the loss checked.

Every problem becomes a `file: key: message` line of one SpecError (exit 2), raised before anything
is written: a cheap check that predicts a failure always beats a failure after the first write.
What is no problem but must be said comes back as a `DryRunReport`: which weights of a pretrained
checkpoint start at random and which went unused (runner.train.loading), and how each member's
tokenizer meets every split (runner.data.token_stats), with warnings.
"""

from __future__ import annotations

import math
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from runner.data import token_stats
from runner.data.prepare import PreparedData
from runner.errors import ModelLoadError, SpecError, TrainingError
from runner.plugins.registry import Registry
from runner.spec import ResolvedMember, ResolvedSpec
from runner.spec.problems import Problem, dedupe
from runner.train import loading, ranks
from runner.train.adapt_train import dry_run_problem
from runner.train.arguments import training_arguments
from runner.train.build import build_loss, make_trainer, prepare_member


def check_cheaply(resolved: ResolvedSpec, registry: Registry, data: PreparedData, check_models: bool) -> None:
    """Loss options against the data, `TrainingArguments`, seeds, and (with `check_models`) each
    model's reachability: everything that needs no model built."""
    problems: list[Problem] = []
    for m in resolved.members:
        try:
            build_loss(m, registry, data, resolved.path)
        except SpecError as e:
            problems.extend(e.problems)
        except Exception as e:  # a loss plugin rejecting its options for this data, not a runner bug
            origin = registry.loss(m.loss.name).origin
            problems.append((m.loss_loc, f"loss {m.loss.name!r} ({origin}) rejected its options: "
                                         f"{type(e).__name__}: {e}"))
        with tempfile.TemporaryDirectory(prefix="runner-dryrun-") as tmp:
            try:
                training_arguments(m, resolved, Path(tmp))
            except Exception as e:  # TrainingArguments' own checks (ValueError, TypeError, OSError...)
                problems.append((_train_loc(m), f"TrainingArguments refused them: {type(e).__name__}: "
                                                f"{_first_line(e)}{_given(m)}"))
        problems.extend(_seed_problems(m))
    if check_models:
        for m in resolved.members:
            check = registry.backbone(m.backbone).check
            if check is not None and m.model:
                try:
                    check(m.model, m.options)
                except ModelLoadError as e:
                    problems.append((f"{m.loc}.model", str(e)))
    if problems:
        # members sharing the top-level [loss] would each report the same problem
        raise SpecError(resolved.path, dedupe(problems))


_one_at_a_time = threading.Lock()


@dataclass
class DryRunReport:
    """What the dry run says beside its verdict: `notes` (a line per member loaded from a checkpoint:
    its new and unused weights), `warnings` (lines to print as warnings), `tokens` (member -> its
    tokenizer over every split, for the store and `validate`)."""

    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    tokens: dict[str, list[token_stats.SplitTokens]] = field(default_factory=dict)
    unknown_tokens: dict[str, str] = field(default_factory=dict)  # member -> its tokenizer's unknown token

    def token_lines(self) -> list[str]:
        return [token_stats.summary(m, stats, self.unknown_tokens.get(m, "[UNK]")) for m, stats in self.tokens.items()]


def dry_run(resolved: ResolvedSpec, registry: Registry, data: PreparedData,
            members: list[ResolvedMember]) -> DryRunReport:
    """Build each of `members` as training will and push one batch of each split through it (on every
    rank under torchrun: its optimizer step is a collective; runner.train.ranks). SpecError for every
    problem at once; else what to say (DryRunReport)."""
    problems: list[Problem] = []
    report = DryRunReport()
    message = ("dry_run", ranks.payload(resolved, data, {}, registry), [m.name for m in members]) if ranks.leading() else ()
    # one dry run at a time in a process: each TrainingArguments resets accelerate's process-wide state,
    # and sweep trials under Ray plan (and so dry-run) in threads of the driver
    with _one_at_a_time, ranks.shared(message):
        for m in members:
            problems.extend(_member_problems(resolved, registry, data, m, report))
    if problems:
        raise SpecError(resolved.path, dedupe(problems))
    return report


def _member_problems(resolved: ResolvedSpec, registry: Registry, data: PreparedData,
                     m: ResolvedMember, report: DryRunReport) -> list[Problem]:
    import torch

    backbone = registry.backbone(m.backbone)
    who = f"backbone {m.backbone!r} ({backbone.origin})"
    if m.adapt is not None:
        problem, warning = dry_run_problem(m, resolved, registry, data)
        if problem is not None:
            return [(m.adapt_loc, f"member {m.name}: {problem}")]
        if warning is not None:
            report.warnings.append(warning)
    # a few full batches of each split are all it pushes through: tokenizing the whole data here
    # would repeat what training does (runner.data.tokenized caches that one)
    t = m.train
    preview = max(t.batch_size * t.gradient_accumulation_steps, t.eval_batch_size or 2 * t.batch_size)
    try:
        inputs = prepare_member(m, resolved, data, registry, preview=preview)
    except SpecError as e:
        return e.problems
    except ModelLoadError as e:
        return [(f"{m.loc}.model" if m.model else f"{m.loc}.backbone", str(e))]
    except Exception as e:
        return [(f"{m.loc}.backbone", f"{who} failed to build the model: {type(e).__name__}: {_first_line(e)}")]
    _describe(m, inputs, resolved, data, report)
    with tempfile.TemporaryDirectory(prefix="runner-dryrun-") as tmp:
        try:
            trainer = make_trainer(m, resolved, inputs, Path(tmp), [])
        except Exception as e:
            return [(_train_loc(m), f"Trainer refused the arguments: {type(e).__name__}: {_first_line(e)}{_given(m)}")]
        try:
            steps = max(1, math.ceil(len(data.splits["train"]) / t.batch_size / t.gradient_accumulation_steps))
            trainer.create_optimizer_and_scheduler(num_training_steps=steps * m.train.epochs)
            if trainer.args.gradient_checkpointing:
                if not hasattr(inputs.model, "gradient_checkpointing_enable"):
                    raise ValueError(f"the model of {who} does not support gradient checkpointing")
                inputs.model.gradient_checkpointing_enable(
                    gradient_checkpointing_kwargs=trainer.args.gradient_checkpointing_kwargs)
        except Exception as e:
            return [(_train_loc(m), f"the optimizer or LR scheduler cannot be built: {type(e).__name__}: "
                                    f"{_first_line(e)}{_given(m)}")]
        problems = []
        try:
            batches = [("train", trainer.get_train_dataloader())]
            batches.append(("valid", trainer.get_eval_dataloader(inputs.valid)))
            if inputs.test is not None:
                batches.append(("test", trainer.get_eval_dataloader(inputs.test)))
        except Exception as e:
            return [(_train_loc(m), f"Trainer cannot load batches with these arguments: {type(e).__name__}: "
                                    f"{_first_line(e)}{_given(m)}")]
        for split, loader in batches:
            problem = _one_batch(trainer, inputs, loader, split, m, who, data.num_labels, torch)
            if problem is not None:
                problems.append(problem)
                break
        for check in (_evaluation, _one_step):
            if not problems:
                problem = check(trainer, inputs, resolved, m, data.num_labels)
                if problem is not None:
                    problems.append(problem)
        return problems


def _describe(m: ResolvedMember, inputs, resolved: ResolvedSpec, data: PreparedData, report: DryRunReport) -> None:
    """The member's line about its checkpoint's weights, and its tokenizer over every split."""
    loaded = loading.of(inputs.model)
    if loaded is not None:
        report.notes.append(loading.head_line(m.name, loaded, m.seed))
    stats = token_stats.measure(inputs.tokenizer, {name: s.texts for name, s in data.splits.items()},
                                resolved.spec.data.max_length, key=data.dataset_id)
    unknown = getattr(inputs.tokenizer, "unk_token", None) or "[UNK]"
    report.tokens[m.name], report.unknown_tokens[m.name] = stats, unknown
    report.warnings.extend(token_stats.warnings(m.name, stats, unknown))


def _one_step(trainer, inputs, resolved: ResolvedSpec, m: ResolvedMember, num_labels: int):
    """One optimizer step through `Trainer.train` itself, on one batch: what Trainer sets up only when
    training starts (kernels such as Liger, debug hooks, compilation, gradient checkpointing,
    optimizers that fail on their first step) is met here, not after the run is written. The model
    is the dry run's own copy; training builds a fresh one."""
    import dataclasses

    import torch
    from transformers import Trainer
    from transformers.trainer_callback import PrinterCallback

    n = min(len(inputs.train), m.train.batch_size * m.train.gradient_accumulation_steps)
    try:
        args = dataclasses.replace(trainer.args, max_steps=1, eval_strategy="no", save_strategy="no",
                                   logging_strategy="no", load_best_model_at_end=False)
        step = Trainer(model=inputs.model, args=args, train_dataset=torch.utils.data.Subset(inputs.train, range(n)),
                       processing_class=inputs.tokenizer, data_collator=trainer.data_collator,
                       compute_loss_func=inputs.compute_loss)
        step.remove_callback(PrinterCallback)
        step.train()
    except Exception as e:
        return (_train_loc(m), f"the first training step fails: {type(e).__name__}: {_first_line(e)}{_given(m)}")
    return None


def _evaluation(trainer, inputs, resolved: ResolvedSpec, m: ResolvedMember, num_labels: int):
    """Trainer's own evaluation loop over one batch of the validation split, as every epoch runs it:
    it must return the metrics selection reads, and (n, num_labels) predictions for the store."""
    import torch

    n = min(len(inputs.valid), trainer.args.per_device_eval_batch_size)
    subset = torch.utils.data.Subset(inputs.valid, range(n))
    try:
        metrics = trainer.evaluate(eval_dataset=subset)
        out = trainer.predict(subset)
    except Exception as e:
        return (_train_loc(m), f"Trainer's evaluation fails with these arguments: {type(e).__name__}: "
                               f"{_first_line(e)}{_given(m)}")
    key = f"eval_{resolved.metric}"
    if key not in metrics:
        return (_train_loc(m), f"Trainer's evaluation returns no {key}, which selection needs{_given(m)}")
    shape = getattr(out.predictions, "shape", None)
    if shape != (n, num_labels):
        return (_train_loc(m), f"Trainer's prediction returns {type(out.predictions).__name__} of shape {shape}, "
                               f"not ({n}, {num_labels}); runner stores every example's probabilities{_given(m)}")
    return None


def _given(m: ResolvedMember) -> str:
    """The member's [train.trainer_args], for messages about what Trainer made of them."""
    if not m.train.trainer_args:
        return ""
    shown = ", ".join(f"{k} = {v!r}" for k, v in m.train.trainer_args.items())
    return f" (with [train.trainer_args] {shown})"


def _one_batch(trainer, inputs, loader, split: str, m: ResolvedMember, who: str, num_labels: int, torch):
    """A forward pass (and for train a backward pass) on the first batch of `loader`; a problem or None."""
    try:
        batch = trainer._prepare_inputs(next(iter(loader)))
    except Exception as e:
        return (f"{m.loc}.backbone", f"the {split} split cannot be batched for {who}: {type(e).__name__}: "
                                     f"{_first_line(e)}")
    model = inputs.model
    training = split == "train"
    model.train(training)
    labels = batch.get("labels")
    features = {k: v for k, v in batch.items() if k != "labels"}
    try:
        with torch.set_grad_enabled(training):
            outputs = model(**features)
            logits = outputs["logits"] if isinstance(outputs, dict) else getattr(outputs, "logits", None)
    except Exception as e:
        return (f"{m.loc}.backbone", f"the forward pass of {who} failed on a {split} batch: {type(e).__name__}: "
                                     f"{_first_line(e)}")
    if logits is None or not hasattr(logits, "shape"):
        return (f"{m.loc}.backbone", f"the model of {who} returned {type(outputs).__name__} without `.logits`")
    n = features["input_ids"].shape[0] if "input_ids" in features else len(logits)
    if tuple(logits.shape) != (n, num_labels):
        return (f"{m.loc}.backbone", f"the model of {who} returned logits of shape {tuple(logits.shape)} for a "
                                     f"batch of {n}; there are {num_labels} labels, so it must be ({n}, {num_labels})")
    if labels is None:
        return None
    try:
        with torch.set_grad_enabled(training):
            loss = inputs.compute_loss(outputs, labels)
        if not (hasattr(loss, "shape") and loss.ndim == 0):
            return (m.loss_loc, f"loss {m.loss.name!r} returned {type(loss).__name__} of shape "
                                f"{tuple(getattr(loss, 'shape', ()))}; it must return a scalar tensor")
        if not math.isfinite(float(loss.detach())):
            return (m.loss_loc, f"loss {m.loss.name!r} is {float(loss.detach())} on a {split} batch before any training; "
                                "check the loss options")
        if training:
            loss.backward()
            model.zero_grad(set_to_none=True)
    except TrainingError as e:
        return (f"{m.loc}.backbone", str(e))
    except Exception as e:
        return (m.loss_loc, f"loss {m.loss.name!r} failed on a {split} batch: {type(e).__name__}: {_first_line(e)}")
    return None


def _seed_problems(m: ResolvedMember) -> list[Problem]:
    """The seed through every RNG training seeds: Python's, numpy's, torch's (and CUDA's)."""
    from transformers import set_seed

    try:
        set_seed(m.seed)
    except Exception as e:
        where = f"{m.loc}.seed"
        return [(where, f"seed {m.seed} is refused by a random number generator: {_first_line(e)}")]
    return []


def _train_loc(m: ResolvedMember) -> str:
    return f"{m.loc}.train.trainer_args" if m.train.trainer_args else f"{m.loc}.train"


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
