"""What fitting a calibration costs (runner.posthoc.calibration.fit), with no model and no store.

`runner calibrate` should fit in seconds at most. The fit is Newton's method on 1 (+K)
parameters, each iteration a few passes over the (n, K) validation probabilities, so its cost grows
linearly in n. This prints the median time of each method on synthetic over-confident probabilities
(sharpened by T = 2, shifted by a known bias) for several validation sizes, with the temperature found.

    python bench/calibrate.py [--labels 4] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from runner.posthoc.calibration import METHODS, fit


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labels", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    k = args.labels
    print(f"{'rows':>9}  {'method':<17} {'seconds':>8}  {'T':>6}  iterations")
    for n in (1_000, 10_000, 100_000, 1_000_000):
        logits = rng.normal(size=(n, k)) * 1.5
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        labels = (p.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
        stored = 2.0 * (logits - np.linspace(-0.5, 0.5, k))
        stored = np.exp(stored - stored.max(axis=1, keepdims=True))
        stored = (stored / stored.sum(axis=1, keepdims=True)).astype(np.float32)  # as the store keeps them
        for method in METHODS:
            times = []
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                f = fit(stored, labels, method)
                times.append(time.perf_counter() - t0)
            print(f"{n:>9,}  {method:<17} {statistics.median(times):>8.3f}  {f.temperature:>6.3f}  {f.iterations}")


if __name__ == "__main__":
    main()
