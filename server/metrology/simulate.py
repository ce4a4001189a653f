"""Simulated fleets with known truth, to measure what the detectors really do.

Invariant: every figure here comes from running the real kernel (kernels.scan) on readings
whose truth is known: in-control normal errors, or a step shift at a known reading.
Run lengths are renewals (CUSUM and EWMA restart at 0 after a signal), so
ARL0 = charted readings / signals; detection delay = readings from the shift to the first
signal after it (the chart's state at the shift is whatever the in-control run left:
"steady state"; `zero_state` restarts the charts at the shift instead).
Generation is vectorised numpy, never a Python loop per reading.
"""

from __future__ import annotations

import numpy as np

from metrotrace.server.metrology import kernels
from metrotrace.server.metrology import state as S
from metrotrace.server.metrology.mpe import Instrument

SIGMA_UNITS = 1000  # errors in mg with e = 1 mg: quantisation is 1/1000 sigma, negligible
PROBE = Instrument("probe", "oiml-r76", "I", "mg", 1)


def fleet(instruments: int, per: int, shift_sigma: float = 0.0, shift_at: int = 0,
          seed: int = 0, sigma: float = SIGMA_UNITS, load: int = 10_000,
          raw_gain: float | None = None, slope_sigma: float = 0.0,
          period_ms: int = 1) -> kernels.Checks:
    """`instruments` x `per` checks at one load, N(0, sigma) errors, +shift_sigma x sigma
    from reading `shift_at` on, plus a linear drift of slope_sigma x sigma per reading from
    there; t = reading index x period_ms (ms). raw counts if raw_gain is given."""
    rng = np.random.default_rng(seed)
    true = rng.standard_normal((instruments, per)) * sigma
    true[:, shift_at:] += shift_sigma * sigma
    if slope_sigma:
        true[:, shift_at:] += slope_sigma * sigma * np.arange(per - shift_at)
    t = np.broadcast_to(np.arange(per, dtype=np.int64) * period_ms, (instruments, per)).ravel()
    reference = np.full(instruments * per, load, dtype=np.int64)
    indication = (reference + np.round(true.ravel())).astype(np.int64)
    raw = None
    if raw_gain is not None:
        raw = np.round(50_000 + raw_gain * (load + true.ravel())).astype(np.int64)
    offsets = np.arange(0, instruments * per + 1, per, dtype=np.int64)
    return kernels.Checks(offsets, t.copy(), indication, reference, raw)


def spec_for(instruments: int, inst: Instrument = PROBE) -> kernels.FleetSpec:
    from metrotrace.server.metrology import tables

    return kernels.FleetSpec.build([inst] * instruments, tables.load())


def arl0(instruments: int, per: int, seed: int = 0, known: bool = True,
         params: kernels.Params | None = None) -> dict:
    """In-control run length per chart: charted readings / signals."""
    params = params or kernels.Params()
    sigma = np.full(instruments, float(SIGMA_UNITS)) if known else None
    state = S.new(instruments, params.baseline, mu0=0.0 if known else None, sigma=sigma)
    out = kernels.scan(spec_for(instruments), fleet(instruments, per, seed=seed), state,
                       params).values
    charted = float(np.sum(out[:, S.N_SEEN])) - (0 if known else instruments * params.baseline)
    either = np.minimum(np.nan_to_num(out[:, S.FIRST_CUSUM_T], nan=per),
                        np.nan_to_num(out[:, S.FIRST_EWMA_T], nan=per))
    return {"readings": charted,
            "cusum": charted / max(1.0, float(np.sum(out[:, S.N_CUSUM]))),
            "ewma": charted / max(1.0, float(np.sum(out[:, S.N_EWMA]))),
            "confirmed": charted / max(1.0, float(np.sum(out[:, S.N_CONFIRMED]))),
            "instruments_alarmed_by_either": float(np.mean(either < per))}


def delay(instruments: int, shift_sigma: float, seed: int = 0, before: int = 50,
          after: int = 400, zero_state: bool = False, params: kernels.Params | None = None,
          inst: Instrument = PROBE, sigma: float = SIGMA_UNITS, load: int = 10_000,
          raw_gain: float | None = None, known: bool = True) -> dict:
    """Mean readings from a step shift to the first signal after it, per chart."""
    params = params or kernels.Params()
    per = before + after
    checks = fleet(instruments, per, shift_sigma, before, seed, sigma, load, raw_gain)
    spec = spec_for(instruments, inst)
    state = S.new(instruments, params.baseline, mu0=0.0 if known else None,
                  sigma=np.full(instruments, float(sigma)) if known else None)

    def part(lo, hi):
        idx = (np.arange(instruments)[:, None] * per + np.arange(lo, hi)[None, :]).ravel()
        raw = None if checks.raw is None else checks.raw[idx]
        offsets = np.arange(instruments + 1, dtype=np.int64) * (hi - lo)
        return kernels.Checks(offsets, checks.t[idx], checks.indication[idx],
                              checks.reference[idx], raw)

    state = kernels.scan(spec, part(0, before), state, params)
    values = state.values.copy()
    for col in (S.FIRST_CUSUM_T, S.FIRST_EWMA_T, S.FIRST_OUT_T, S.FIRST_CONFIRMED_T,
                S.LAST_SIGNAL_N):
        values[:, col] = np.nan
    for col in (S.N_CUSUM, S.N_EWMA, S.N_OUT, S.N_CONFIRMED):
        values[:, col] = 0
    if zero_state:
        values[:, [S.CUSUM_HI, S.CUSUM_LO, S.EWMA]] = 0.0
    state = kernels.scan(spec, part(before, per), S.DriftState(values, state.base), params)
    out = state.values
    result = {}
    for name, col in (("cusum", S.FIRST_CUSUM_T), ("ewma", S.FIRST_EWMA_T),
                      ("confirmed", S.FIRST_CONFIRMED_T), ("out_of_tolerance", S.FIRST_OUT_T)):
        hit = out[:, col]
        result[name] = float(np.nanmean(hit - before + 1)) if np.any(~np.isnan(hit)) else None
        result[name + "_missed"] = float(np.mean(np.isnan(hit)))
    return result
