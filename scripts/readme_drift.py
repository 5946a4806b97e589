"""How far the README's numbers move between configurations: the largest difference per kind of number.

Each input is a dump of scripts/readme_outputs.py (`--dump FILE.json`, one per configuration) or a
markdown page whose output blocks count as one more configuration (README.md: the blocks as committed).

    ATEN_CPU_CAPABILITY=avx2 python scripts/readme_outputs.py --dump avx2.json
    python scripts/readme_outputs.py --dump t2.json --threads 2
    python scripts/readme_drift.py README.md avx2.json t2.json ...
    python scripts/readme_drift.py README.md tests/drift/*.json --json   # the measurement MEASURED holds

For every block all inputs hold, the text between the numbers must be the same in all of them (else the
block is listed as differing in text, integers or layout, which no tolerance covers); then for every
compared number (each decimal and selected epoch) the spread (largest minus smallest value over the inputs) is taken, and per run and
kind of number (scripts/readme_outputs.py's RUN and RULES) the largest spread is printed, with where it
was seen; counted kinds in whole examples of the block's n. A sweep block (RANKED) is compared by its
frame, and the number of trials whose run differs between two inputs is counted ("redrawn"). Then
whether each pair of inputs passes the check with the tolerances in force. `--json` prints the figures
as MEASURED holds them.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import readme_outputs as ro  # noqa: E402


def load(path: Path) -> tuple[str, dict[str, str]]:
    """(label, {block name: text}) of a dump or a markdown page."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        data = json.loads(text)
        config = data.get("config", {})
        env = " ".join(f"{k}={v}" for k, v in sorted(config.get("env", {}).items()))
        made = ", ".join(str(x) for x in (f"threads {config.get('threads')}", config.get("cpu_capability"), env) if x)
        label = f"{path.stem} ({made})"
        return label, data["blocks"]
    return f"{path.name} (as committed)", dict(ro.markers(text))


def measure(configs: list[dict[str, str]]) -> tuple[dict[tuple[str, str], tuple[float, str]], list[str]]:
    """Over configurations ({block name: text} each): the largest difference per (run, kind), with
    where it was seen, and the blocks whose text differs (frame, for RANKED blocks)."""
    names = [n for n in configs[0] if all(n in blocks for blocks in configs)]
    largest: dict[tuple[str, str], tuple[float, str]] = {}
    differing = []

    def seen(key, size, where):
        if key not in largest or size > largest[key][0]:
            largest[key] = (size, where)

    for name in names:
        texts = [blocks[name] for blocks in configs]
        run = ro.RUN.get(name, "quickstart")
        if name in ro.RANKED:  # compared by frame: count the trials drawn differently
            if len({tuple(ro.ranked_frame(t)) for t in texts}) > 1:
                differing.append(name)
                continue
            runs = [set(ro.RUN_NAME.findall(t)) for t in texts]
            seen((run, "redrawn"), max((len(a - b) for a, b in itertools.permutations(runs, 2)), default=0),
                 f"{name}: trials whose run differs")
            continue
        if len({ro.skeleton(t, name) for t in texts}) > 1:
            differing.append(name)
            continue
        n = ro.EXAMPLES.get(name, ro.DEFAULT_EXAMPLES)
        for column in zip(*[ro.numbers(t, name) for t in texts]):
            kind = column[0].kind or "unclassified"
            if kind == "exact":
                continue
            values = [x.value for x in column]
            spread = max(values) - min(values)
            seen((run, kind), round(spread * n, 2) if kind in ro.COUNTED else round(spread, 6),
                 f"{name}: {column[0].context.strip()!r} " + " / ".join(x.text for x in column))
    return largest, differing


def as_measured(largest: dict[tuple[str, str], tuple[float, str]]) -> dict[str, dict[str, float]]:
    """The figures as scripts/readme_outputs.py's MEASURED holds them: {run: {kind: largest}}."""
    measured: dict[str, dict[str, float]] = {}
    for (run, kind), (size, _) in sorted(largest.items()):
        measured.setdefault(run, {})[kind] = size
    return measured


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="+", type=Path, help="dumps (.json) and markdown pages")
    parser.add_argument("--json", action="store_true", help="print the per-kind largest differences as JSON")
    args = parser.parse_args()
    configs = [load(p) for p in args.inputs]
    print("configurations:")
    for label, _ in configs:
        print(f"  {label}")
    largest, differing = measure([blocks for _, blocks in configs])

    print("\nlargest difference per run and kind of number (counted kinds in examples of the block's n):")
    for (run, kind), (size, where) in sorted(largest.items(), key=lambda x: (x[0][1], x[0][0])):
        unit = f"{size:g} examples" if kind in ro.COUNTED else f"{size:g}"
        print(f"  {kind:<14} {run:<11} {unit:<15} {where}")
    if differing:
        print(f"\nblocks whose text, integers or layout differ between inputs: {', '.join(differing)}")

    print("\npairs against the tolerances in force (scripts/readme_outputs.py MEASURED, MARGIN):")
    failing = 0
    for (a, blocks_a), (b, blocks_b) in itertools.combinations(configs, 2):
        stale = {n: ro.differences(blocks_a[n], blocks_b[n], n) for n in blocks_a if n in blocks_b}
        stale = {n: p for n, p in stale.items() if p}
        failing += bool(stale)
        print(f"  {a.split(' (')[0]} vs {b.split(' (')[0]}: " + ("pass" if not stale else "; ".join(
            f"{n}: {', '.join(p)}" for n, p in stale.items())))
    if args.json:
        print(json.dumps(as_measured(largest)))
    return 1 if failing or differing else 0


if __name__ == "__main__":
    sys.exit(main())
