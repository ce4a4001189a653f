"""One instrument's charts: every check (and every zero reading) with its error, the MPE at
its load, and the CUSUM and EWMA statistics as the drift engine saw them after it.

Invariant: the chart values are the engine's own state, not a re-implementation: the
instrument's columns are the very ones the fleet report was computed from (states.Fleet),
with the same drift settings (known sigma, baseline), folded through
`metrology.kernels.scan` one reading at a time (the kernels guarantee that batch and
one-by-one folding give the same state), so a signal drawn here is a signal the fleet
report counted. Only the last `stepped` readings of each kind are stepped; earlier ones
are folded in one call. MPEs are the engine's exact in-service values, shown as floats.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from fractions import Fraction

import numpy as np

from metrotrace.firmware.metro.wire import record as wire
from metrotrace.server.metrology import kernels, zero
from metrotrace.server.metrology import state as S
from metrotrace.server.metrology.io import Grouped
from metrotrace.server.metrology.mpe import Instrument, mpe
from metrotrace.server.metrology.normalise import RAW_NONE

from ..store.rows import InstrumentRow, Store
from .states import Fleet

STEPPED = 300  # readings of each kind drawn one by one (each is one kernel call)


def _num(v: float) -> float | None:
    return None if v is None or math.isnan(v) else round(float(v), 4)


def _rows(grouped: Grouped, i: int, since: int) -> dict[str, np.ndarray]:
    """Instrument i's readings of one kind at or after `since` (the kernel skips the
    earlier ones), in time order."""
    lo, hi = int(grouped.offsets[i]), int(grouped.offsets[i + 1])
    keep = grouped.columns["t"][lo:hi] >= since
    return {name: col[lo:hi][keep] for name, col in grouped.columns.items()}


def _fold(spec: kernels.FleetSpec, cols: dict[str, np.ndarray], state: S.DriftState,
          params: kernels.Params, batch: Callable[[np.ndarray, dict], kernels.Checks],
          stepped: int) -> tuple[int, list[tuple[int, np.ndarray, np.ndarray]], S.DriftState]:
    """Fold the readings: all but the last `stepped` in one call, then one at a time.
    Returns (readings folded in one call, [(row, state before, state after)], state)."""
    n = cols["t"].shape[0]
    cut = max(0, n - stepped)
    if cut:
        head = {k: v[:cut] for k, v in cols.items()}
        state = kernels.scan(spec, batch(np.array([0, cut], np.int64), head), state, params)
    steps = []
    for j in range(cut, n):
        one = {k: v[j:j + 1] for k, v in cols.items()}
        before = state.values[0].copy()
        state = kernels.scan(spec, batch(np.array([0, 1], np.int64), one), state, params)
        steps.append((j, before, state.values[0]))
    return cut, steps, state


def _chart_point(before: np.ndarray, v: np.ndarray) -> dict:
    baseline = math.isnan(before[S.SIGMA])
    return {"baseline": baseline,
            "cusum_hi": None if baseline else _num(v[S.CUSUM_HI]),
            "cusum_lo": None if baseline else _num(v[S.CUSUM_LO]),
            "ewma": None if baseline else _num(v[S.EWMA]),
            "cusum_signal": bool(v[S.N_CUSUM] > before[S.N_CUSUM]),
            "ewma_signal": bool(v[S.N_EWMA] > before[S.N_EWMA]),
            "out": bool(v[S.N_OUT] > before[S.N_OUT]),
            "warn": bool(v[S.N_WARN] > before[S.N_WARN])}


def _raw(v) -> int | None:
    return None if int(v) == RAW_NONE else int(v)


def _limits(state: S.DriftState) -> dict:
    return {"mu0": _num(state.values[0][S.MU0]), "sigma": _num(state.values[0][S.SIGMA])}


def series(fleet: Fleet, row: InstrumentRow, tabs: dict, store: Store,
           stepped: int = STEPPED) -> dict:
    """{"checks": [...], "zeros": [...], "events": [...], "limits": {...}} for one instrument
    of `fleet` (None where the engine could not analyse it)."""
    i = fleet.index(row.id)
    if i is None or fleet.loaded is None:
        return {"checks": [], "checks_total": 0, "zeros": [], "zeros_total": 0,
                "events": events(store, row), "limits": {}, "zero_limits": {}}
    loaded, settings = fleet.loaded, fleet.settings
    params = settings.params
    inst: Instrument = loaded.instruments[i]
    since = int(loaded.verified[i])
    spec = kernels.FleetSpec.build([inst], tabs, since=np.array([since], np.int64))

    sigma = settings.check_sigma.get(inst.id)
    state = S.new(1, params.baseline) if sigma is None else \
        S.new(1, params.baseline, mu0=[0.0], sigma=[sigma])
    cols = _rows(loaded.data["check"], i, since)
    first, steps, state = _fold(spec, cols, state, params, lambda off, c: kernels.Checks(
        off, c["t"], c["indication"], c["reference"], c["raw"]), stepped)
    mpes: dict[int, Fraction | None] = {}
    checks = []
    for j, before, v in steps:
        ref, ind = int(cols["reference"][j]), int(cols["indication"][j])
        if ref not in mpes:
            mpes[ref] = mpe(inst, ref, tabs)
        limit, err = mpes[ref], ind - ref
        checks.append({"n": j + 1, "t": int(cols["t"][j]), "indication": ind, "reference": ref,
                       "error": err, "raw": _raw(cols["raw"][j]),
                       "mpe": None if limit is None else float(limit),
                       "r": None if not limit else round(float(Fraction(err) / limit), 4),
                       **_chart_point(before, v)})
    check_limits = _limits(state)

    zcols = _rows(loaded.data["zero"], i, since)
    _, zsteps, zstate = _fold(spec, zcols, S.new(1, params.baseline), params,
                              lambda off, c: zero.as_checks(off, c["t"], c["indication"],
                                                            c["raw"]), stepped)
    zero_limit = mpe(inst, 0, tabs)
    zeros = [{"n": j + 1, "t": int(zcols["t"][j]), "indication": int(zcols["indication"][j]),
              "raw": _raw(zcols["raw"][j]), **_chart_point(before, v)}
             for j, before, v in zsteps]
    return {
        "checks": checks, "checks_total": first + len(checks),
        "zeros": zeros, "zeros_total": int(zcols["t"].shape[0]),
        "zero_mpe": None if zero_limit is None else float(zero_limit),
        "events": events(store, row),
        "limits": {"h": params.cusum.h, "k": params.cusum.k, "ewma": params.ewma.limit,
                   "lam": params.ewma.lam, "L": params.ewma.L, "warn": float(params.warn),
                   "baseline": params.baseline, "known_sigma": sigma, **check_limits},
        "zero_limits": _limits(zstate),
    }


def events(store: Store, row: InstrumentRow, limit: int = 200) -> list[dict]:
    """The audit trail of the instrument's node: power-ups, calibration and parameter
    changes, seal openings, clock settings (event records), newest first."""
    if row.node is None:
        return []
    found = store.records(node=row.node, kinds=(wire.EVENT,), limit=100_000)
    out = []
    for r in found[-limit:]:
        extra = json.loads(r.extra) if r.extra else {}
        out.append({"t": r.t, "seq": r.seq, "tq": r.tq, "code": extra.get("code"),
                    "detail": extra.get("detail"), "inst": r.inst})
    return out[::-1]
