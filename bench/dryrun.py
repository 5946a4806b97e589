"""What the validation dry run costs on top of building the models.

`runner validate` and `runner apply` build every member as training will and push one batch of each
split through it, run Trainer's evaluation on one batch and take one optimizer step (runner.train.dryrun).
Target: under 2 s on top of model loading for the quickstart.

In one process, for a spec (default specs/quickstart.toml): the baseline builds each member's model
and tokenizer (what loading costs anyway), then the dry run does everything; both are repeated
`--repeat` times and the medians are printed with the difference and the ratio. Run it alone: other
training on the same cores would slow both sides unevenly.

    python bench/dryrun.py [--spec specs/quickstart.toml] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGET_S = 2.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", type=Path, default=REPO / "specs" / "quickstart.toml")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    from runner.core.quiet import quiet_libraries
    from runner.run.plan import plan
    from runner.train.build import build_model
    from runner.train.dryrun import dry_run

    quiet_libraries()
    p = plan(args.spec)
    members = p.resolved.members
    build, dry = [], []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        for m in members:
            build_model(m, p.resolved, p.data, p.registry)
        build.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        dry_run(p.resolved, p.registry, p.data, members)
        dry.append(time.perf_counter() - t0)
    b, d = statistics.median(build), statistics.median(dry)
    print(f"spec {args.spec.name}: {len(members)} members, {len(p.data.splits['train'])} training examples")
    print(f"building the models (baseline): {b:.2f} s   dry run: {d:.2f} s   ratio {d / b:.2f}")
    print(f"dry run on top of building the models: {d - b:.2f} s (target < {TARGET_S:.0f} s: "
          f"{'ok' if d - b < TARGET_S else 'MISSED'})")


if __name__ == "__main__":
    main()
