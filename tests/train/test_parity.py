"""runner's numbers are a plain `Trainer` script's numbers for the same settings (bench/parity.py,
at a size the suite can afford): the real CLI, and the notebook's way written independently (a
`Trainer` subclass with its own focal loss, its own `BertConfig`, runner's split and tokenizer files,
the same seed), give the same selected epoch and the same prediction for every test example."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_runner_apply_and_a_plain_trainer_script_predict_the_same():
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "parity.py"), "--languages", "ko", "--seeds", "2",
                           "--size", "300", "--epochs", "2"], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    r = json.loads(proc.stdout.strip().splitlines()[-1])["results"][0]
    assert (r["same_data"], r["same_tokenizer_files"], r["same_config"]) == (True, True, True)
    assert r["seeds"] == 2 and r["same_selected_epoch"] == 2
    assert r["identical_predictions"] == 2, r["per_seed"]
    assert r["difference"] == 0.0 and r["t95"] == [0.0, 0.0]
