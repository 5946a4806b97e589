"""`[sweep]`: a hyperparameter search over spec keys, each trial an ordinary run (runner.search.sweep runs it).

    [sweep]
    trials = 12
    sampler = "tpe"                 # tpe | random | grid (Optuna's samplers)
    objective = "best_eval_accuracy" # a registered selection strategy: its metric and direction
    pruner = "median"               # median | hyperband | none, fed each epoch's validation metric
    pruner_startup = 2              # trials that complete before any is pruned
    pruner_warmup = 0               # epochs reported (over the members, in order) before a trial may be pruned

    [sweep.space]
    "loss.gamma" = { low = 0.5, high = 4.0 }
    "train.learning_rate" = { low = 1e-5, high = 1e-3, log = true }
    "train.batch_size" = { choices = [16, 32] }
    "loss.alpha[1]" = { low = 0.25, high = 4.0 }

Keys are the dotted keys of `--set` (runner.spec.keys). The model here checks the shape of each
distribution; `space_problems` checks every key against the spec itself, by setting it to its
bounds (or each choice) and validating the result as a file would be, so a typo or an out-of-range
bound is reported as `sweep.space."key"` before anything runs.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field, model_validator

from runner.spec.base import MAX_SEED, Strict
from runner.spec.keys import KeyPathError, set_key
from runner.spec.problems import LocatedError, Problem, unknown

Scalar = bool | int | float | str


class Distribution(Strict):
    """`{ low, high [, log] [, step] }` (a float, or an int when low, high and step are integers), or
    `{ choices = [...] }`."""

    low: int | float | None = Field(None,
        description="Lower bound (an integer with high and step integers too: an integer parameter).")
    high: int | float | None = Field(None, description="Upper bound.")
    log: bool = Field(False, description="Sample on a log scale (low > 0).")
    step: int | float | None = Field(None, gt=0, description="Step between low and high (a grid).")
    choices: list[Scalar] | None = Field(None, min_length=1, max_length=1000,
        description="The values to choose from, instead of low and high.")

    @model_validator(mode="after")
    def _shape(self):
        if self.choices is not None:
            if self.low is not None or self.high is not None or self.log or self.step is not None:
                raise ValueError("give either choices, or low and high (with log or step), not both")
            if len({repr(c) for c in self.choices}) != len(self.choices):
                raise ValueError("choices repeat a value")
            return self
        if self.low is None or self.high is None:
            raise ValueError("give low and high (for example { low = 0.5, high = 4.0 }), or choices")
        if not (math.isfinite(self.low) and math.isfinite(self.high)) or self.low >= self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high}), both finite")
        if self.log and self.low <= 0:
            raise ValueError("log = true needs low > 0")
        if self.log and self.step is not None:
            raise ValueError("give log or step, not both (Optuna samples a log scale continuously)")
        return self

    @property
    def is_int(self) -> bool:
        ints = [v for v in (self.low, self.high, self.step) if v is not None]
        return self.choices is None and all(isinstance(v, int) and not isinstance(v, bool) for v in ints)

    def probes(self) -> list[Any]:
        """The values a key is checked with: its bounds, or every choice."""
        return list(self.choices) if self.choices is not None else [self.low, self.high]

    def grid(self) -> list[Any] | None:
        """Every value, for the grid sampler: the choices, or low..high by step; None when continuous."""
        if self.choices is not None:
            return list(self.choices)
        if self.step is None:
            return None
        n = int(math.floor((self.high - self.low) / self.step + 1e-9)) + 1
        values = [self.low + i * self.step for i in range(n)]
        return [int(v) for v in values] if self.is_int else [round(v, 12) for v in values]


class SweepSpec(Strict):
    trials: int = Field(10, ge=1, le=100_000, description="Trials to run (raise it to continue a finished sweep).")
    sampler: Literal["tpe", "random", "grid"] = Field("tpe", description="Optuna's sampler: tpe, random or grid.")
    seed: int | None = Field(None, ge=0, le=MAX_SEED, description="The sampler's seed; default: the spec's seed.")
    timeout: float | None = Field(None, gt=0, le=10 * 365 * 86400,
        description="Seconds after which no new trial starts.")
    objective: str | None = Field(None, min_length=1, max_length=200,
        description="A selection strategy whose validation metric the sweep optimises; default: the spec's own.")
    member: str | None = Field(None, min_length=1, max_length=100,
        description="Optimise one member's objective instead of the ensemble's.")
    pruner: Literal["median", "hyperband", "none"] = Field("median",
        description="median, hyperband or none, fed each epoch's validation metric.")
    pruner_startup: int = Field(2, ge=0, le=100_000, description="Trials that complete before any is pruned.")
    pruner_warmup: int = Field(0, ge=0, le=100_000, description="Epochs a trial reports before it may be pruned.")
    storage: str | None = Field(None, min_length=1, max_length=4096,
        description="Optuna storage: a journal file or a database URL (default: a journal under runs/_sweeps/).")
    repeats: int | None = Field(None, ge=1, le=100, description="Replicas per trial; default: the spec's repeats.")
    space: dict[str, Distribution] = Field(min_length=1, max_length=200,
        description="Dotted spec keys (\"loss.gamma\", \"members.NAME.train.learning_rate\") mapped to distributions.")

    @model_validator(mode="after")
    def _grid(self):
        if self.sampler == "grid":
            continuous = [k for k, d in self.space.items() if d.grid() is None]
            if continuous:
                raise LocatedError(f'sweep.space."{continuous[0]}"', "the grid sampler needs choices, or a step "
                                                                     "between low and high")
        return self


def space_problems(doc: dict, sweep: SweepSpec, check, num_labels: int, member_names: list[str],
                   strategies: list[str]) -> list[Problem]:
    """Problems of the sweep against the spec: an objective that names no strategy or member, and each
    space key set to its bounds (or choices) in the raw spec `doc`, then checked by `check(doc)`, which
    returns the problems of that spec (an empty list when it is valid)."""
    problems: list[Problem] = []
    if sweep.objective is not None and sweep.objective not in strategies:
        problems.append(("sweep.objective", unknown("selection strategy", sweep.objective, strategies)))
    if sweep.member is not None and sweep.member not in member_names:
        problems.append(("sweep.member", f"no member named {sweep.member!r} (members: {', '.join(member_names)})"))
    base = {k: v for k, v in doc.items() if k != "sweep"}
    for key, dist in sweep.space.items():
        loc = f'sweep.space."{key}"'
        for value in dist.probes():
            try:
                trial = set_key(base, key, value, list_size=num_labels)
            except KeyPathError as e:
                problems.append((loc, str(e)))
                break
            found = check(trial)
            if found:
                shown = "; ".join(f"{where}: {msg}" if where else msg for where, msg in found[:3])
                problems.append((loc, f"with {key} = {value!r}, the spec is invalid: {shown}"))
                break
    return problems
