"""Uncertainty over seeds and examples: how much of a difference between strategies is noise.

On real data one seed moves test accuracy by a point or two, and a test split of a few thousand
examples moves it by about as much, which is the size of the effects a notebook compares. This
module puts numbers on both sources, from per-example scores of replicas (runs of one spec with
other member seeds on the same test examples, `runner.run.repeats`):

- `spread`: mean, sample standard deviation, min and max of one number over replicas;
- `paired_bootstrap`: a confidence interval for the difference between two strategies, resampling
  seeds and test examples together (the method is in its docstring);
- the per-example scores whose means are accuracy and log-loss are runner.core.maths' `correct` and `nll`.

numpy only, seeded, no threads: the same inputs give the same interval on every machine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import numpy as np

RESAMPLES = 2000
LEVEL = 0.95
SEED = 0
CHUNK_CELLS = 1 << 22  # resampled (draw, example) cells per block: bounds memory at ~32 MB of float64


@dataclass(frozen=True)
class Spread:
    """A number over replicas: `n` values (missing ones left out), their mean, sample standard
    deviation (ddof = 1; None with fewer than two values), min and max. All None when n = 0."""

    n: int
    mean: float | None
    sd: float | None
    min: float | None
    max: float | None


def spread(values: Iterable[float | None]) -> Spread:
    """Mean and spread of `values`, leaving out None and NaN (a replica without the number)."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=np.float64)
    if not len(v):
        return Spread(0, None, None, None, None)
    sd = float(v.std(ddof=1)) if len(v) > 1 else None
    return Spread(len(v), float(v.mean()), sd, float(v.min()), float(v.max()))


@dataclass(frozen=True)
class PairedInterval:
    """A paired bootstrap interval for mean(a) - mean(b).

    `estimate` is the observed difference (over every replica and example); `low`/`high` the
    percentile interval at `level`; `p_le_zero` the share of bootstrap differences <= 0 (near 0: a is
    reliably higher; near 1: reliably not higher; about 0.5: no telling); `replicas` and `examples`
    the sizes it was computed from.
    """

    estimate: float
    low: float
    high: float
    p_le_zero: float
    replicas: int
    examples: int
    resamples: int
    level: float


def paired_bootstrap(a: np.ndarray, b: np.ndarray, resamples: int = RESAMPLES, level: float = LEVEL,
                     seed: int = SEED) -> PairedInterval:
    """A confidence interval for mean(a) - mean(b), over seeds and test examples at once.

    `a` and `b` are per-example scores of two strategies, shape (replicas, examples): row r is
    replica r (one seed of the spec), column i test example i, the same examples in every row and
    in both arrays (so `correct(...)` gives accuracy, `nll(...)` log-loss). A 1-d array is one replica.

    Method: a two-level (seeds x examples) paired bootstrap of the grand mean of d = a - b. Each of
    the `resamples` draws picks R replicas with replacement from the R given and, independently, n
    test examples with replacement from the n given, and takes the mean of d over the picked
    replicas x picked examples. Paired: both strategies are scored on the same picked replicas and
    examples (only their difference is resampled), so what the two strategies share (a hard example,
    a lucky seed) cancels out, as it does in the comparison itself. The picked examples are the same
    for every picked replica, because the replicas were tested on the same examples: drawing them
    anew for each replica would treat an example's difficulty as independent across seeds and make
    the interval too narrow. This crossed scheme (Owen's "pigeonhole" bootstrap) counts the
    seed-by-example interaction in both levels, so it errs on the wide side. The interval is the
    percentile interval of the draws; `p_le_zero` is the share of draws <= 0.

    With few replicas the seed level is coarse (two replicas give three distinct seed mixtures): the
    interval says what these seeds show, and more `repeats` make it trustworthy. Identical inputs
    give exactly [0, 0]. Deterministic: `seed` seeds numpy's PCG64; draws are made in blocks, with
    no threads.
    """
    a = np.atleast_2d(np.asarray(a, dtype=np.float64))
    b = np.atleast_2d(np.asarray(b, dtype=np.float64))
    if a.shape != b.shape or a.ndim != 2 or 0 in a.shape:
        raise ValueError(f"paired_bootstrap: a and b must be non-empty (replicas, examples) arrays of one shape, "
                         f"not {a.shape} and {b.shape}")
    if not 0 < level < 1 or resamples < 1:
        raise ValueError("paired_bootstrap: level must be in (0, 1) and resamples at least 1")
    d = a - b
    r, n = d.shape
    rng = np.random.default_rng(seed)
    # how often each replica is picked, per draw: the seed level of the resample
    seed_counts = rng.multinomial(r, np.full(r, 1.0 / r), size=resamples).astype(np.float64)
    draws = np.empty(resamples)
    block = max(1, CHUNK_CELLS // n)
    for start in range(0, resamples, block):
        stop = min(resamples, start + block)
        picked = rng.integers(0, n, size=(stop - start, n))  # the example level, shared by the picked replicas
        # mean over the picked examples of each replica's d, then weighted by how often the replica was picked
        per_replica = np.stack([d[j][picked].mean(axis=1) for j in range(r)], axis=1)  # (block, r)
        draws[start:stop] = (per_replica * seed_counts[start:stop]).sum(axis=1) / r
    alpha = (1.0 - level) / 2
    low, high = np.quantile(draws, [alpha, 1.0 - alpha])
    return PairedInterval(estimate=float(d.mean()), low=float(low), high=float(high),
                          p_le_zero=float(np.mean(draws <= 0)), replicas=r, examples=n,
                          resamples=resamples, level=level)
