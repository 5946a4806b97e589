#!/usr/bin/env bash
# One-time set-up: a virtual environment in .venv with torch, the locked dependencies and runner.
# torch is installed first and pinned, so that pip never swaps an existing build: on a machine with
# a local CPU wheel of this version (as on our CI machines) pip takes it in seconds; elsewhere it is
# the normal PyPI build (CUDA on Linux x86_64). Set TORCH_SPEC to choose another, e.g. TORCH_SPEC="torch".
# Then every other package at the version in requirements.lock (the set the tests ran on: scripts/lock.sh
# makes it, without torch or CUDA packages), and runner itself, editable, with --no-deps. Run again after
# a change of the lock or pyproject.toml: it installs the locked versions over what is there.
# --browser also installs Debian's Chromium (apt-get), which tests/test_report.py uses to load the HTML
# report headless; .ci/run passes it. About 50 s on a fresh machine, nothing when it is there.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--browser" ] && ! command -v chromium >/dev/null 2>&1; then
  echo "setup: installing chromium (apt-get) for the browser test of runner report" >&2
  SUDO=""
  if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq -o Acquire::Retries=3
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq -o Acquire::Retries=3 chromium >/dev/null
fi
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
PIP=(.venv/bin/python -m pip --disable-pip-version-check -q)
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  echo "setup: installing $TORCH_SPEC" >&2
  "${PIP[@]}" install "$TORCH_SPEC"
fi
if ! .venv/bin/python -c "import runner, pytest" >/dev/null 2>&1 || [ pyproject.toml -nt .venv/.runner-installed ] \
    || [ requirements.lock -nt .venv/.runner-installed ]; then
  echo "setup: installing the locked dependencies (requirements.lock) and runner" >&2
  "${PIP[@]}" install -r requirements.lock
  "${PIP[@]}" install --no-deps -e .
  "${PIP[@]}" check >&2   # torch's requirements and the locked versions agree
  touch .venv/.runner-installed
fi
echo "setup: ready ($(.venv/bin/python -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'))" >&2
