"""Registry + readings -> fleet report, fed to the kernels in time slices.

Invariant: the readings go through the kernels in `batches` consecutive time slices with
the state carried between them (the streaming path), which by the kernels' invariant gives
the same report as one call; `on_batch(done, total)` lets a caller draw progress.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from metrotrace.server.metrology import fleet, io, kernels, pulses, tables, zero
from metrotrace.server.metrology import state as S
from metrotrace.server.metrology.mpe import PER_LITRE


def _slice(grouped: io.Grouped, lo: float, hi: float):
    """Rows with lo <= t < hi, still grouped by instrument (CSR)."""
    t = grouped.columns["t"]
    keep = (t >= lo) & (t < hi)
    inst = np.repeat(np.arange(len(grouped.offsets) - 1), np.diff(grouped.offsets))
    counts = np.bincount(inst[keep], minlength=len(grouped.offsets) - 1)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return offsets, {name: col[keep] for name, col in grouped.columns.items()}


def analyze(registry_path, readings_path, now_ms: int, *, tables_dir=None, batches: int = 10,
            params: kernels.Params | None = None,
            on_batch: Callable[[int, int], None] | None = None) -> list[dict]:
    """Registry and readings files (CSV / Parquet) -> fleet report rows."""
    instruments, verified, due, sigma = io.registry(registry_path)
    data = io.readings(readings_path, [inst.id for inst in instruments])
    return report(instruments, verified, due, data, now_ms, tables_dir=tables_dir,
                  batches=batches, params=params, sigma=sigma, on_batch=on_batch)


def report(instruments, verified, due, data: dict[str, io.Grouped], now_ms: int, *,
           tables_dir=None, batches: int = 10, params: kernels.Params | None = None,
           sigma: np.ndarray | None = None,
           on_batch: Callable[[int, int], None] | None = None) -> list[dict]:
    """Registry columns and grouped readings -> fleet report rows. `sigma`: per instrument
    check-process standard deviation in base units (NaN: estimate it from the baseline)."""
    params = params or kernels.Params()
    spec = kernels.FleetSpec.build(instruments, tables.load(tables_dir), since=verified)
    n = len(instruments)
    checks = S.new(n, params.baseline, mu0=None if sigma is None else np.where(
        np.isnan(sigma), np.nan, 0.0), sigma=sigma)
    zeros, dispenses = S.new(n, params.baseline), pulses.new(n)
    ml = np.array([1000 // PER_LITRE.get(inst.unit, 1000) for inst in instruments], np.int64)
    times = np.concatenate([g.columns["t"] for g in data.values()])
    edges = np.linspace(times.min(), times.max() + 1, batches + 1) if times.size else [0, 1]
    for b in range(len(edges) - 1):
        lo, hi = edges[b], edges[b + 1] if b < len(edges) - 2 else np.inf
        off, c = _slice(data["check"], lo, hi)
        checks = kernels.scan(spec, kernels.Checks(off, c["t"], c["indication"],
                                                   c["reference"], c["raw"]), checks, params)
        off, c = _slice(data["zero"], lo, hi)
        zeros = kernels.scan(spec, zero.as_checks(off, c["t"], c["indication"], c["raw"]),
                             zeros, params)
        off, c = _slice(data["dispense"], lo, hi)
        dispenses = pulses.scan(pulses.Dispenses(off, c["t"], c["volume"], c["pulses"],
                                                 c["kfactor"]), dispenses, ml, verified)
        if on_batch:
            on_batch(b + 1, len(edges) - 1)
    columns = fleet.classify(checks.values, now_ms, due, zeros.values, dispenses)
    return fleet.rows([inst.id for inst in instruments], columns)
