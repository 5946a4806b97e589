"""The contract search's harness: example budgets, the verdict on a case (known root causes
included), and the sandbox every case runs the real CLI in (tests/contract/test_contract.py)."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import tempfile
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, note, settings
from hypothesis.database import DirectoryBasedExampleDatabase

torch = pytest.importorskip("torch")
duckdb = pytest.importorskip("duckdb")


# -- budgets ---------------------------------------------------------------------------------------

PROFILE = os.environ.get("RUNNER_HYPOTHESIS_PROFILE", "ci")
SCALE = float(os.environ.get("RUNNER_CONTRACT_SCALE", "1"))
STRICT = os.environ.get("RUNNER_CONTRACT_STRICT") == "1"
BUDGETS = {  # examples per property; the CI total: at least 300, within the suite's time (the spec cases train)
    "ci": {"spec": 100, "data": 60, "store": 50, "cli": 100},
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
