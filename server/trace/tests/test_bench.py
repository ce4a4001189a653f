"""bench/trace.py's last line always carries the required keys, whatever ran."""

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[3] / "bench" / "trace.py"
REQUIRED = ("forward_p50_ms", "forward_p99_ms", "backward_p50_ms", "capture_events_per_s")


def bench():
    spec = importlib.util.spec_from_file_location("bench_trace", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_headline_for_every_engine_and_network_choice():
    head = bench().headline
    figures = {"realistic_index_forward_p50_ms": 1.0, "realistic_index_forward_p99_ms": 9.0,
               "realistic_index_backward_p50_ms": 0.5, "realistic_capture_events_per_s": 20,
               "heavy_index_columns_p50_ms": 30.0}
    sqlite = head(figures, ["sqlite", "postgresql"])
    assert [sqlite[k] for k in REQUIRED] == [1.0, 9.0, 0.5, 20]
    pg = head({"pg_" + k: v for k, v in figures.items()}, ["postgresql"])
    assert pg["headline_engine"] == "postgresql" and pg["forward_p99_ms"] == 9.0
    heavy_only = head({"heavy_index_columns_p50_ms": 30.0}, ["sqlite"])
    assert all(k in heavy_only and heavy_only[k] is None for k in REQUIRED)
    assert heavy_only["heavy_forward_p50_ms"] == 30.0
