"""Refit on train+valid: retrain a finished run's members on all its labelled training data.

A refit is a run of its own, linked to its parent (`runs.parent_run_id`, `runs.refit_strategy`),
named `<parent's name>-refit` (run id `<name>-<hash>`). Each member of the parent trains again from scratch with
the same seed, backbone options and training settings, on the parent's train and valid examples
merged (read back from the store's `examples` rows, so the data files need not exist any more), for
the number of epochs the strategy chose for that member: `best_eval_accuracy` picked epoch 3, so the
refit trains 3 epochs; `last`, the epochs the member trained; `swa`, up to the last epoch of the
member's SWA window, and then averages that same window. Early stopping is off.

No validation data is left, so nothing is selected: each refit member's `selected` checkpoint is its
last epoch (or, for `swa`, its SWA checkpoint is what the ensemble takes). Trainer's evaluation is
turned off and the store callback predicts the test split at each epoch's checkpoint, so test
metrics and probabilities are stored every epoch as usual (runner.train.callback). The refit's ensemble
uses the weights fitted on validation in the parent for the strategy.

Training goes through `runner.run.training.train_run`, the member loop `apply` uses: a refit killed half-way
is continued by running the same command again (finished members are skipped, an interrupted member
resumes from its last stored epoch). Everything is checked before the first write: a refit of an
unknown or unfinished run, an unknown strategy, or one that picks nothing for a member, exits 2
with nothing written. A refit of a refit is refused: it has no validation split, so no strategy but
`last` or `swa` could pick anything, and those would only train the same data again.
"""

from __future__ import annotations

import hashlib
import json
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
from pydantic import ValidationError

from runner.core import failures
from runner.core.environment import environment
from runner.core.locks import file_lock
from runner.core.records import MemberHistory, RunRecord
from runner.core.selection import SELECTED, checkpoint_epoch
from runner.data.prepare import PreparedData, Split, dataset_hash
from runner.errors import InputError, PluginError, SpecError
from runner.plugins.registry import load_registry, plugins_dir_for
from runner.posthoc.ensemble import SPEC_ENSEMBLE, build_ensemble
from runner.run.training import train_run
from runner.spec import ResolvedSpec, Spec, resolve
from runner.spec.problems import unknown
from runner.store import Store, checkpoints
from runner.train.adapt import Adaptation, cached, plan_adaptations, root_for
from runner.train.dryrun import check_cheaply
from runner.train.job import ApplyResult, Plan


@dataclass
class RefitPlan:
    """A checked refit, ready to train: nothing has been written yet."""

    parent: RunRecord
    strategy: str  # the parent's strategy whose picks set the epochs (`selected` only for a forced direction)
    plan: Plan  # the refit's resolved spec (epochs per member) and its train+valid data
    epochs: dict[str, int]
    swa_windows: dict[str, tuple[int, ...]]
    weights: list[float] | str  # the ensemble's weights, from the parent, or "equal"
    weights_note: str | None  # where the weights came from, for the screen
    spec: dict[str, Any]  # the refit's spec as stored (runs.spec)
    existing: dict | None = None  # the refit of this parent by this strategy already in the store, if any

    @property
    def spec_hash(self) -> str:
        blob = json.dumps(self.spec, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()


def refit(store_path: str | Path, ref: str | None, strategy: str | None = None, plugins_dir: str | Path | None = None,
          registry=None, progress: Any = None, say: Callable[[str], None] = print,
          verbose: bool = False, source: str = "--strategy", backend: Any = None) -> ApplyResult:
    """`runner refit RUN [--strategy S]`: check, then train the refit (or continue it); its ApplyResult.
    `source` is where the strategy came from, for messages (`[refit] strategy` inside `apply`)."""
    if registry is None:
        registry = load_registry(plugins_dir_for(None, Path(plugins_dir) if plugins_dir is not None else None))
    reader = Store(store_path).open_read()
    try:
        rp = plan_refit(reader, ref, strategy, registry, source)
        taken = set(reader.run_ids())
    finally:
        reader.close()  # an older store was read through a copy in memory; the writer below upgrades the file
    existing = rp.existing
    if existing is not None and existing["status"] == "finished":
        say(f"Refit {existing['run_id']} of run {rp.parent.run_id} ({rp.strategy}) is already finished in "
            f"{store_path}; nothing to do.")
        return ApplyResult(existing["run_id"], "up-to-date")
    store = Store(store_path)
    store.check_writable()
    runs_root = checkpoints.runs_root(store)
    run_id = existing["run_id"] if existing is not None else _new_run_id(taken, rp)
    problems = checkpoints.path_problems(runs_root, run_id, [m.name for m in rp.plan.resolved.members])
    if problems:
        raise InputError(f"--store {store.path}: " + "; ".join(problems))

    store.open(create=False)
    store.refresh_views(registry.names("metrics"))
    with ExitStack() as held:
        with file_lock(runs_root / ".apply.lock", f"store {store.path}", wait_s=30):
            run_id = _find_or_create(store, rp, say)
            held.enter_context(file_lock(runs_root / run_id / ".lock", f"run {run_id}"))
        with failures.in_run(runs_root / run_id):
            return train_run(rp.plan, store, run_id, progress, say, verbose, backend=backend)


def plan_refit(store: Store, ref: str | None, strategy: str | None, registry, source: str = "--strategy") -> RefitPlan:
    """Check a refit of run `ref` by `strategy` (default: the run's own selection) and plan it; reads only."""
    parent = store.run(ref)
    where = f"RUN {ref!r}" if ref is not None else f"run {parent.run_id} (the latest)"
    if parent.is_refit:
        raise InputError(f"{where}: run {parent.run_id} is itself a refit of run {parent.parent_run_id} (trained on "
                         "train+valid, so no validation split is left to choose epochs on); refit "
                         f"{parent.parent_run_id} instead")
    unfinished = [m.name for m in parent.members if m.status != "finished"]
    if parent.status != "finished" or unfinished or not parent.members:
        why = f"members not finished: {', '.join(unfinished)}" if unfinished else f"status {parent.status}"
        raise InputError(f"{where}: run {parent.run_id} is not finished ({why}); finish it first (`runner apply "
                         "SPEC` with the same spec and store continues it), then refit it")
    name = _strategy_name(parent, strategy, registry)
    what = f"{source} {name!r}" if strategy else f"strategy {name!r} (the run's own selection)"
    chosen = _picks(store, parent, name, registry)
    epochs, windows = _epochs(parent, what, chosen)
    data, parent_texts = _merged_data(store, parent, where)
    existing = _existing(store, parent.run_id, name)
    if existing is not None:  # a refit under way keeps the weights it started with
        weights, note = store.run(existing["run_id"]).ensemble_weights, None
    else:
        weights, note = _parent_weights(store, parent, name, chosen, registry)
    resolved, spec = _refit_spec(parent, name, epochs, windows, weights, registry, where)
    plan = Plan(Path(f"run {parent.run_id}"), registry, resolved, data,
                _parent_adaptations(store, parent, resolved, registry, parent_texts, where))
    rp = RefitPlan(parent, name, plan, epochs, windows, weights, note, spec, existing)
    rp.spec["refit"].update({"parent_run_id": parent.run_id, "parent_dataset_id": parent.dataset_id,
                             "epochs": epochs, "swa_epochs": {m: list(w) for m, w in windows.items()},
                             "weights_from": note})
    _check_cheaply(rp, where)
    return rp


def _strategy_name(parent: RunRecord, strategy: str | None, registry) -> str:
    name = strategy or SELECTED
    if name == SELECTED:
        return parent.selected_strategy  # `selected` itself only when the spec forced the metric's direction
    if registry.selection(name) is None:
        known = [SELECTED] + [s.name for s in registry.selections()]
        raise InputError(f"--strategy {name!r}: {unknown('selection strategy', name, known)}")
    return name


def _picks(store: Store, parent: RunRecord, name: str, registry) -> dict[str, str | None]:
    """member -> the checkpoint the strategy picked: stored, or computed from the stored epochs (for a
    strategy registered after the run trained; nothing is written)."""
    if name == SELECTED:
        return {m.name: m.selected_checkpoint for m in parent.members}
    stored = store.selections(parent.run_id, name)
    return {m.name: stored.get(m.name) or _pick(store, parent, m.name, name, registry) for m in parent.members}


def _epochs(parent: RunRecord, what: str, picks: dict[str, str | None]
            ) -> tuple[dict[str, int], dict[str, tuple[int, ...]]]:
    """member -> epochs to train (the strategy's pick), and member -> SWA window for `swa`; `what`
    names the strategy in messages."""
    epochs, windows = {}, {}
    for m in parent.members:
        chosen = picks[m.name]
        if chosen == "swa":
            if not m.swa_epochs:
                raise InputError(f"{what}: run {parent.run_id} stored no SWA window for member {m.name!r}")
            windows[m.name] = tuple(m.swa_epochs)
            epochs[m.name] = max(m.swa_epochs)
        elif checkpoint_epoch(chosen) is not None:
            epochs[m.name] = checkpoint_epoch(chosen)
        else:
            raise InputError(f"{what}: it picks no checkpoint for member {m.name!r} of run "
                             f"{parent.run_id}, so there is no epoch count to refit it for; choose another strategy "
                             "(`runner compare RUN` shows what each one picks)")
    if windows and len({len(w) for w in windows.values()}) > 1:
        shown = ", ".join(f"{m} {list(w)}" for m, w in windows.items())
        raise InputError(f"{what}: the members of run {parent.run_id} averaged windows of different "
                         f"lengths ({shown}: early stopping came before [swa] k epochs), which one refit cannot "
                         "repeat; refit another strategy")
    return epochs, windows


def _pick(store: Store, parent: RunRecord, member: str, name: str, registry) -> str | None:
    """A strategy's pick computed from the stored epochs (one registered after the run trained)."""
    history = MemberHistory.of(member, store.member_epochs(parent.run_id, member),
                               has_swa=store.has_checkpoint(parent.run_id, member, "swa"))
    s = registry.selection(name)
    try:
        return s.pick(history)
    except Exception as e:  # a plugin strategy's bug: name it
        raise PluginError(f"selection strategy {name!r} ({s.origin}) raised {type(e).__name__}: {e} "
                          f"for member {member!r}") from e


def _parent_adaptations(store: Store, parent: RunRecord, resolved: ResolvedSpec, registry,
                        texts: dict[str, list[str]], where: str) -> dict:
    """The adaptations of the parent's members ([adapt]): each refit member starts from the very
    encoder its parent member did, found by the key the parent recorded (`members.adapt_key`) in the
    cache beside the store; one that is gone is planned again from the parent's splits, and must
    come out with the same key (an `extra` file relative to the parent's spec cannot be found here)."""
    root = root_for(store.path)
    used = store.member_adapt_keys(parent.run_id)
    try:
        planned = plan_adaptations(resolved, registry, texts, parent.spec.get("data", {}).get("text_column", "text"))
    except SpecError:
        planned = {}
    out = {}
    for m in resolved.members:
        if m.adapt is None:
            continue
        key = used.get(m.name)
        if key is not None and cached(root, key) is not None:
            out[m.name] = Adaptation(m.name, m.backbone, m.model, m.adapt, [], [], {}, "", key)
        elif key is not None and m.name in planned and planned[m.name].key == key:
            out[m.name] = planned[m.name]
        else:
            raise InputError(f"{where}: member {m.name} of run {parent.run_id} started from adaptation {key}, which "
                             f"is no longer in {root} (removed by `runner gc` or by hand) and cannot be made again "
                             "from the store alone; apply the parent's spec again to recreate it, then refit")
    return out


def _merged_data(store: Store, parent: RunRecord, where: str) -> tuple[PreparedData, dict[str, list[str]]]:
    """The parent's examples from the store: train and valid merged into one train split, test kept;
    and the texts of each of the parent's splits, as they were."""
    rows = store.examples_of(parent.dataset_id, ("train", "valid", "test"))
    splits: dict[str, tuple[list[str], list]] = {}
    for split, _, text, label in rows:
        texts, labels = splits.setdefault(split, ([], []))
        texts.append(text)
        labels.append(label)
    if "train" not in splits or "valid" not in splits:
        raise InputError(f"{where}: the examples of run {parent.run_id} (dataset {parent.dataset_id}) are not in "
                         f"{store.path}, so there is no train+valid to refit on")
    train = Split(splits["train"][0] + splits["valid"][0],
                  np.asarray(splits["train"][1] + splits["valid"][1], dtype=np.int64))
    out = {"train": train}
    if "test" in splits:
        texts, labels = splits["test"]
        out["test"] = Split(texts, None if any(x is None for x in labels) else np.asarray(labels, dtype=np.int64))
    labels = list(parent.label_names)
    # a dataset of its own (no valid split, so its hash is never that of a dataset `apply` prepared)
    return (PreparedData(label_names=labels, splits=out, dataset_id=dataset_hash(labels, out)),
            {split: texts for split, (texts, _) in splits.items()})


def _parent_weights(store: Store, parent: RunRecord, name: str, picks: dict[str, str | None],
                    registry) -> tuple[list[float] | str, str | None]:
    """The weights of the parent's ensemble for the strategy: stored, or fitted as `compare` would."""
    members = [m.name for m in parent.members]
    if len(members) < 2:
        return "equal", None
    stored = {r["member"]: (r["weight"], r["method"])
              for r in store.ensemble_weights(parent.run_id, SPEC_ENSEMBLE, name)}
    if set(stored) == set(members):
        method = stored[members[0]][1]
        if method == "equal":
            return "equal", f"equal, as in run {parent.run_id}'s ensemble for {name}"
        return [float(stored[m][0]) for m in members], f"{method} on validation in run {parent.run_id} for {name}"
    try:
        ens = build_ensemble(store, parent, registry, name, parent.ensemble_weights, name=SPEC_ENSEMBLE, save=False,
                             checkpoints={m: c for m, c in picks.items() if c})  # read only: nothing stored
    except InputError as e:
        return "equal", f"equal: run {parent.run_id} has no ensemble weights for {name} ({e})"
    if ens.members != members:
        return "equal", f"equal: run {parent.run_id}'s ensemble for {name} does not cover every member"
    if ens.method == "equal":
        return "equal", f"equal, as run {parent.run_id}'s ensemble for {name} would be"
    return ([float(w) for w in ens.weights],
            f"{ens.method} on validation in run {parent.run_id} for {name} (as `runner compare` fits them)")


def _refit_spec(parent: RunRecord, name: str, epochs: dict[str, int], windows: dict[str, tuple[int, ...]],
                weights, registry, where: str) -> tuple[ResolvedSpec, dict]:
    """The parent's stored spec, with each member's epochs, SWA over the same window (only for `swa`),
    no early stopping and the parent's ensemble weights; resolved against the registry."""
    d = json.loads(json.dumps(dict(parent.spec)))
    d.get("selection", {}).pop("resolved", None)
    d.setdefault("selection", {})["early_stopping_patience"] = None
    d["swa"] = {"k": len(next(iter(windows.values()))) if windows else 0}
    d["ensemble"] = {"checkpoint": "swa" if windows else "selected", "weights": weights}
    d["refit"] = {"strategy": name}
    for m in d.get("members", []):
        if isinstance(m, dict) and m.get("name") in epochs:
            m.setdefault("train", {})["epochs"] = epochs[m["name"]]
    label = Path(f"run {parent.run_id}")
    try:
        resolved = resolve(Spec.model_validate(d), registry, label, stored=True)
    except ValidationError as e:
        raise InputError(f"{where}: the spec stored with run {parent.run_id} cannot be read by this runner "
                         f"({e.errors()[0]['loc']}: {e.errors()[0]['msg']}); it cannot be refit") from None
    except SpecError as e:
        shown = "; ".join(f"{loc}: {msg}" if loc else msg for loc, msg in e.problems)
        raise InputError(f"{where}: the spec stored with run {parent.run_id} does not resolve with the plugins "
                         f"loaded now ({shown}); pass --plugins DIR with the plugins it was trained with") from None
    # nothing to select on: each member's `selected` checkpoint is its last epoch
    resolved = replace(resolved, strategy="last")
    return resolved, resolved.to_dict()


def _check_cheaply(rp: RefitPlan, where: str) -> None:
    """The loss on the merged data, TrainingArguments, seeds and model reachability, before any write.
    (The parent's dry run and training already built every model with these settings.)"""
    try:
        check_cheaply(rp.plan.resolved, rp.plan.registry, rp.plan.data, check_models=True)
    except SpecError as e:
        shown = "; ".join(f"{loc}: {msg}" if loc else msg for loc, msg in e.problems)
        raise InputError(f"{where}: the refit of run {rp.parent.run_id} cannot train: {shown}") from None


def _existing(store: Store, parent_run_id: str, strategy: str) -> dict | None:
    """The latest refit of the parent by the same strategy, to continue (or to report as finished)."""
    same = [r for r in store.refit_runs(parent_run_id) if r["refit_strategy"] == strategy]
    return same[-1] if same else None


def _new_run_id(taken: set[str], rp: RefitPlan) -> str:
    """`<parent's name>-refit-<8 hex of the refit's spec hash>`: a run id as `apply` makes them, of the
    refit's name (`runs.refit_strategy` and `parent_run_id` say which parent and strategy)."""
    base = f"{rp.parent.name}-refit-{rp.spec_hash[:8]}"
    k, run_id = 2, base
    while run_id in taken:
        run_id, k = f"{base}-{k}", k + 1
    return run_id


def _find_or_create(store: Store, rp: RefitPlan, say) -> str:
    """Under the store-wide lock: continue the refit if another command created it meanwhile, else create it."""
    existing = _existing(store, rp.parent.run_id, rp.strategy)
    data = rp.plan.data
    store.put_examples(data.dataset_id, data.splits)
    if existing is not None:
        say(f"Continuing refit {existing['run_id']} of run {rp.parent.run_id}.")
        return existing["run_id"]
    run_id = _new_run_id(set(store.run_ids()), rp)
    env = environment(None, rp.plan.registry.plugins_dir)
    parent_spec = store.environment(rp.parent.run_id).get("spec")
    if parent_spec:  # the refit has no spec file of its own: the parent's says where its plugins were
        env["spec"] = parent_spec
    store.create_refit_run(run_id, f"{rp.parent.name}-refit", rp.spec, rp.spec_hash, data.dataset_id,
                           list(data.label_names), rp.parent.run_id, rp.strategy, env)
    test = f", test {len(data.splits['test'])}" if "test" in data.splits else ""
    picks = ", ".join(f"{m} {list(rp.swa_windows[m]) if m in rp.swa_windows else e}" for m, e in rp.epochs.items())
    say(f"Refit {run_id} of run {rp.parent.run_id}: {len(data.splits['train'])} train+valid examples{test}; "
        f"{'SWA windows' if rp.swa_windows else 'epochs'} by {rp.strategy}: {picks}.")
    if rp.weights_note:
        say(f"Ensemble weights: {rp.weights_note}.")
    if "test" not in data.splits or data.splits["test"].labels is None:
        say(f"note: run {rp.parent.run_id} has no labelled test split, so the refit's gain cannot be measured; "
            "it is stored like any run, for `runner predict` and `runner export`.")
    return run_id
