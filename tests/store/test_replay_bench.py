"""bench/replay.py --small --json, the store benchmark's smoke test: it runs through runner's own store
API in seconds and prints exactly the figures the benchmark promises, each a positive number (no timing
is asserted: a test must not fail because of the machine it runs on)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "replay.py"
KEYS = {"insert_rows_per_s", "bare_insert_rows_per_s", "bytes_per_row", "compare_cold_s", "compare_warm_s",
        "sweep_view_cold_s", "sweep_view_warm_s", "dataframe_rows_per_s", "sweep_peak_rss_gb"}


def test_the_small_replay_prints_every_figure_as_json(tmp_path):
    proc = subprocess.run([sys.executable, str(BENCH), "--small", "--json", "--dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, proc.stdout  # stdout is the JSON object alone; the table goes to stderr
    figures = json.loads(lines[0])
    assert set(figures) == KEYS
    assert all(isinstance(v, (int, float)) and v > 0 for v in figures.values()), figures
    assert "sweep: prediction insert" in proc.stderr
    assert list(tmp_path.iterdir()) == []  # its temporary files are gone
