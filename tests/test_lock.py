"""The tested dependency set is pinned: requirements.lock (scripts/lock.sh, uv pip compile) holds a
version of every package pyproject.toml requires, with the `dev` extra (which holds the `ray`, `postgres` and `docs`
extras), inside the range pyproject gives; torch and the CUDA-only packages are not in it (scripts/setup.sh installs torch
first, pinned, and a lock must never pull a CUDA build onto a CPU machine)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
LOCKED_EXTRAS = ("dev",)  # what scripts/lock.sh resolves: `--extra dev`
# the platform scripts/lock.sh resolves for (--python-version 3.11 --python-platform x86_64-manylinux_2_28)
MARKER_ENV = {"python_version": "3.11", "python_full_version": "3.11.0", "sys_platform": "linux",
              "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
              "implementation_name": "cpython", "platform_python_implementation": "CPython"}
NOT_LOCKED = re.compile(r"torch|triton|nvidia-.*|cuda-.*")


def pins(lock_text: str) -> dict[str, Version]:
    """{canonical name: version} of a requirements file of `name==version` lines (uv's comments aside)."""
    found = {}
    for line in lock_text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        specs = list(req.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", f"requirements.lock: not an exact pin: {line}"
        found[canonicalize_name(req.name)] = Version(specs[0].version)
    return found


def requirements(pyproject: dict, extras=LOCKED_EXTRAS) -> list[Requirement]:
    """The project's requirements with `extras`, a requirement of the project itself (runner[ray])
    expanded into its extras, markers evaluated for the locked platform."""
    project = pyproject["project"]
    me = canonicalize_name(project["name"])
    todo = [(r, "") for r in project["dependencies"]]
    todo += [(r, extra) for extra in extras for r in project["optional-dependencies"][extra]]
    seen_extras, found = set(extras), []
    while todo:
        text, extra = todo.pop(0)
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate({**MARKER_ENV, "extra": extra}):
            continue
        if canonicalize_name(req.name) == me:
            for e in sorted(req.extras - seen_extras):
                seen_extras.add(e)
                todo += [(r, e) for r in project["optional-dependencies"][e]]
            continue
        found.append(req)
    return found


def disagreements(pyproject: dict, lock_text: str) -> list[str]:
    """Why pyproject.toml and a lock disagree; [] when every requirement but torch is locked at a
    version it allows and the lock holds no torch or CUDA package."""
    locked = pins(lock_text)
    problems = [f"{name}=={v} is locked, but scripts/setup.sh installs it (torch) or it is CUDA-only"
                for name, v in locked.items() if NOT_LOCKED.fullmatch(name)]
    for req in requirements(pyproject):
        name = canonicalize_name(req.name)
        if name == "torch":
            continue
        if name not in locked:
            problems.append(f"{req} is not in requirements.lock")
        elif not req.specifier.contains(locked[name], prereleases=True):
            problems.append(f"{req}: requirements.lock has {name}=={locked[name]}")
    return problems


def project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def lock() -> str:
    return (REPO / "requirements.lock").read_text(encoding="utf-8")


def test_pyproject_and_the_lock_agree():
    assert disagreements(project(), lock()) == [], "run `bash scripts/lock.sh` (README, Development)"


def test_a_requirement_the_lock_does_not_meet_is_named():
    """The check itself: a raised lower bound, a new dependency, a package dropped from the lock and a
    locked torch are each found."""
    pyproject = project()
    deps = pyproject["project"]["dependencies"]
    deps[:] = [("duckdb>=9" if Requirement(d).name == "duckdb" else d) for d in deps] + ["left-pad>=1"]
    text = re.sub(r"(?m)^optuna==.*$", "torch==2.13.0", lock())
    problems = disagreements(pyproject, text)
    assert any(p.startswith("duckdb>=9: requirements.lock has duckdb==") for p in problems), problems
    assert "left-pad>=1 is not in requirements.lock" in problems
    assert any(p.startswith("optuna") and "not in requirements.lock" in p for p in problems), problems
    assert any(p.startswith("torch==2.13.0 is locked") for p in problems), problems
    dev = pyproject["project"]["optional-dependencies"]["dev"]
    # ray, psycopg, mkdocs, pandas come through the project's own extras, checked too
    assert {"ray", "postgres", "docs", "notebook"} <= {e for d in dev for e in Requirement(d).extras}
    assert {"ray", "psycopg", "mkdocs", "mkdocs-material", "pandas"} <= {r.name for r in requirements(pyproject)}


def test_the_lock_names_its_command_and_setup_installs_it():
    assert "bash scripts/lock.sh" in lock().splitlines()[1]
    setup = (REPO / "scripts" / "setup.sh").read_text(encoding="utf-8")
    assert "install -r requirements.lock" in setup and "install --no-deps -e ." in setup


def test_setup_s_torch_pin_is_inside_pyproject_s_range():
    setup = (REPO / "scripts" / "setup.sh").read_text(encoding="utf-8")
    pinned = Requirement(re.search(r"^TORCH_SPEC=\$\{TORCH_SPEC:-(.+)\}$", setup, re.M).group(1))
    (spec,) = pinned.specifier
    torch = next(r for r in requirements(project()) if r.name == "torch")
    assert spec.operator == "==" and torch.specifier.contains(spec.version)


def test_a_cpu_torch_brought_no_cuda_package():
    """scripts/setup.sh on a machine without a GPU (a CPU build of torch): neither torch nor the lock
    installed a CUDA-only package into this environment."""
    from importlib.metadata import distributions

    import torch

    if torch.version.cuda is not None:
        pytest.skip("a CUDA build of torch brings its own nvidia packages")
    installed = sorted(canonicalize_name(d.metadata["Name"]) for d in distributions())
    assert [n for n in installed if NOT_LOCKED.fullmatch(n) and n != "torch"] == []
