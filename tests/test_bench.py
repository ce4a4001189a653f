"""Every benchmark still runs: its `--quick` smoke run ends with one JSON object that holds
the figures its issue asks for, each a number (or, where the run could not measure it, the
key with null). The figures themselves are never asserted here: speed is for the
benchmarks to print, on a machine shared with other work (README, Developing)."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
REQUIRED = {
    "gateway.py": ("records_per_s", "ratio_to_raw_publish"),
    "ingest.py": ("sqlite_records_per_s", "postgres_records_per_s", "two_worker_speedup"),
    "drift.py": ("readings_per_s", "ratio_to_bandwidth_baseline", "speedup_vs_numpy",
                 "speedup_vs_river", "peak_memory_ratio"),
    "drift_arl.py": ("arl0_known", "delay_1sigma_zero_state", "fleet_10000_known_sigma"),
    "trace.py": ("forward_p50_ms", "forward_p99_ms", "backward_p50_ms",
                 "capture_events_per_s"),
}


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(REQUIRED))
def test_quick_run_ends_with_the_figures_its_issue_asks_for(script):
    run = subprocess.run([sys.executable, str(ROOT / "bench" / script), "--quick"],
                         cwd=ROOT, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert run.returncode == 0, run.stderr[-3000:]
    last = run.stdout.strip().splitlines()[-1]
    figures = json.loads(last)
    missing = [k for k in REQUIRED[script] if k not in figures]
    assert not missing, f"{script}: last line lacks {missing}: {last[:300]}"
    for key in REQUIRED[script]:
        value = figures[key]
        if isinstance(value, dict):  # a group of figures (drift_arl.py)
            assert value and all(isinstance(v, int | float) for v in value.values()), key
        else:
            assert isinstance(value, int | float) and math.isfinite(value) and value > 0, \
                (key, value)
