"""One instrument's charts: every check with its error, the MPE at its load, and the CUSUM
and EWMA statistics as the drift engine saw them after that check.

Invariant: the chart values are the engine's own state, not a re-implementation: the
checks are folded through `metrology.kernels.scan` one at a time (the kernels guarantee
that batch and one-by-one folding give the same state), so a signal drawn here is a
signal the fleet report counted. Only the last `stepped` checks are stepped; earlier ones
are folded in one call. MPEs are the engine's exact in-service values, shown as floats.
"""

from __future__ import annotations

import json
import math
from fractions import Fraction

import numpy as np

from metrotrace.firmware.metro.wire import record as wire
from metrotrace.server.metrology import kernels
from metrotrace.server.metrology import state as S
from metrotrace.server.metrology.mpe import mpe
from metrotrace.server.metrology.normalise import RAW_NONE

from ..store.rows import InstrumentRow, RecordRow, Store
from .states import MAX_RECORDS, metrology_instrument

STEPPED = 300  # checks drawn one by one (each is one kernel call)


def _num(v: float) -> float | None:
    return None if v is None or math.isnan(v) else round(float(v), 4)


def _checks(rows: list[RecordRow], since: int) -> list[RecordRow]:
    rows = [r for r in rows if r.tq != wire.TQ_UNSET and r.value is not None
            and r.reference is not None and r.t >= since]
    return sorted(rows, key=lambda r: r.t)


def _batch(rows: list[RecordRow]) -> kernels.Checks:
    n = len(rows)
    return kernels.Checks(np.array([0, n], np.int64), np.array([r.t for r in rows], np.int64),
                          np.array([r.value for r in rows], np.int64),
                          np.array([r.reference for r in rows], np.int64),
                          np.array([RAW_NONE if r.raw is None else r.raw for r in rows],
                                   np.int64))


def series(store: Store, row: InstrumentRow, tabs: dict,
           params: kernels.Params | None = None, stepped: int = STEPPED) -> dict:
    """{"checks": [...], "zeros": [...], "events": [...], "limits": {...}} for one instrument."""
    params = params or kernels.Params()
    inst = metrology_instrument(row, tabs)
    since = row.verified_on or 0
    checks = _checks(store.records(instrument=row.id, kinds=(wire.CHECK,), limit=MAX_RECORDS),
                     since)
    spec = kernels.FleetSpec.build([inst], tabs, since=np.array([since], np.int64))
    state = S.new(1, params.baseline)
    cut = max(0, len(checks) - stepped)
    head, tail = checks[:cut], checks[cut:]
    if head:
        state = kernels.scan(spec, _batch(head), state, params)
    limits: dict[int, Fraction | None] = {}
    points = []
    for n, r in enumerate(tail, start=len(head)):
        before = state.values[0].copy()
        state = kernels.scan(spec, _batch([r]), state, params)
        v = state.values[0]
        if r.reference not in limits:
            limits[r.reference] = mpe(inst, r.reference, tabs)
        limit = limits[r.reference]
        err = r.value - r.reference
        baseline = math.isnan(before[S.SIGMA])
        points.append({
            "n": n + 1, "t": r.t, "indication": r.value, "reference": r.reference,
            "error": err, "raw": r.raw, "mpe": None if limit is None else float(limit),
            "r": None if not limit else round(float(Fraction(err) / limit), 4),
            "baseline": baseline,
            "cusum_hi": None if baseline else _num(v[S.CUSUM_HI]),
            "cusum_lo": None if baseline else _num(v[S.CUSUM_LO]),
            "ewma": None if baseline else _num(v[S.EWMA]),
            "cusum_signal": bool(v[S.N_CUSUM] > before[S.N_CUSUM]),
            "ewma_signal": bool(v[S.N_EWMA] > before[S.N_EWMA]),
            "out": bool(v[S.N_OUT] > before[S.N_OUT]),
            "warn": bool(v[S.N_WARN] > before[S.N_WARN]),
        })
    zero_limit = mpe(inst, 0, tabs)
    zeros = [{"t": r.t, "indication": r.value, "raw": r.raw}
             for r in _checks_zero(store, row, since)]
    return {
        "checks": points, "checks_total": len(checks), "zeros": zeros,
        "zero_mpe": None if zero_limit is None else float(zero_limit),
        "events": events(store, row),
        "limits": {"h": params.cusum.h, "k": params.cusum.k, "ewma": params.ewma.limit,
                   "lam": params.ewma.lam, "warn": float(params.warn),
                   "baseline": params.baseline, "mu0": _num(state.values[0][S.MU0]),
                   "sigma": _num(state.values[0][S.SIGMA])},
    }


def _checks_zero(store: Store, row: InstrumentRow, since: int) -> list[RecordRow]:
    rows = store.records(instrument=row.id, kinds=(wire.ZERO,), limit=MAX_RECORDS)
    return sorted((r for r in rows if r.tq != wire.TQ_UNSET and r.value is not None
                   and r.t >= since), key=lambda r: r.t)[-STEPPED:]


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
