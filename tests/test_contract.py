"""Property-based search for broken promises: the exit-code contract of docs/design.md, checked on inputs
nobody listed.

Hypothesis draws a small valid spec with a few fields broken (tests/contract_strategies.py), or
broken data files, or a broken store, or odd command-line arguments, and runs the real CLI in-process.
Each command must end in exactly one of:

- exit 0, and what it promised is there (for `apply`: one finished run whose members all stored
  predictions with exactly num_labels finite probabilities per row), with nothing written outside the
  store's folder, the spec's folder, the working directory and $HOME left as they were;
- exit 2, with one paragraph naming the file or argument and the key, and nothing written: the store
  byte-identical (or still absent), no `runs/` entry, no other file;
- exit 1, only for a fault no check could predict (a loss that turns NaN mid-training), with the run
  marked `failed`.

Never a traceback on screen, never an exception out of the CLI, never "internal error".

Budgets: `RUNNER_HYPOTHESIS_PROFILE=ci` (the default: derandomized, a fixed number of examples, a
few minutes on two cores) or `deep` (ten times as many, random seeds, for searching).
`RUNNER_CONTRACT_SCALE=3` multiplies either profile's example counts.

Every violation the search has found is kept as an `@example` (SPEC_FOUND ... CLI_FOUND) and, where
the corpus can hold it, as a case in tests/bad_inputs/. While a bug is open it has a KNOWN_BUGS entry:
its example is xfail, its case has `known_bug`, and the random search does not fail on that root cause
(so that it keeps finding new ones; `RUNNER_CONTRACT_STRICT=1` makes it fail). When the bug is fixed
the example passes and Hypothesis reports it: delete the KNOWN_BUGS entry and the case's `known_bug`.

`RUNNER_CONTRACT_REPORT=file.jsonl` is survey mode for long searches: every violation is appended to
the file (rule, case, command, output, traceback) and none fails the test.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import time
import tomllib
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import contract_strategies as cs
import pytest
from hypothesis import HealthCheck, example, given, note, settings
from hypothesis import strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase

torch = pytest.importorskip("torch")
duckdb = pytest.importorskip("duckdb")

# -- budgets ---------------------------------------------------------------------------------------

PROFILE = os.environ.get("RUNNER_HYPOTHESIS_PROFILE", "ci")
SCALE = float(os.environ.get("RUNNER_CONTRACT_SCALE", "1"))
STRICT = os.environ.get("RUNNER_CONTRACT_STRICT") == "1"
BUDGETS = {  # examples per property; the CI total is what the issue asks for (at least 300)
    "ci": {"spec": 130, "data": 70, "store": 60, "cli": 130},
    "deep": {"spec": 1900, "data": 700, "store": 360, "cli": 900},
}
_common = dict(deadline=None, print_blob=True,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
                                      HealthCheck.function_scoped_fixture])
settings.register_profile("runner-ci", derandomize=True, database=None, **_common)
settings.register_profile("runner-deep", derandomize=False, **_common, database=DirectoryBasedExampleDatabase(
    os.path.join(tempfile.gettempdir(), "runner-contract-hypothesis-db")))
if PROFILE not in BUDGETS:
    raise pytest.UsageError(f"RUNNER_HYPOTHESIS_PROFILE={PROFILE!r}: one of {sorted(BUDGETS)}")


def budget(kind: str) -> settings:
    return settings(settings.get_profile(f"runner-{PROFILE}"), max_examples=max(1, int(BUDGETS[PROFILE][kind] * SCALE)))


CALL_TIMEOUT_S = 60  # a tiny apply takes about a second; longer is a hang
STATS: dict[str, int] = {}

# -- the verdict -----------------------------------------------------------------------------------


class ContractViolation(AssertionError):
    pass


@dataclass
class Call:
    args: list[str]
    exit_code: int | None
    stdout: str
    stderr: str
    exception: BaseException | None
    tb: str = ""
    seconds: float = 0.0

    @property
    def shown(self) -> str:
        return self.stdout + self.stderr

    def describe(self) -> str:
        last = self.tb.strip().splitlines()[-1] if self.tb else repr(self.exception)
        exc = f"\nescaped: {last}" if self.escaped else ""
        return (f"$ runner {' '.join(_short(a) for a in self.args)}\nexit {self.exit_code} after {self.seconds:.1f} s"
                f"{exc}\nstdout: {_clip(self.stdout)}\nstderr: {_clip(self.stderr)}")

    @property
    def escaped(self) -> bool:
        return self.exception is not None and not isinstance(self.exception, SystemExit)


@dataclass
class Violation:
    rule: str
    detail: str
    call: Call | None
    case: Any
    kind: str  # spec | data | store | cli

    def text(self) -> str:
        return (f"[{self.rule}] {self.detail}\ncase ({self.kind}): {self.case!r}\n"
                + (self.call.describe() if self.call else ""))


def _short(a: str) -> str:
    return a if len(a) < 120 else a[:60] + f"...<{len(a)} chars>"


def _clip(s: str, n: int = 1500) -> str:
    s = s.strip()
    return s if len(s) <= n else s[: n // 2] + "\n...\n" + s[-n // 2:]


# -- known root causes -------------------------------------------------------------------------------
# Each: the bad_inputs case that pins it, and a precise test of a violation (rule + input + what
# happened). Keep the predicates narrow: a wide one would hide a new bug behind an old one.


@dataclass
class KnownBug:
    case: str
    summary: str
    matches: Callable[[Violation], bool]


CRASH = {"exception-escaped", "traceback-on-screen", "internal-error", "exit-1-predictable", "exit-1-state", "hang"}


def _text(v: Violation) -> str:
    return (v.call.tb + v.call.stderr + v.call.stdout) if v.call else ""


def _cmd(v: Violation) -> str:
    return v.call.args[0] if v.call and v.call.args else ""


def _touches(v: Violation, *words: str) -> bool:
    """Whether a spec case changes a key named one of `words` (anywhere in a path or a table value)."""
    ops = v.case.get("ops", []) if isinstance(v.case, dict) else []
    return any(w in map(str, op[1]) or (len(op) > 2 and f"'{w}'" in repr(op[2])) for op in ops for w in words)


def _big_value(v: Violation) -> bool:
    ops = v.case.get("ops", []) if isinstance(v.case, dict) else []
    return any(op[0] != "del" and _non_finite(op[2]) for op in ops)


def _case(v: Violation, key: str, value=None):
    got = v.case.get(key) if isinstance(v.case, dict) else None
    return got if value is None else got == value


# Open root causes. Empty while every violation found so far is fixed; an entry looks like
#     KnownBug("spec-warmup-inf", "inf passes the range check and fails inside Trainer",
#              lambda v: v.kind == "spec" and v.rule in CRASH and _cmd(v) == "apply" and _big_value(v)),
# with the case folder's name, and the matching *_FOUND example below becomes xfail by itself.
KNOWN_BUGS: list[KnownBug] = []


def _known(v: Violation) -> KnownBug | None:
    for bug in KNOWN_BUGS:
        try:
            if bug.matches(v):
                return bug
        except Exception:  # a predicate that does not fit this violation's shape
            continue
    return None


REPORT = os.environ.get("RUNNER_CONTRACT_REPORT")  # survey mode: append violations here, fail on none


def verdict(violations: list[Violation], case: Any) -> None:
    """Fail on the first violation that is not a known bug (all of them under RUNNER_CONTRACT_STRICT)."""
    explicit = isinstance(case, dict) and case.get("found")
    if REPORT and not explicit:
        with open(REPORT, "a", encoding="utf-8") as f:
            for v in violations:
                bug = _known(v)
                c = v.call
                f.write(json.dumps({
                    "rule": v.rule, "detail": v.detail, "kind": v.kind, "case": repr(v.case),
                    "known": bug.case if bug else None, "args": [_short(a) for a in c.args] if c else None,
                    "exit": c.exit_code if c else None, "stderr": _clip(c.stderr, 800) if c else None,
                    "stdout": _clip(c.stdout, 400) if c else None,
                    "escaped": (c.tb.strip().splitlines()[-1] if c.tb else None) if c else None,
                    "tb": c.tb[-3000:] if c else None,
                }, default=str) + "\n")
        return
    for v in violations:
        bug = None if (STRICT or explicit) else _known(v)
        if bug is not None:
            STATS[bug.case] = STATS.get(bug.case, 0) + 1
            note(f"known bug {bug.case}: {v.rule}")
            continue
        raise ContractViolation(v.text())


# -- the sandbox -----------------------------------------------------------------------------------


def snapshot(root: Path) -> dict[str, tuple]:
    """Every file and folder under root: (kind, size, mtime); nothing if root is absent."""
    out: dict[str, tuple] = {}
    if not root.exists():
        return out
    if root.is_file():
        return {".": ("file", root.stat().st_size, root.stat().st_mtime_ns, hash(root.read_bytes()))}
    for p in sorted(root.rglob("*")):
        if "__pycache__" in p.parts:
            continue
        rel = str(p.relative_to(root))
        try:
            if p.is_symlink():
                out[rel] = ("link", os.readlink(p))
            elif p.is_dir():
                out[rel] = ("dir",)
            else:
                st_ = p.stat()
                out[rel] = ("file", st_.st_size, st_.st_mtime_ns)
        except OSError:
            out[rel] = ("unreadable",)
    return out


def changes(before: dict, after: dict) -> list[str]:
    created = [f"created {k}" for k in after if k not in before]
    deleted = [f"deleted {k}" for k in before if k not in after]
    modified = [f"modified {k}" for k in after if k in before and after[k] != before[k] and after[k][0] != "dir"]
    return created + deleted + modified


def store_bytes(path: Path):
    try:
        if path.is_file():
            return path.read_bytes()
        if path.is_dir():
            return sorted(str(p.relative_to(path)) for p in path.rglob("*"))
    except OSError:  # a name too long to exist
        pass
    return None


class Hang(BaseException):
    pass


@dataclass
class World:
    root: Path
    home: Path
    golden_in: Path
    golden_out: Path
    cli: Any
    app: Any = None
    tiny_model: Path | None = None
    counter: int = 0
    export: Path | None = None  # `runner export` of the golden run, made the first time a case needs it


@dataclass
class Sandbox:
    root: Path
    inp: Path
    out: Path
    cwd: Path
    world: World
    store: Path = field(default=None)

    def snap(self) -> dict[str, dict]:
        return {"in": snapshot(self.inp), "out": snapshot(self.out), "cwd": snapshot(self.cwd),
                "home": snapshot(self.world.home), "root": {p.name: () for p in self.root.iterdir()}}


@contextmanager
def sandbox(world: World):
    world.counter += 1
    root = world.root / f"ex{world.counter}"
    sb = Sandbox(root, root / "in", root / "out", root / "cwd", world)
    for d in (sb.inp, sb.out, sb.cwd):
        d.mkdir(parents=True)
    sb.store = sb.out / "results.duckdb"
    old_cwd, old_env = os.getcwd(), dict(os.environ)
    os.chdir(sb.cwd)
    try:
        yield sb
    finally:
        os.chdir(old_cwd)
        os.environ.clear()
        os.environ.update(old_env)
        torch.use_deterministic_algorithms(False)  # full_determinism = true would leak to the next examples
        torch.set_num_threads(1)
        _fresh_process_state()
        _make_writable(root)
        shutil.rmtree(root, ignore_errors=True)


def _fresh_process_state() -> None:
    """What a new `runner` process would start without, so that no example inherits another's state:
    runner's per-process DuckDB instances (a command that failed half-way may leave a store attached
    to one), transformers' global DeepSpeed config (set by `trainer_args.deepspeed` even when
    TrainingArguments then fails) and accelerate's process-wide state singletons."""
    import sys

    # runner keeps its DuckDB instances in a module global
    for module_name, attr in (("runner.store.instances", "_instances"),):
        module = sys.modules.get(module_name)
        held = getattr(module, attr, None)
        if held is None:
            continue
        for con in list(held.values()) if isinstance(held, dict) else [held]:
            try:
                con.close()
            except Exception:
                pass
        if isinstance(held, dict):
            held.clear()
        else:
            setattr(module, attr, None)
    try:
        from transformers.integrations.deepspeed import unset_hf_deepspeed_config

        unset_hf_deepspeed_config()
    except Exception:
        pass
    try:
        from accelerate.state import AcceleratorState

        AcceleratorState._reset_state(reset_partial_state=True)
    except Exception:
        pass


def _make_writable(root: Path) -> None:
    if os.geteuid() == 0 and (root / "out" / "ro").is_dir():
        subprocess.run(["chattr", "-i", str(root / "out" / "ro")], capture_output=True)
    for p in [root, *root.rglob("*")] if root.exists() else []:
        try:
            if p.is_dir() and not p.is_symlink():
                p.chmod(0o755)
        except OSError:
            pass


def invoke(world: World, args: list[str]) -> Call:
    """The real CLI in-process; an exception that escapes it is recorded, never raised."""

    def on_alarm(signum, frame):
        raise Hang(f"no result after {CALL_TIMEOUT_S} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(CALL_TIMEOUT_S)
    t0 = time.monotonic()
    try:
        result = world.cli.invoke(world.app, args, catch_exceptions=True)
        exc = result.exception
        escaped = result.exc_info and exc is not None and not isinstance(exc, SystemExit)
        tb = "".join(traceback.format_exception(*result.exc_info)) if escaped else ""
        return Call(args, result.exit_code, result.stdout, _stderr(result), exc, tb, time.monotonic() - t0)
    except Hang as e:
        return Call(args, None, "", "", e, "Hang: " + str(e), time.monotonic() - t0)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _stderr(result) -> str:
    try:
        return result.stderr
    except ValueError:  # an old click that mixes the streams
        return ""


# -- the oracle ------------------------------------------------------------------------------------

PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")


def common_rules(call: Call, case, kind: str) -> list[Violation]:
    v = []
    if isinstance(call.exception, Hang):
        return [Violation("hang", f"the command did not finish within {CALL_TIMEOUT_S} s", call, case, kind)]
    if call.escaped:
        v.append(Violation("exception-escaped", f"{type(call.exception).__name__} escaped the CLI", call, case, kind))
    if call.exit_code not in (0, 1, 2):
        v.append(Violation("exit-code", f"exit code {call.exit_code}", call, case, kind))
    if "Traceback (most recent call last)" in call.shown:
        v.append(Violation("traceback-on-screen", "a Python traceback was printed", call, case, kind))
    if "internal error" in call.stderr.lower():
        v.append(Violation("internal-error", "an unexpected exception reached the user", call, case, kind))
    return v


def one_paragraph(text: str) -> bool:
    return bool(text.strip()) and not PARAGRAPH_BREAK.search(text.strip())


def exit2_rules(call: Call, case, kind: str, names_file: list[str], names_key: list[str] | None,
                before: dict, after: dict, store_before, store_after, data_dirs: tuple = ()) -> list[Violation]:
    """Exit 2: one paragraph naming the file and the key (a data file named counts as naming where the
    problem is: a data error names its file and a row or column), and nothing written."""
    v = []
    err = call.stderr
    if not one_paragraph(err):
        v.append(Violation("exit-2-message", "the message is not one paragraph", call, case, kind))
    if names_file and not any(n and n in err for n in names_file):
        v.append(Violation("exit-2-message", f"the message names none of {names_file}", call, case, kind))
    data_named = any(f"{sb_in}/" in err and f"{sb_in}/spec.toml" not in err for sb_in in data_dirs)
    if names_key and not data_named and not any(k and k in err for k in names_key):
        v.append(Violation("exit-2-message", f"the message names no key among {names_key}", call, case, kind))
    if store_before != store_after:
        v.append(Violation("exit-2-wrote", "the store changed (or was created)", call, case, kind))
    wrote = [f"{area}: {c}" for area in ("in", "out", "cwd") for c in changes(before[area], after[area])]
    wrote += [f"created {k} beside the sandbox folders" for k in after["root"] if k not in before["root"]]
    if wrote:
        v.append(Violation("exit-2-wrote", f"wrote before failing: {wrote[:6]}", call, case, kind))
    return v


def home_rule(call: Call, case, kind: str, before: dict, after: dict) -> list[Violation]:
    wrote = changes(before["home"], after["home"])
    return [Violation("wrote-home", f"wrote into $HOME: {wrote[:6]}", call, case, kind)] if wrote else []


def written_outside(before: dict, after: dict, allowed: set[str]) -> list[str]:
    return ([f"{area}: {c}" for area in ("in", "out", "cwd") if area not in allowed
             for c in changes(before[area], after[area])]
            + [f"created {k} beside the sandbox folders" for k in after["root"] if k not in before["root"]])


def store_rows(path: Path, sql: str, params=()) -> list[tuple]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(sql, list(params)).fetchall()
    finally:
        con.close()


def run_ids(path: Path) -> set[str]:
    try:
        if not path.is_file():
            return set()
        return {r[0] for r in store_rows(path, "SELECT run_id FROM runs")}
    except (duckdb.Error, OSError):
        return set()


def finished_run_rules(call: Call, case, kind: str, store: Path, runs_before: set[str], n_members: int | None,
                       num_labels: int | None, new_run: bool = True) -> list[Violation]:
    """After an `apply` that exited 0: one finished run with complete, well-formed predictions."""

    def bad(detail):
        return [Violation("exit-0-store", detail, call, case, kind)]

    if not store.is_file():
        return bad(f"exit 0 but there is no store file at {store}")
    try:
        runs = store_rows(store, "SELECT run_id, status, label_names, dataset_id FROM runs")
    except duckdb.Error as e:
        return bad(f"exit 0 but the store cannot be read: {e}")
    new = [r for r in runs if r[0] not in runs_before]
    if new_run and len(new) != 1:
        return bad(f"exit 0 but {len(new)} new runs in the store (expected 1)")
    if not new:
        return []
    run_id, status, label_names, dataset_id = new[0]
    if status != "finished":
        return bad(f"exit 0 but run {run_id} is {status!r}")
    k = len(json.loads(label_names)) if label_names else None
    if num_labels is not None and k != num_labels:
        return bad(f"the run has {k} label names; the data has {num_labels} classes")
    members = store_rows(store, "SELECT member, status FROM members WHERE run_id = ?", [run_id])
    if n_members is not None and len(members) != n_members:
        return bad(f"the spec has {n_members} members; the store holds {len(members)}: {members}")
    if any(s != "finished" for _, s in members):
        return bad(f"exit 0 with unfinished members: {members}")
    n_valid = store_rows(store, "SELECT count(*) FROM examples WHERE dataset_id = ? AND split = 'valid'",
                         [dataset_id])[0][0]
    for member, _ in members:
        rows = store_rows(store, """
            SELECT checkpoint, count(*), min(len(probs)), max(len(probs)),
                   bool_and(isfinite(list_sum(probs)) AND list_min(probs) >= 0), max(abs(list_sum(probs) - 1))
            FROM predictions WHERE run_id = ? AND member = ? AND split = 'valid' GROUP BY checkpoint""",
                          [run_id, member])
        if not rows:
            return bad(f"member {member} has no validation predictions")
        for checkpoint, n, lo, hi, finite, off in rows:
            if n != n_valid:
                return bad(f"{member}/{checkpoint}: {n} validation predictions for {n_valid} examples")
            expect = num_labels if num_labels is not None else k
            if lo != expect or hi != expect:
                return bad(f"{member}/{checkpoint}: {lo}..{hi} probabilities per row, expected {expect}")
            if not finite or not off <= 1e-3:  # (a NaN is not <= anything)
                return bad(f"{member}/{checkpoint}: probabilities not finite or not summing to 1 (off by {off})")
    # each stored probability belongs to its own example: accuracy recomputed from the rows and the
    # examples' labels is the accuracy metric stored with them (an evaluation in another order is not)
    off = store_rows(store, """
        SELECT p.member, p.checkpoint, p.split, avg((p.pred = e.label)::INT) AS acc, any_value(m.value) AS stored
        FROM predictions p JOIN examples e ON e.dataset_id = ? AND e.split = p.split AND e.idx = p.idx
        JOIN metrics m ON m.run_id = p.run_id AND m.kind = p.kind AND m.member = p.member
             AND m.checkpoint = p.checkpoint AND m.split = p.split AND m.name = 'accuracy'
        WHERE p.run_id = ? AND p.kind = 'member' AND e.label IS NOT NULL GROUP BY ALL
        HAVING abs(avg((p.pred = e.label)::INT) - any_value(m.value)) > 1e-6""", [dataset_id, run_id])
    if off:
        return bad(f"stored predictions disagree with their stored accuracy (misaligned rows?): {off[:3]}")
    return []


def failed_run_rules(call: Call, case, kind: str, store: Path, runs_before: set[str], predictable: bool):
    """After an `apply` that exited 1: allowed only for a loss gone non-finite that no check could see."""
    err = call.stderr.lower()
    unpredictable = re.search(r"\b(nan|inf|-inf|non-finite|not finite)\b", err)
    new = []
    if store.is_file():
        try:
            new = [r for r in store_rows(store, "SELECT run_id, status FROM runs") if r[0] not in runs_before]
        except duckdb.Error:
            pass
    if not unpredictable:
        return [Violation("exit-1-predictable", "exit 1 for a failure that is not a non-finite loss", call, case, kind)]
    if predictable:
        return [Violation("exit-1-predictable", "exit 1 (loss became non-finite) for a spec value that a check "
                          "could reject (a non-finite or overflowing number)", call, case, kind)]
    if len(new) != 1 or new[0][1] != "failed":
        return [Violation("exit-1-state", f"exit 1 but the new runs are {new} (expected one 'failed')", call, case,
                          kind)]
    failed = store_rows(store, "SELECT member FROM members WHERE run_id = ? AND status = 'failed'", [new[0][0]])
    if not failed:
        return [Violation("exit-1-state", "exit 1 but no member is marked failed", call, case, kind)]
    return []


def _non_finite(value) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, float):
        return not math.isfinite(value) or abs(value) > 1e18
    if isinstance(value, int):
        return abs(value) > 2**53
    if isinstance(value, list):
        return any(_non_finite(x) for x in value)
    if isinstance(value, dict):
        return any(_non_finite(x) for x in value.values())
    return False


GENERIC_KEYS = {"name", "seed", "options", "train", "loss", "model", "data", "members", "k", "test", "valid", "label",
                "text", "source", "labels", "metric", "weights", "checkpoint", "backbone", "ensemble", "swa",
                "selection", "", "a", "b", "x"}


def loc(path: list) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else ("." if out else "") + str(p)
    return out


def key_tokens(path: list) -> list[str]:
    """How a message may name the key at `path`: its dotted location, `[table].key`, `'key'`, or a
    distinctive key name. Empty for a top-level key named "" (there is nothing to show)."""
    where = loc(path)
    last = path[-1] if path else ""
    if not where or (isinstance(last, str) and (not last or not last.isprintable())):
        return []  # "" or a key with control characters: the terminal shows nothing to match
    tokens = [where]
    if len(path) >= 2 and isinstance(path[0], str) and isinstance(path[1], str):
        tokens.append(f"[{path[0]}].{loc(path[1:])}")
    if isinstance(last, str):
        tokens.append(f"'{last}'")
        if last not in GENERIC_KEYS and len(last) >= 3 and last.isprintable():
            tokens.append(last)
    return tokens


def related_tokens(path: list) -> list[str]:
    """Keys a correct message may name instead, when the change makes another key wrong: a new
    dataset source makes its options and paths wrong, a new backbone its options and model."""
    where = loc(path)
    if where == "data.source":
        return ["data.options", "data.train", "[data].train", "data.valid", "data.test"]
    if len(path) == 3 and path[0] == "members" and path[2] in ("backbone", "name", "model"):
        return [f"members[{path[1]}].options", f"members[{path[1]}].model", f"members[{path[1]}].name"]
    if where in ("loss.name", "loss") or (len(path) >= 3 and path[0] == "members" and path[2] == "loss"):
        return ["loss.", f"members[{path[1]}].loss" if path[0] == "members" else "loss:"]
    if where in ("train.epochs", "swa.k") or (len(path) >= 4 and path[2] == "train" and path[3] == "epochs"):
        return ["swa.k", "train.epochs"]
    if where == "members" or (path and path[0] == "members" and len(path) <= 2):
        return ["members"]
    return []


def spec_key_evidence(applied: list) -> list[str] | None:
    """Tokens one of which an exit-2 message must contain; None when some change cannot be named."""
    tokens: list[str] = []
    for op in applied:
        t = key_tokens(op[1])
        if not t:
            return None
        tokens += t + related_tokens(op[1])
    return tokens


# -- the session -----------------------------------------------------------------------------------

GOLDEN_DOC = cs.base_doc("synthetic2")
GOLDEN_DOC["name"] = "golden"
GOLDEN_DOC["data"]["test"] = 0.2
GOLDEN_DOC["swa"] = {"k": 1}


@pytest.fixture(scope="module")
def world():
    """A private $HOME, and one finished two-member run (the golden store) that cases copy."""
    from typer.testing import CliRunner

    torch.set_num_threads(1)
    root = Path(tempfile.mkdtemp(prefix="runner-contract-"))
    home = root / "home"
    home.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        import huggingface_hub.constants

        mp.setenv("HOME", str(home))
        mp.setenv("TOKENIZERS_PARALLELISM", "false")
        # no Hub access here: a Hub id fails at once instead of after half a minute of retries
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
        mp.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(root / "hub-cache"))
        from runner.cli import app

        w = World(root, home, root / "golden" / "in", root / "golden" / "out", CliRunner(), app=app)
        w.tiny_model = root / "tiny-hf"
        cs.save_tiny_hf_model(w.tiny_model, [r["text"] for r in cs.base_rows()])
        w.golden_in.mkdir(parents=True)
        w.golden_out.mkdir(parents=True)
        (w.golden_in / "spec.toml").write_text(cs.toml_dumps(GOLDEN_DOC), encoding="utf-8")
        call = invoke(w, ["apply", str(w.golden_in / "spec.toml"), "--store", str(w.golden_out / "results.duckdb")])
        assert call.exit_code == 0, call.describe()
        # warm what libraries cache under $HOME once (matplotlib's font list), so that what an example
        # leaves in $HOME is runner's doing
        call = invoke(w, ["plot", "--store", str(w.golden_out / "results.duckdb"), "--out", str(root / "warm.png")])
        assert call.exit_code == 0, call.describe()
        (root / "warm.png").unlink()
        yield w
        if STATS:
            print("\nknown bugs hit by the contract search:",
                  ", ".join(f"{k} x{n}" for k, n in sorted(STATS.items())))
    shutil.rmtree(root, ignore_errors=True)


def copy_golden(world: World, sb: Sandbox) -> None:
    shutil.copy2(world.golden_in / "spec.toml", sb.inp / "spec.toml")
    shutil.copytree(world.golden_out, sb.out, dirs_exist_ok=True)


def golden_run_id(world: World) -> str:
    return store_rows(world.golden_out / "results.duckdb", "SELECT run_id FROM runs")[0][0]


# -- the emitter itself ------------------------------------------------------------------------------

toml_values = st.recursive(
    st.none().map(lambda _: 0) | st.booleans() | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(alphabet=st.characters(exclude_categories=("Cs",))),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=8,
)


@budget("spec")
@given(doc=st.dictionaries(st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=6), toml_values,
                           max_size=4),
       case=cs.spec_cases())
def test_the_toml_writer_round_trips(doc, case):
    assert cs.toml_round_trips(doc), cs.toml_dumps(doc)
    spec = cs.base_doc(case["base"])
    cs.apply_ops(spec, case["ops"])
    assert cs.toml_round_trips(spec), cs.toml_dumps(spec)


def test_the_starting_points_are_valid_and_train(world):
    """Every base spec passes validate and trains: a case that fails, fails because of its change."""
    for base in cs.BASES:
        with sandbox(world) as sb:
            write_base_files(base, sb.inp)
            (sb.inp / "spec.toml").write_text(cs.toml_dumps(cs.base_doc(base)), encoding="utf-8")
            call = invoke(world, ["validate", str(sb.inp / "spec.toml")])
            assert call.exit_code == 0, call.describe()
            call = invoke(world, ["apply", str(sb.inp / "spec.toml"), "--store", str(sb.store)])
            assert call.exit_code == 0, call.describe()
            assert not finished_run_rules(call, base, "spec", sb.store, set(), len(cs.base_doc(base)["members"]),
                                          2 if base in ("csv", "jsonl") else 4)


def test_every_rule_of_the_oracle_can_fail(world, tmp_path):
    """A check that cannot fail is a defect: each rule, fed what it must flag, flags it (and passes
    what it must pass)."""
    ok = Call(["runs"], 0, "", "", None)
    assert not common_rules(ok, {}, "cli")
    rules = lambda call: {v.rule for v in common_rules(call, {}, "cli")}  # noqa: E731
    assert rules(Call(["x"], 1, "", "Traceback (most recent call last):\n  File", None)) == {"traceback-on-screen"}
    assert rules(Call(["x"], 1, "", "", ValueError("boom"))) == {"exception-escaped"}
    assert rules(Call(["x"], 3, "", "", None)) == {"exit-code"}
    assert rules(Call(["x"], 1, "", "internal error: KeyError 'a'", None)) == {"internal-error"}
    assert rules(Call(["x"], None, "", "", Hang("slow"))) == {"hang"}

    (tmp_path / "in").mkdir()
    sb = Sandbox(tmp_path, tmp_path / "in", tmp_path / "out", tmp_path / "cwd", world)
    for d in (sb.out, sb.cwd):
        d.mkdir()
    before = sb.snap()
    good = Call(["validate"], 2, "", f"error: {sb.inp}/spec.toml: train.epochs: must be >= 1", None)
    assert not exit2_rules(good, {}, "spec", [str(sb.inp)], ["train.epochs"], before, sb.snap(), None, None)
    two = Call(["validate"], 2, "", f"error: {sb.inp}/spec.toml:\n\n  train.epochs: bad", None)
    assert [v.detail for v in exit2_rules(two, {}, "spec", [str(sb.inp)], ["train.epochs"], before, sb.snap(),
                                          None, None)] == ["the message is not one paragraph"]
    vague = Call(["validate"], 2, "", "error: something is wrong", None)
    assert len(exit2_rules(vague, {}, "spec", [str(sb.inp)], ["train.epochs"], before, sb.snap(), None, None)) == 2
    (sb.out / "runs").mkdir()
    wrote = exit2_rules(good, {}, "spec", [str(sb.inp)], ["train.epochs"], before, sb.snap(), b"a", b"b")
    assert {v.rule for v in wrote} == {"exit-2-wrote"} and len(wrote) == 2
    (sb.cwd / "stray.png").write_bytes(b"x")
    assert written_outside(before, sb.snap(), allowed={"out"}) == ["cwd: created stray.png"]
    (world.home / ".duckdb").mkdir()
    try:
        assert home_rule(ok, {}, "store", before, sb.snap())[0].rule == "wrote-home"
    finally:
        (world.home / ".duckdb").rmdir()

    golden = world.golden_out / "results.duckdb"
    assert not finished_run_rules(ok, {}, "cli", golden, set(), 2, 4)
    assert finished_run_rules(ok, {}, "cli", golden, set(), 3, 4)[0].rule == "exit-0-store"
    assert finished_run_rules(ok, {}, "cli", golden, set(), 2, 5)[0].rule == "exit-0-store"
    assert finished_run_rules(ok, {}, "cli", golden, {golden_run_id(world)}, 2, 4)[0].rule == "exit-0-store"
    assert finished_run_rules(ok, {}, "cli", tmp_path / "absent.duckdb", set(), 2, 4)[0].rule == "exit-0-store"
    nan_loss = Call(["apply"], 1, "", "a: failed: member a: the training loss became nan in epoch 1", None)
    assert failed_run_rules(nan_loss, {}, "spec", golden, set(), predictable=True)[0].rule == "exit-1-predictable"
    crash = Call(["apply"], 1, "", "error: could not create runs/x", None)
    assert failed_run_rules(crash, {}, "spec", golden, set(), predictable=False)[0].rule == "exit-1-predictable"
    assert failed_run_rules(nan_loss, {}, "spec", golden, set(), predictable=False)[0].rule == "exit-1-state"
    assert not ensemble_rows_rules(ok, {}, golden)
    assert spec_key_evidence([["set", ["train", "epochs"], 0]])[:2] == ["train.epochs", "[train].epochs"]
    assert spec_key_evidence([["set", [""], 0]]) is None


def write_base_files(base: str, folder: Path) -> None:
    if base == "csv":
        (folder / "train.csv").write_bytes(cs.csv_bytes(cs.base_rows()))
    elif base == "jsonl":
        (folder / "train.jsonl").write_bytes(cs.jsonl_bytes(cs.base_rows()))


# -- 1. spec fields --------------------------------------------------------------------------------


def check_spec_case(world: World, case: dict) -> list[Violation]:
    with sandbox(world) as sb:
        doc = cs.base_doc(case["base"])
        write_base_files(case["base"], sb.inp)
        applied = cs.apply_ops(doc, case["ops"])
        place_local_models(world, sb, doc)
        text = cs.toml_dumps(doc)
        assert cs.same_value(tomllib.loads(text), doc), "the TOML writer lost something: a test bug"
        spec = sb.inp / "spec.toml"
        spec.write_text(text, encoding="utf-8")
        keys = spec_key_evidence(applied)
        predictable = any(_non_finite(op[2]) for op in applied if op[0] != "del")
        n_members = len(doc["members"]) if isinstance(doc.get("members"), list) else None
        return run_validate_then_apply(world, sb, case, "spec", spec, keys, predictable, n_members, None)


def place_local_models(world: World, sb: Sandbox, doc: dict) -> None:
    """A tiny saved model wherever an `hf` member's `model` points inside the sandbox (m1/bert-base,
    mdl/sub/.., ../), so that members whose names come from odd model paths really train."""
    members = doc.get("members")
    for m in members if isinstance(members, list) else []:
        if not (isinstance(m, dict) and m.get("backbone") == "hf" and isinstance(m.get("model"), str)):
            continue
        model = m["model"]
        if not model or "\x00" in model or len(model) > 200 or model.startswith(("/", "~")):
            continue
        target = Path(os.path.normpath(sb.inp / model))
        if not str(target).startswith(str(sb.root)) or (target / "config.json").exists():
            continue
        os.makedirs(sb.inp / model.rstrip("/").removesuffix(".."), exist_ok=True)  # mdl/sub/.. needs mdl/sub
        target.mkdir(parents=True, exist_ok=True)
        for f in world.tiny_model.iterdir():
            shutil.copy2(f, target / f.name)


def run_validate_then_apply(world, sb, case, kind, spec, keys, predictable, n_members, num_labels):
    v: list[Violation] = []
    # the synthetic loader is the data's "file"; a path given in the spec may be named as given
    given = [op[2] for op in case.get("ops", []) if len(op) > 2 and isinstance(op[2], str) and op[2].strip()]
    given = [g for g in given if len(g.strip()) > 2] + [f for g in given if len(g.strip()) <= 2
                                                        for f in (f"{g}: ", f"'{g}'")]  # "/" alone is no evidence
    names_file = [str(sb.inp), "spec.toml", "synthetic("] + given + [os.path.expanduser(g) for g in given]
    before = sb.snap()
    s0 = store_bytes(sb.store)
    val = invoke(world, ["validate", str(spec)])
    v += common_rules(val, case, kind)
    after = sb.snap()
    v += home_rule(val, case, kind, before, after)
    if val.exit_code == 1:
        v.append(Violation("exit-1-predictable", "validate exited 1: validation has no unpredictable faults", val,
                           case, kind))
    elif val.exit_code == 2:
        v += exit2_rules(val, case, kind, names_file, keys, before, after, s0, store_bytes(sb.store), (str(sb.inp),))
    elif val.exit_code == 0:
        wrote = written_outside(before, after, allowed=set())
        if wrote:
            v.append(Violation("validate-wrote", f"validate wrote files: {wrote[:6]}", val, case, kind))
    if v:
        return v

    before = sb.snap()
    s0 = store_bytes(sb.store)
    runs_before = run_ids(sb.store)
    app = invoke(world, ["apply", str(spec), "--store", str(sb.store)])
    v += common_rules(app, case, kind)
    after = sb.snap()
    v += home_rule(app, case, kind, before, after)
    if val.exit_code == 2 and app.exit_code != 2:
        v.append(Violation("validate-apply-disagree", f"validate rejected the spec but apply exited {app.exit_code}",
                           app, case, kind))
    if app.exit_code == 2:
        if val.exit_code == 0:
            v.append(Violation("validate-apply-disagree", "validate passed but apply rejected the spec (with a fresh "
                               "store): validation is not the dry run of apply", app, case, kind))
        v += exit2_rules(app, case, kind, names_file, keys, before, after, s0, store_bytes(sb.store), (str(sb.inp),))
    elif app.exit_code == 1:
        v += failed_run_rules(app, case, kind, sb.store, runs_before, predictable)
    elif app.exit_code == 0:
        v += finished_run_rules(app, case, kind, sb.store, runs_before, n_members, num_labels)
        wrote = written_outside(before, after, allowed={"out"})
        if wrote:
            v.append(Violation("wrote-outside-store", f"apply wrote outside the store's folder: {wrote[:6]}", app,
                               case, kind))
    return v




# -- 2. data files ---------------------------------------------------------------------------------


def check_data_case(world: World, case: dict) -> list[Violation]:
    with sandbox(world) as sb:
        doc, facts = cs.materialize_data(case, sb.inp)
        spec = sb.inp / "spec.toml"
        spec.write_text(cs.toml_dumps(doc), encoding="utf-8")
        keys = None  # a data problem names its file (checked) and a row or column (not checkable in general)
        return run_validate_then_apply(world, sb, case, "data", spec, keys, False, len(doc["members"]),
                                       facts["num_labels"])


# -- 3. stores -------------------------------------------------------------------------------------

BAD_STORES = {"garbage", "truncated_head", "truncated_half", "sqlite", "foreign", "text", "directory", "wal_garbage"}


def make_store(world: World, sb: Sandbox, kind: str) -> Path:
    golden = world.golden_out / "results.duckdb"
    store = sb.out / "results.duckdb"
    if kind == "none":
        pass
    elif kind == "empty":  # a store with the current schema and no runs: what a first apply starts from
        shutil.copy2(world.golden_out / "results.duckdb", store)
        con = duckdb.connect(str(store))
        tables = con.execute("SELECT table_name FROM duckdb_tables() WHERE table_name != '_migrations'").fetchall()
        for (table,) in tables:
            con.execute(f'DELETE FROM "{table}"')
        con.close()
    elif kind == "golden":
        shutil.copytree(world.golden_out, sb.out, dirs_exist_ok=True)
    elif kind == "garbage":
        store.write_bytes(bytes((i * 7919 + 13) % 251 for i in range(8192)))
    elif kind == "zero_bytes":
        store.write_bytes(b"")
    elif kind == "truncated_head":
        store.write_bytes(golden.read_bytes()[:4096])
    elif kind == "truncated_half":
        data = golden.read_bytes()
        store.write_bytes(data[: len(data) // 2])
    elif kind == "sqlite":
        con = sqlite3.connect(store)
        con.execute("CREATE TABLE runs (run_id TEXT)")
        con.commit()
        con.close()
    elif kind == "foreign":
        con = duckdb.connect(str(store))
        con.execute("CREATE TABLE invoices (id INTEGER, amount DOUBLE)")
        con.close()
    elif kind == "text":
        store.write_text("run,accuracy\nbaseline,0.81\n", encoding="utf-8")
    elif kind == "directory":
        store.mkdir()
    elif kind == "wal_garbage":
        shutil.copytree(world.golden_out, sb.out, dirs_exist_ok=True)
        Path(str(store) + ".wal").write_bytes(b"\x00garbage wal" * 50)
    elif kind == "read_only_folder":
        store = read_only_folder(sb) / "results.duckdb"
    elif kind == "memory":
        store = Path(":memory:")  # relative: a file of that name in the working directory
    elif kind == "missing_folder":
        store = sb.out / "no_such_dir" / "results.duckdb"
    elif kind == "long_name":
        store = sb.out / ("r" * 300 + ".duckdb")
    elif kind == "unicode_name":
        store = sb.out / "결과 ü\u202e.duckdb"
    else:
        raise ValueError(kind)
    return store


def read_only_folder(sb: Sandbox) -> Path:
    """out/ro, a folder nobody may write in: mode 555, or immutable (chattr +i) for root, who ignores modes."""
    ro = sb.out / "ro"
    ro.mkdir(exist_ok=True)
    ro.chmod(0o555)
    if os.geteuid() == 0 and subprocess.run(["chattr", "+i", str(ro)], capture_output=True).returncode != 0:
        ro.chmod(0o755)
        ro.rmdir()
        return Path("/sys")  # refuses new files even to root
    return ro


def check_store_case(world: World, case: dict) -> list[Violation]:
    kind, command = case["store"], case["command"]
    with sandbox(world) as sb:
        (sb.inp / "spec.toml").write_text(cs.toml_dumps(dict(GOLDEN_DOC, name="other")), encoding="utf-8")
        store = make_store(world, sb, kind)
        store_abs = sb.cwd / store if not store.is_absolute() else store
        args = {
            "apply": ["apply", str(sb.inp / "spec.toml"), "--store", str(store)],
            "runs": ["runs", "--store", str(store)],
            "sql": ["sql", "SELECT count(*) FROM runs", "--store", str(store)],
            "compare": ["compare", "--store", str(store)],
            "ensemble": ["ensemble", "--store", str(store), "--weights", "1,1"],
            "plot": ["plot", "--store", str(store)],
            "predict": ["predict", golden_run_id(world), str(make_input(sb, "good")[0]), "--store", str(store)],
            "export": ["export", golden_run_id(world), str(sb.out / "model"), "--store", str(store)],
            "calibrate": ["calibrate", "--store", str(store)],
            "refit": ["refit", "--store", str(store)],
        }[command]
        before = sb.snap()
        s0 = store_bytes(store_abs)
        runs_before = {golden_run_id(world)} if kind in ("golden", "wal_garbage") else set()
        call = invoke(world, args)
        after = sb.snap()
        v = common_rules(call, case, "store")
        s1 = store_bytes(store_abs)
        if kind in BAD_STORES | {"read_only_folder", "long_name"} and call.exit_code == 1:
            v.append(Violation("store-exit-code", f"a {kind} store is bad input a check can see: exit 2, not 1", call,
                               case, "store"))
        if kind in BAD_STORES and call.exit_code == 0 and kind != "wal_garbage":
            v.append(Violation("store-accepted", f"a {kind} store was used as a runner store", call, case, "store"))
        if call.exit_code == 1 and kind not in BAD_STORES | {"read_only_folder", "long_name"}:
            v.append(Violation("store-exit-code", f"exit 1 with a {kind} store: a missing or unusable --store is "
                               "bad input a check can see (exit 2)", call, case, "store"))
        if call.exit_code == 2:
            names = [str(store), store.name, "--store"]
            v += exit2_rules(call, case, "store", names, None, before, after, s0, s1)
        if call.exit_code == 0:
            if command == "apply":
                v += finished_run_rules(call, case, "store", store_abs, runs_before, 2, 4)
                allowed = {"out"} | ({"cwd"} if not store.is_absolute() else set())
            else:
                allowed = {"out"} if command in ("plot", "compare", "ensemble", *USE_COMMANDS) else set()
                if command in ("runs", "sql", "plot") and s0 != s1:
                    v.append(Violation("read-changed-store", f"`runner {command}` changed the store", call, case,
                                       "store"))
            wrote = written_outside(before, after, allowed)
            if wrote:
                v.append(Violation("wrote-outside-store", f"wrote: {wrote[:6]}", call, case, "store"))
        v += home_rule(call, case, "store", before, after)
        return v


# -- 4. command-line arguments ---------------------------------------------------------------------


USE_COMMANDS = ("predict", "export", "calibrate", "refit")


def golden_export(world: World) -> Path:
    """The golden run exported (once per session, outside every sandbox; cases only read it)."""
    if world.export is None:
        target = world.root / "golden-export"
        call = invoke(world, ["export", golden_run_id(world), str(target), "--store",
                              str(world.golden_out / "results.duckdb")])
        assert call.exit_code == 0, call.describe()
        world.export = target
    return world.export


def make_input(sb: Sandbox, kind: str) -> tuple[Path, int | None]:
    """An INPUT file for `runner predict` in the sandbox's input folder, and how many rows a correct
    runner predicts from it (None: it must refuse the file)."""
    from runner.data import synthetic

    texts, labels = synthetic.generate(12, seed=99)
    names = [synthetic.LABEL_NAMES[i] for i in labels]
    rows = [{"text": t, "label": n} for t, n in zip(texts, names)]
    folder = sb.inp / "inputs"
    folder.mkdir(exist_ok=True)
    path = folder / {"jsonl": "in.jsonl", "parquet": "in.parquet", "txt": "in.txt", "folder": "a_folder",
                     "unicode": "입력 ü.csv"}.get(kind, f"{kind}.csv")
    n: int | None = len(rows)
    if kind in ("good", "unicode"):
        path.write_bytes(cs.csv_bytes(rows if kind == "good" else
                                      [{"text": f"{r['text']} 정말 좋아요 🎬", "label": r["label"]} for r in rows]))
    elif kind == "unlabelled":
        path.write_bytes(cs.csv_bytes([{"text": t} for t in texts]))
    elif kind == "other_column":
        path.write_bytes(cs.csv_bytes([{"review": t, "label": x} for t, x in zip(texts, names)]))
    elif kind == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    elif kind == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"text": texts, "label": names}), path)
    elif kind == "crlf_bom":
        path.write_bytes(b"\xef\xbb\xbf" + cs.csv_bytes(rows).replace(b"\n", b"\r\n"))
    elif kind == "long_text":
        path.write_bytes(cs.csv_bytes([{"text": "a fine film " * 20000, "label": names[0]}] + rows[1:]))
    elif kind == "folder":
        path.mkdir()
        n = None
    elif kind == "missing":
        n = None
    else:
        n = None
        content = {
            "empty": b"", "header_only": b"text,label\n", "no_text_column": cs.csv_bytes([{"body": t} for t in texts]),
            "txt": "\n".join(texts).encode(), "binary": bytes(range(256)) * 4,
            "latin1": "text,label\nun film tr\xe8s b\xeate,weak_negative\n".encode("latin-1"),
            "unknown_label": cs.csv_bytes([{"text": texts[0], "label": "great"}]),
            "some_labels": cs.csv_bytes([rows[0], {"text": texts[1], "label": None}]),
            "empty_text": cs.csv_bytes([rows[0], {"text": "", "label": names[1]}]),
        }[kind]
        path.write_bytes(content)
    return path, n


MUST_REFUSE = {"empty", "header_only", "no_text_column", "folder", "missing", "unknown_label", "some_labels",
               "empty_text", "txt", "{store}", "{spec}"}


def use_args(world: World, sb: Sandbox, case: dict, ro: Path) -> tuple[list[str], list[str]]:
    """Arguments of `runner predict`, `export`, `calibrate` and `refit`, and the words an exit-2 message
    may use to name what is wrong."""
    run_id = golden_run_id(world)
    command = case["command"]
    store = str(sb.store)
    args, names = [command], []

    def val(x: str) -> str:
        return (x.replace("{run}", run_id).replace("{name}", "golden").replace("{run_prefix}", run_id[:8])
                .replace("{read_only}", str(ro)).replace("{store}", store).replace("{spec}", str(sb.inp / "spec.toml")))

    if command == "predict":
        source = {"{export}": lambda: str(golden_export(world)), "{folder}": lambda: str(sb.inp)}.get(
            case["source"], lambda: val(case["source"]))()
        if case["input"] in ("{store}", "{spec}"):
            inp, n = Path(val(case["input"])), None
        else:
            inp, n = make_input(sb, case["input"])
        case["_rows"] = n
        args += [source, str(inp)]
        names += [source, "RUN", "run", str(inp), inp.name, "INPUT"]
        if case.get("text_column") is None and case["input"] == "other_column":
            pass  # the file has `review`, not `text`: a correct runner names the missing column
        elif case.get("text_column") is not None:
            args += ["--text-column", case["text_column"]]
            names += ["--text-column"]
        out = case.get("output")
        if out is not None:
            out = str(inp) if out == "{input}" else val(out)
            args += ["--output", out]
            names += ["--output", out]
        if case.get("predict_format") is not None:
            args += ["--format", case["predict_format"]]
            names += ["--format"]
        if case.get("batch_size") is not None:
            args += ["--batch-size", case["batch_size"]]
            names += ["--batch-size"]
        args += case.get("flags", [])
        names += [f for f in case.get("flags", [])]
    else:
        if case.get("run") is not None:
            args.append(val(case["run"]))
            names += [val(case["run"]), "run"]
    if command == "export":
        d = case["dir"]
        if d == "empty_folder":
            (sb.out / "empty_folder").mkdir()
            target = str(sb.out / "empty_folder")
        elif d == "a_file":
            (sb.out / "a_file").write_text("mine")
            target = str(sb.out / "a_file")
        elif d == "not_empty":
            (sb.out / "not_empty").mkdir()
            (sb.out / "not_empty" / "keep.txt").write_text("mine")
            target = str(sb.out / "not_empty")
        elif d in ("new", "nested/new"):
            target = str(sb.out / d)
        else:
            target = val(d)
        args.append(target)
        names += [target, "DIR"]
    if case.get("strategy") is not None:
        args += ["--strategy", case["strategy"]]
        names += ["--strategy", case["strategy"]]
    if case.get("method") is not None:
        args += ["--method", case["method"]]
        names += ["--method"]
    if case.get("format") is not None:
        args += ["--format", case["format"]]
    if case.get("plugins") is not None:
        p = {"missing": sb.inp / "no_plugins", "file": sb.inp / "spec.toml", "empty": sb.inp / "plugins_empty"}[
            case["plugins"]]
        if case["plugins"] == "empty":
            p.mkdir(exist_ok=True)
        args += ["--plugins", str(p)]
        names += ["--plugins", str(p)]
    args += ["--store", store]
    names += ["--store", store]
    return args, names


def cli_args(world: World, sb: Sandbox, case: dict, ro: Path) -> tuple[list[str], list[str]]:
    """The argument list for a CLI case, and the words an exit-2 message may use to name what is wrong."""
    if case["command"] in USE_COMMANDS:
        return use_args(world, sb, case, ro)
    run_id = golden_run_id(world)
    subst = {"{run}": run_id, "{name}": "golden", "{run_prefix}": run_id[:8]}
    store = str(sb.store)
    command = case["command"]
    args = [command]
    names: list[str] = []

    def val(x: str) -> str:
        for k, s in subst.items():
            x = x.replace(k, s)
        x = x.replace("{read_only}", str(ro))
        x = x.replace("{store}", store).replace("{spec}", str(sb.inp / "spec.toml"))
        return x

    if command in ("validate", "apply") or (command in ("plugins", "schema") and case.get("spec")):
        spec = {
            "golden": str(sb.inp / "spec.toml"),
            "golden_relative": os.path.relpath(sb.inp / "spec.toml", sb.cwd),
            "missing": str(sb.inp / "missing.toml"),
            "directory": str(sb.inp),
            "empty_file": str(sb.inp / "empty.toml"),
            "not_utf8": str(sb.inp / "latin1.toml"),
            "binary": str(sb.inp / "binary.toml"),
            "unicode": str(sb.inp / "스펙 ü.toml"),
        }.get(case["spec"], str(sb.inp / case["spec"]))
        (sb.inp / "empty.toml").write_bytes(b"")
        latin1 = cs.toml_dumps(GOLDEN_DOC).replace('"golden"', '"gölden"').encode("latin-1")
        (sb.inp / "latin1.toml").write_bytes(latin1)
        (sb.inp / "binary.toml").write_bytes(bytes(range(256)))
        shutil.copy2(sb.inp / "spec.toml", sb.inp / "스펙 ü.toml")
        args.append(spec)
        names += [spec, Path(spec).name, "spec"]
        if command == "apply" or (command == "validate" and case.get("store")):
            args += ["--store", store]
        if command == "apply" and case.get("force"):
            args.append("--force")
        for key, flag in (("backend", "--backend"), ("address", "--address"), ("workers", "--workers")):
            if command == "apply" and case.get(key) is not None:
                args += [flag, case[key]]
                names += [flag, case[key]]
        for text in case.get("sets", []):
            args += ["--set", text]
            names += ["--set", text, text.partition("=")[0] or "="]
    if case.get("run") is not None:
        args.append(val(case["run"]))
        names += [val(case["run"]), "run"]
    if case.get("other") is not None:
        args.append(val(case["other"]))
        names += [val(case["other"]), "B", "run"]
    if case.get("dry_run"):
        args.append("--dry-run")
    if case.get("sweep_flag"):
        args.append("--sweep")
        names += ["sweep", "SWEEP"]
    if case.get("query") is not None:
        args.append(case["query"])
        names += ["sql", "query", "SQL"]
    if case.get("weights") is not None:
        args += ["--weights", case["weights"]]
        names += ["--weights", "weights"]
    if case.get("members") is not None:
        args += ["--members", case["members"]]
        names += ["--members", "member"]
    if case.get("checkpoint") is not None:
        args += ["--checkpoint", case["checkpoint"]]
        names += ["--checkpoint", "strategy", "checkpoint"]
    if case.get("name") is not None:
        args += ["--name", case["name"]]
        names += ["--name", "name"]
    if case.get("out") is not None:
        out = val(case["out"])
        if out in ("{user_file}", "{earlier}", "{empty_file}"):  # report/schema --out: an existing file
            suffix = ".html" if command == "report" else ".json"
            target = sb.out / f"existing{suffix}"
            target.write_text({"{user_file}": "<p>my notes</p>\n" if command == "report" else '{"my": 1}\n',
                               "{empty_file}": "", "{earlier}": EARLIER[command]}[out], encoding="utf-8")
            if out == "{user_file}":
                case["_protected"] = (str(target), target.read_bytes())
            out = str(target)
        args += ["--out", out]
        names += ["--out", out]
    if case.get("allow_write"):
        args.append("--allow-write")
    for key, option in (("timeout", "--timeout"), ("memory_limit", "--memory-limit"), ("strategies", "--strategies")):
        if case.get(key) is not None:
            args += [option, case[key]]
            names += [option, case[key], key.replace("_", " "), key.split("_")[0]]
    if case.get("format") is not None:
        args += ["--format", case["format"]]
    if case.get("plugins") is not None:
        p = {"missing": sb.inp / "no_plugins", "file": sb.inp / "spec.toml", "empty": sb.inp / "plugins_empty"}.get(
            case["plugins"], sb.inp / str(case["plugins"]))
        if case["plugins"] == "empty":
            p.mkdir(exist_ok=True)
        args += ["--plugins", str(p)]
        names += ["--plugins", str(p)]
    if command in ("runs", "compare", "ensemble", "sql", "plot", "sweep", "gc", "report"):
        args += ["--store", store]
    return args, names


# what `runner report` and `runner schema` wrote before (the mark --out looks for), for the {earlier} cases
EARLIER = {"report": '<!DOCTYPE html>\n<html><head><meta name="generator" content="runner report"></head></html>\n',
           "schema": '{"$comment": "runner schema: an earlier one"}\n'}


def check_cli_case(world: World, case: dict) -> list[Violation]:
    with sandbox(world) as sb:
        copy_golden(world, sb)
        ro = read_only_folder(sb)
        args, names = cli_args(world, sb, case, ro)
        before = sb.snap()
        s0 = store_bytes(sb.store)
        runs_before = run_ids(sb.store)
        call = invoke(world, args)
        after = sb.snap()
        s1 = store_bytes(sb.store)
        v = common_rules(call, case, "cli")
        command = case["command"]
        if case.get("_protected"):
            path, content = case["_protected"]
            if Path(path).read_bytes() != content:
                v.append(Violation("overwrote-user-file", f"`runner {command}` replaced {path}, a file it did not "
                                   "write", call, case, "cli"))
        if not (command == "sql" and case.get("allow_write")):  # --allow-write may INSTALL an extension
            v += home_rule(call, case, "cli", before, after)
        if call.exit_code == 1:
            v.append(Violation("exit-1-predictable", f"`runner {command}` exited 1; nothing here is an unpredictable "
                               "fault", call, case, "cli"))
        elif call.exit_code == 2:
            v += exit2_rules(call, case, "cli", names, None, before, after, s0, s1)
        elif call.exit_code == 0:
            allowed: set[str] = set()
            if command == "sql" and case.get("allow_write"):
                allowed = {"in", "out", "cwd", "home"}  # --allow-write lets SQL write files and install extensions
            elif command == "sql" or command in ("runs", "plot", "plugins", "validate", "sweep", "gc", "schema"):
                if s0 != s1:
                    v.append(Violation("read-changed-store", f"`runner {command}` changed the store", call, case,
                                       "cli"))
            if command == "plot":
                out = args[args.index("--out") + 1] if "--out" in args else None
                target = Path(out) if out else sb.out / f"{golden_run_id(world)}.png"
                target = target if target.is_absolute() else sb.cwd / target
                if not target.is_file() or target.stat().st_size == 0:
                    v.append(Violation("exit-0-output", f"plot exited 0 but wrote no file at {target}", call, case,
                                       "cli"))
                allowed = {"out", "cwd"} if out and not Path(out).is_absolute() else {"out"}
                if out and Path(out).is_absolute() and not str(target).startswith(str(sb.out)):
                    allowed = {"out", "in", "cwd"}
            if command in ("compare", "ensemble"):
                allowed = {"out"}
                v += ensemble_rows_rules(call, case, sb.store)
            if command in ("report", "schema"):
                v += output_rules(call, case, sb, args, golden_run_id(world))
                out = args[args.index("--out") + 1] if "--out" in args else None
                allowed = {"out", "cwd"} if out and not Path(out).is_absolute() else {"out"}
                if command == "report":
                    v += ensemble_rows_rules(call, case, sb.store)  # it builds compare's ensembles, as compare does
            if command in USE_COMMANDS:
                allowed = {"out", "cwd"} if command in ("predict", "export") else {"out"}
                v += use_rules(call, case, sb, args, s0, s1)
            if command == "apply":
                allowed = {"out"}
                if case.get("force"):
                    v += finished_run_rules(call, case, "cli", sb.store, runs_before, 2, 4)
                elif run_ids(sb.store) != runs_before and not case.get("sets"):  # --set may name another spec
                    v.append(Violation("exit-0-store", "apply of a finished spec started a new run without --force",
                                       call, case, "cli"))
            wrote = written_outside(before, after, allowed)
            if wrote:
                v.append(Violation("wrote-outside-store", f"wrote: {wrote[:6]}", call, case, "cli"))
        return v


def output_rules(call: Call, case, sb: Sandbox, args: list[str], run_id: str) -> list[Violation]:
    """Exit 0 of report/schema: the page or the schema where --out (or the default) says, and what it is."""
    import json as _json

    out = args[args.index("--out") + 1] if "--out" in args else None
    if case["command"] == "report":
        target = Path(out) if out else sb.out / f"{run_id}.html"
        target = target if target.is_absolute() else sb.cwd / target
        ok = target.is_file() and b'<meta name="generator" content="runner report">' in target.read_bytes()[:2048]
        detail = f"report exited 0 but {target} is not a report"
    elif out is None:
        try:
            ok = _json.loads(call.stdout).get("title") == "runner spec"
        except ValueError:
            ok = False
        detail = "schema exited 0 but printed no schema"
    else:
        target = Path(out) if Path(out).is_absolute() else sb.cwd / out
        ok = target.is_file() and _json.loads(target.read_text(encoding="utf-8")).get("title") == "runner spec"
        detail = f"schema exited 0 but {target} holds no schema"
    return [] if ok else [Violation("exit-0-output", detail, call, case, "cli")]


def _rows_written(path: Path, fmt: str | None) -> int | None:
    """Rows in a predictions file (csv, jsonl or parquet, told by --format or the content)."""
    data = path.read_bytes()
    if data.startswith(b"PAR1"):
        import pyarrow.parquet as pq

        return pq.read_metadata(path).num_rows
    lines = data.decode("utf-8").splitlines()
    return len(lines) - 1 if lines and lines[0].startswith("row,label") else len(lines)


def use_rules(call: Call, case, sb: Sandbox, args: list[str], s0, s1) -> list[Violation]:
    """Exit 0 of predict/export/calibrate/refit: what each must have written, and nothing it must not."""
    v: list[Violation] = []
    command = case["command"]

    def bad(rule: str, detail: str) -> None:
        v.append(Violation(rule, detail, call, case, "cli"))

    if command == "predict":
        flags = case.get("flags", [])
        column = case.get("text_column")
        refuse = case["input"] in MUST_REFUSE or (column not in (None, "text") and not (
            column == "review" and case["input"] == "other_column")) or (
            case["input"] == "other_column" and column != "review")
        if refuse:
            bad("accepted-bad-input", f"predict exited 0 on input {case['input']!r} with --text-column {column!r}")
        n = case.get("_rows")
        out = args[args.index("--output") + 1] if "--output" in args else None
        if out is None:
            lines = call.stdout.splitlines()
            got = len(lines) - 1 if lines and lines[0].startswith("row,label") else len(lines)
        else:
            target = Path(out) if Path(out).is_absolute() else sb.cwd / out
            got = _rows_written(target, case.get("predict_format")) if target.is_file() else None
        if n is not None and got != n:
            bad("exit-0-output", f"predict exited 0 but wrote {got} rows for {n} input rows")
        from_store = "--no-store" not in flags and case["source"] not in ("{export}", "{folder}", "{spec}",
                                                                         "{store}")
        if from_store:
            stored = store_rows(sb.store, "SELECT count(*) FROM inputs")[0][0]
            if stored < 1:
                bad("exit-0-store", "predict of a run exited 0 but stored no `inputs` row")
            v += ensemble_rows_rules(call, case, sb.store)
        elif s0 != s1:
            bad("read-changed-store", "predict with --no-store or from an export changed the store")
    elif command == "export":
        target = Path(args[2]) if Path(args[2]).is_absolute() else sb.cwd / args[2]
        manifest = target / "manifest.json"
        if not manifest.is_file():
            bad("exit-0-output", f"export exited 0 but {manifest} is missing")
        elif [p for p in target.rglob("*") if p.suffix in (".bin", ".pt", ".pth", ".pkl")]:
            bad("exit-0-output", "an export holds a pickle")
        if s0 != s1:
            bad("read-changed-store", "export changed the store")
    elif command == "calibrate":
        n, finite = store_rows(sb.store, "SELECT count(*), coalesce(bool_and(isfinite(temperature) AND temperature "
                                         "> 0), true) FROM calibrations")[0]
        if n < 1 or not finite:
            bad("exit-0-store", f"calibrate exited 0 with {n} calibrations stored (finite positive T: {finite})")
    elif command == "refit":
        rows = store_rows(sb.store, "SELECT status FROM runs WHERE parent_run_id IS NOT NULL")
        if not rows or any(r[0] != "finished" for r in rows):
            bad("exit-0-store", f"refit exited 0 but its runs are {rows}")
        v += ensemble_rows_rules(call, case, sb.store)
    return v


def ensemble_rows_rules(call: Call, case, store: Path) -> list[Violation]:
    """Every stored ensemble has finite probabilities summing to 1, as many per row as the run has labels."""
    rows = store_rows(store, """
        SELECT p.checkpoint, min(len(p.probs)), max(len(p.probs)),
               bool_and(isfinite(list_sum(p.probs)) AND list_min(p.probs) >= 0),
               max(abs(list_sum(p.probs) - 1)), json_array_length(any_value(r.label_names))
        FROM predictions p JOIN runs r USING (run_id) WHERE p.member = 'ensemble' GROUP BY p.checkpoint""")
    for checkpoint, lo, hi, finite, off, k in rows:
        if lo != k or hi != k or not finite or not off <= 1e-3:
            return [Violation("exit-0-store", f"ensemble {checkpoint!r}: {lo}..{hi} probabilities for {k} labels, "
                              f"finite={finite}, sum off by {off}", call, case, "cli")]
    return []


# -- the properties ----------------------------------------------------------------------------------
# Every violation the search found, kept as a permanent example: (minimal input, its case folder in
# tests/bad_inputs/, or "contract:<name>" where the corpus cannot hold it: the right exit is 0, or the
# case needs a finished run, which the corpus cannot make). Examples whose bug is still open are xfail.

inf, nan = math.inf, math.nan
SPEC_FOUND = [
    ({"base": "synthetic", "ops": [["set", ["train", "trainer_args", "batch_eval_metrics"], True]]},
     "spec-trainer-args-batch-eval-metrics"),
    ({"base": "synthetic", "ops": [["set", ["train", "trainer_args", "adam_beta2"], 1.0]]},
     "spec-trainer-args-adam-beta2-one"),
    ({"base": "synthetic", "ops": [["set", ["train", "trainer_args", "adam_epsilon"], nan]]},
     "spec-trainer-args-adam-epsilon-nan"),
    ({"base": "synthetic", "ops": [["set", ["train", "trainer_args", "adam_beta1"], 0]]},
     "spec-trainer-args-adam-beta1-integer"),
    ({"base": "synthetic", "ops": [["set", ["train", "trainer_args", "eval_steps"], "."]]},
     "spec-trainer-args-eval-steps-string"),
    ({"base": "synthetic", "ops": [["set", ["train", "trainer_args", "debug"], 0.5]]},
     "spec-trainer-args-debug-float"),
    ({"base": "synthetic", "ops": [["set", ["train", "trainer_args", "prediction_loss_only"], True]]},
     "spec-trainer-args-prediction-loss-only"),
    ({"base": "synthetic", "ops": [["set", ["train", "trainer_args", "eval_do_concat_batches"], False]]},
     "spec-trainer-args-eval-do-concat-batches"),
    ({"base": "synthetic", "ops": [["set", ["train", "trainer_args", "eval_accumulation_steps"], 0]]},
     "spec-trainer-args-eval-accumulation-zero"),
    ({"base": "synthetic", "ops": [["set", ["train", "trainer_args", "dataloader_persistent_workers"], True]]},
     "spec-trainer-args-persistent-workers"),
    ({"base": "synthetic", "ops": [["set", ["train", "trainer_args", "optim"], "galore_adamw"]]},
     "spec-trainer-args-optim-not-installed"),
    ({"base": "synthetic", "ops": [["set", ["train", "trainer_args", "lr_scheduler_kwargs"], {"foo": 1}]]},
     "spec-trainer-args-lr-scheduler-kwargs-unknown"),
    ({"base": "synthetic", "ops": [["set", ["train", "trainer_args", "accelerator_config"], ""]]},
     "spec-trainer-args-accelerator-config-empty"),
    ({"base": "synthetic", "ops": [["set", ["train", "trainer_args", "ddp_timeout"], 2**63 - 1]]},
     "spec-trainer-args-ddp-timeout-huge"),
    ({"base": "synthetic",
      "ops": [["set", ["train", "trainer_args", "deepspeed"], {"zero_optimization": {"stage": 2}}]]},
     "spec-trainer-args-deepspeed-not-installed"),
    ({"base": "synthetic", "ops": [["set", ["train", "trainer_args", "accelerator_config"], {"nope": 1}]]},
     "spec-trainer-args-accelerator-config-unknown-key"),
    ({"base": "synthetic", "ops": [["set", ["loss", "name"], "focal"], ["set", ["loss", "gamma"], inf]]},
     "spec-focal-gamma-inf"),
    ({"base": "synthetic", "ops": [["set", ["train", "weight_decay"], inf]]}, "spec-weight-decay-inf"),
    ({"base": "synthetic", "ops": [["set", ["train", "warmup"], inf]]}, "spec-warmup-inf"),
    ({"base": "synthetic", "ops": [["set", ["train", "batch_size"], 2**63 - 1]]}, "spec-batch-size-huge"),
    ({"base": "synthetic", "ops": [["set", ["members", 0, "seed"], 2**32]]}, "spec-member-seed-too-large"),
    ({"base": "synthetic", "ops": [["set", ["members", 0, "name"], "a" * 300]]}, "spec-member-name-too-long"),
    ({"base": "synthetic", "ops": [["set", ["selection", "metric"], ""]]}, "spec-selection-metric-empty"),
    ({"base": "synthetic", "ops": [["set", ["train", "trainer_args", "dataloader_drop_last"], True]]},
     "spec-trainer-args-drop-last-small-split"),
    ({"base": "synthetic", "ops": [["set", ["train", "trainer_args", "debug"], "underflow_overflow"]]},
     "spec-trainer-args-debug-underflow-overflow"),
    ({"base": "synthetic", "ops": [["set", ["train", "trainer_args", "use_liger_kernel"], True]]},
     "spec-trainer-args-liger-kernel-not-installed"),
    ({"base": "synthetic", "ops": [["set", ["members", 0, "options", "intermediate_size"], 2**63 - 1]]},
     "spec-scratch-intermediate-size-huge"),
    ({"base": "csv", "ops": [["set", ["data", "options", "delimiter"], "\x00"]]}, "data-csv-delimiter-not-ascii"),
    ({"base": "csv", "ops": [["append", ["members"], {"backbone": "hf", "options": {}, "model": m}]
                             for m in ("m1/bert-base", "m2/bert-base", "m3/bert-base-1")]},
     "contract:member-names-clash"),
    # Trainer 5 evaluated through a shuffled sampler under group_by_length, so every stored probability
    # went to another example (found by hand; tests/test_apply.py::test_group_by_length_stores_every_
    # probability_against_its_own_example proves it, since a 1-epoch model here predicts one class for
    # all, which the stored-accuracy rule of finished_run_rules cannot tell apart from any order)
    ({"base": "synthetic", "ops": [["set", ["train", "trainer_args", "train_sampling_strategy"], "group_by_length"]]},
     "contract:group-by-length-evaluation-order"),
    ({"base": "synthetic", "ops": [["set", ["train", "group_by_length"], True]]},
     "contract:group-by-length-evaluation-order"),
]
DATA_FOUND = [
    ({"fmt": "csv", "labels": "words", "declared": "none", "rows": 4, "text": "plain", "corrupt": [], "valid": 0.25,
      "test": None}, "data-valid-fraction-rounds-to-empty"),
    ({"fmt": "jsonl", "labels": "lists", "declared": "none", "rows": 40, "text": "plain", "corrupt": [],
      "valid": 0.25, "test": None}, "data-label-list-jsonl"),
    ({"fmt": "csv", "labels": "years", "declared": "none", "rows": 40, "text": "plain", "corrupt": [], "valid": 0.25,
      "test": None}, "contract:integer-labels-are-ids"),
    ({"fmt": "jsonl", "labels": "words", "declared": "none", "rows": 40, "text": "plain", "corrupt": ["cp949"],
      "valid": 0.25, "test": None}, "data-jsonl-not-utf8"),
    ({"fmt": "csv", "labels": "words", "declared": "none", "rows": 40, "text": "plain", "corrupt": ["latin1", "empty"],
      "valid": 0.25, "test": None}, "data-csv-header-not-utf8"),
    ({"fmt": "csv", "labels": "words", "declared": "none", "rows": 40, "text": "plain", "corrupt": ["dup_header"],
      "valid": 0.25, "test": None}, "data-duplicate-header"),
]
STORE_FOUND = [
    ({"store": "garbage", "command": "runs"}, "store-garbage-bytes"),
    ({"store": "none", "command": "compare"}, "store-garbage-bytes"),
    ({"store": "truncated_half", "command": "runs"}, "store-runs-truncated"),
    ({"store": "sqlite", "command": "sql"}, "store-sqlite"),
    ({"store": "memory", "command": "apply"}, "store-memory"),
    ({"store": "long_name", "command": "runs"}, "contract:path-too-long"),
    ({"store": "none", "command": "ensemble"}, "cli-ensemble-no-store"),
]
CLI_FOUND = [
    ({"command": "plugins", "format": None, "plugins": cs.LONG}, "cli-plugins-path-too-long"),
    ({"command": "plot", "run": None, "out": ""}, "contract:plot-out-empty"),
    ({"command": "plot", "run": None, "out": "{read_only}/plot.png"}, "contract:plot-out-read-only"),
    ({"command": "plot", "run": None, "out": "{store}"}, "cli-plot-out-is-the-store"),
    ({"command": "sql", "query": "DETACH DATABASE memory", "allow_write": True, "format": None},
     "cli-sql-detach-memory"),
    ({"command": "ensemble", "run": None, "weights": "nan,1", "members": None, "checkpoint": None, "name": None,
      "format": None}, "contract:ensemble-weights-not-finite"),
    ({"command": "plot", "run": None, "out": cs.LONG + ".png"}, "cli-plot-out-name-too-long"),
]


def found(examples):
    """The examples above as `@example`s, judged strictly (KNOWN_BUGS does not excuse them); those whose
    bug is still open (in KNOWN_BUGS) are xfail, so that fixing one is reported."""
    open_bugs = {bug.case for bug in KNOWN_BUGS}

    def deco(fn):
        for case, bug in reversed(examples):
            ex = example(case=dict(case, found=bug))
            if bug in open_bugs:
                where = f"tests/bad_inputs/{bug}" if not bug.startswith("contract:") else f"KNOWN_BUGS {bug!r}"
                ex = ex.xfail(reason=f"known bug, see {where}", raises=ContractViolation)
            fn = ex(fn)
        return fn

    return deco



@budget("spec")
@given(case=cs.spec_cases())
@found(SPEC_FOUND)
def test_spec_mutations_keep_the_contract(world, case):
    verdict(check_spec_case(world, case), case)


@budget("data")
@given(case=cs.data_cases())
@found(DATA_FOUND)
def test_data_mutations_keep_the_contract(world, case):
    verdict(check_data_case(world, case), case)


@budget("store")
@given(case=cs.store_cases())
@found(STORE_FOUND)
def test_store_mutations_keep_the_contract(world, case):
    verdict(check_store_case(world, case), case)


@budget("cli")
@given(case=cs.cli_cases())
@found(CLI_FOUND)
def test_cli_arguments_keep_the_contract(world, case):
    verdict(check_cli_case(world, case), case)
