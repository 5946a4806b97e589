#!/usr/bin/env bash
# Re-resolve requirements.lock, the exact versions the tests run on (scripts/setup.sh installs them):
#
#   bash scripts/lock.sh                          # every package to the newest pyproject.toml allows
#   bash scripts/lock.sh --upgrade-package duckdb # only that one (uv pip compile's own flags, passed on)
#
# uv pip compile resolves pyproject.toml's dependencies with the `dev` extra (which holds `ray`, `postgres`, `docs`) for
# CPython 3.11 on Linux x86_64, with torch pinned as scripts/setup.sh pins it (TORCH_SPEC's default).
# torch itself is left out of the lock, and so are the CUDA-only packages PyPI's torch wheel pulls on
# Linux (nvidia-*, cuda-*, triton): scripts/setup.sh installs torch first (a local CPU build on our CI
# machines, PyPI's CUDA build elsewhere), and the lock must never pull a CUDA build onto a CPU machine.
# torch's other requirements (sympy, networkx, jinja2, fsspec, filelock, setuptools...) are the same for
# both builds and stay in the lock. uv runs from a throwaway venv, so the project's .venv is not changed.
# Run the tests after it (tests/test_lock.py checks that pyproject.toml and the lock agree).
set -euo pipefail
cd "$(dirname "$0")/.."
UV_VERSION=0.13.10
TORCH=$(sed -n 's/^TORCH_SPEC=\${TORCH_SPEC:-\(.*\)}$/\1/p' scripts/setup.sh)
[ -n "$TORCH" ] || { echo "lock: no TORCH_SPEC default found in scripts/setup.sh" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"${PYTHON:-python3}" -m venv "$tmp/uv"
"$tmp/uv/bin/python" -m pip install -q --disable-pip-version-check "uv==$UV_VERSION"
echo "$TORCH" >"$tmp/torch.txt"
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(--upgrade)

compile() {
  "$tmp/uv/bin/uv" pip compile pyproject.toml --extra dev --python-version 3.11 \
    --python-platform x86_64-manylinux_2_28 --constraint "$tmp/torch.txt" --no-emit-package torch \
    --custom-compile-command "bash scripts/lock.sh" "${args[@]}" "$@"
}

# First the whole resolution, to name the CUDA-only packages; then the lock without them.
compile --quiet --no-header --no-annotate --output-file "$tmp/all.txt"
cuda=()
while read -r name; do cuda+=(--no-emit-package "$name"); done < <(
  sed -n 's/^\(nvidia-[^=]*\|cuda-[^=]*\|triton\)==.*/\1/p' "$tmp/all.txt")
if [ -f requirements.lock ]; then cp requirements.lock "$tmp/requirements.lock"; fi
compile --quiet "${cuda[@]}" --output-file "$tmp/requirements.lock"
mv "$tmp/requirements.lock" requirements.lock
echo "lock: requirements.lock holds $(grep -c '^[a-z0-9]' requirements.lock) packages (torch, pinned ${TORCH#torch} by scripts/setup.sh, and $(( ${#cuda[@]} / 2 )) CUDA-only packages left out)" >&2
