"""The drift kernel: one numba pass over check readings grouped by instrument.

Invariant: readings arrive as columns (no Python object per reading or per instrument)
grouped by instrument in CSR form — instrument i owns rows offsets[i]:offsets[i+1], in
time order — and the kernel is a left fold of each instrument's rows into its state row
(state.py). Instruments are independent, so they run in parallel (prange); batch and
incremental analysis are the same call: `state = scan(spec, batch, state)` any number of
times gives the state of one call over all batches joined. `scan` is the public wrapper:
it validates every input, naming the bad column or parameter, and never changes the state
it is given.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
from numba import njit, prange

from metrotrace.server.metrology import columns, cusum, ewma, normalise, tolerance, trend
from metrotrace.server.metrology import state as S
from metrotrace.server.metrology.errors import InputError
from metrotrace.server.metrology.mpe import Instrument, Profiles, compile_profiles, mpe_q
from metrotrace.server.metrology.tables import Table

OUT_OF_ORDER = 1  # bad[i] holds the row; the reason is always time going backwards


@dataclass(frozen=True)
class Params:
    cusum: cusum.CusumParams = field(default_factory=cusum.CusumParams)
    ewma: ewma.EwmaParams = field(default_factory=ewma.EwmaParams)
    warn: Fraction = Fraction(4, 5)  # early warning at |r| > 0.8 (ILAC G24 staircase)
    baseline: int = 30  # readings that fix mu0 and sigma when the registry has none
    trend_window: float = 100.0  # readings; forgetting factor gamma = 1 - 1/window

    def __post_init__(self):
        if not 0 < self.warn < 1:
            raise InputError(f"warn: early-warning fraction must be in (0, 1), got {self.warn}")
        if not 3 <= self.baseline <= 10_000:
            raise InputError(f"baseline: must be 3..10000 readings, got {self.baseline}")
        if not self.trend_window >= 2:
            raise InputError(f"trend_window: must be >= 2 readings, got {self.trend_window}")

    def vector(self) -> np.ndarray:
        return np.array([self.cusum.k, self.cusum.h, self.ewma.lam, self.ewma.limit,
                         1.0 - 1.0 / self.trend_window, self.warn.numerator,
                         self.warn.denominator], dtype=np.float64)


@dataclass(frozen=True)
class FleetSpec:
    """Static per-instrument facts: quantisation step e, integer MPE profiles, and `since`
    (UTC ms of the last verification: earlier readings are ignored)."""

    quantum: np.ndarray
    profiles: Profiles
    since: np.ndarray

    @classmethod
    def build(cls, instruments: list[Instrument], tables: dict[str, Table],
              since: np.ndarray | None = None) -> FleetSpec:
        n = len(instruments)
        quantum = np.array([inst.e for inst in instruments], dtype=np.int64)
        since = np.zeros(n, np.int64) if since is None else np.asarray(since, np.int64)
        return cls(quantum, compile_profiles(instruments, tables), since)


@dataclass(frozen=True)
class Checks:
    """Check readings grouped by instrument (CSR). Legal values are int64 base units; raw
    is the converter count or normalise.RAW_NONE, or None when no reading has one."""

    offsets: np.ndarray
    t: np.ndarray
    indication: np.ndarray
    reference: np.ndarray
    raw: np.ndarray | None = None


@njit(parallel=True, cache=True)
def _scan(offsets, t, indication, reference, raw, has_raw, since, quantum, prof, start,
          upper, fixed_q, coef, at_q, emin_q, params, values, base, bad):
    k, h, lam, limit, gamma = params[0], params[1], params[2], params[3], params[4]
    warn_num, warn_den = np.int64(params[5]), np.int64(params[6])
    n0 = base.shape[1]
    for i in prange(offsets.shape[0] - 1):
        # The row lives in locals for the whole instrument and is written back once.
        row = values[i]
        p = prof[i]
        last_t, n_seen, sigma = row[S.LAST_T], row[S.N_SEEN], row[S.SIGMA]
        mu0, mode, a, inv_b = row[S.MU0], np.int64(row[S.RAW_MODE]), row[S.RAW_A], row[S.RAW_INV_B]
        inv_sigma = 1.0 / sigma
        n_out, n_warn, n_unc = row[S.N_OUT], row[S.N_WARN], row[S.N_UNCOVERED]
        first_out, first_warn = row[S.FIRST_OUT_T], row[S.FIRST_WARN_T]
        last_r, max_abs_r = row[S.LAST_R], row[S.MAX_ABS_R]
        hi, lo, ew = row[S.CUSUM_HI], row[S.CUSUM_LO], row[S.EWMA]
        n_cusum, first_cusum = row[S.N_CUSUM], row[S.FIRST_CUSUM_T]
        n_ewma, first_ewma = row[S.N_EWMA], row[S.FIRST_EWMA_T]
        t0, n_scored = row[S.T0], row[S.N_SCORED]
        tw, twt, twr = row[S.TW], row[S.TWT], row[S.TWR]
        twtt, twtr, twrr, tw2 = row[S.TWTT], row[S.TWTR], row[S.TWRR], row[S.TW2]
        cached_load, cached_q, inv_q = np.int64(-1), np.int64(0), 0.0
        for j in range(offsets[i], offsets[i + 1]):
            tj = t[j]
            if tj < since[i]:
                continue
            if tj < last_t:
                bad[i] = j
                break
            last_t = tj
            load = reference[j]
            err = indication[j] - load
            if load != cached_load:
                cached_load = load
                cached_q = mpe_q(p, load, start, upper, fixed_q, coef, at_q, emin_q)
                inv_q = tolerance.ratio(1.0, cached_q) if cached_q > 0 else 0.0
            flag = tolerance.classify(err, cached_q, warn_num, warn_den)
            if flag == tolerance.UNCOVERED:
                n_unc += 1
            else:
                last_r = err * inv_q
                max_abs_r = max(max_abs_r, abs(last_r))
                if flag == tolerance.OUT:
                    n_out += 1
                    if n_out == 1:
                        first_out = tj
                if flag >= tolerance.WARNING:
                    n_warn += 1
                    if n_warn == 1:
                        first_warn = tj
            rawj = raw[j] if has_raw else normalise.RAW_NONE
            if np.isnan(sigma):  # baseline: collect, and fit once it is full
                m = np.int64(n_seen)
                base[i, m, S.BASE_ERR] = err
                base[i, m, S.BASE_LOAD] = load
                base[i, m, S.BASE_RAW] = rawj
                n_seen += 1
                if n_seen == n0:
                    mu0, sigma, mode, a, inv_b = normalise.fit(base[i], n0, quantum[i])
                    inv_sigma = 1.0 / sigma
                continue
            n_seen += 1
            x = normalise.high_res(err, load, rawj, mode, a, inv_b)
            if not np.isnan(x):
                z = (x - mu0) * inv_sigma
                hi, lo, fired = cusum.step(hi, lo, z, k, h)
                if fired:
                    n_cusum += 1
                    if n_cusum == 1:
                        first_cusum = tj
                ew, fired = ewma.step(ew, z, lam, limit)
                if fired:
                    n_ewma += 1
                    if n_ewma == 1:
                        first_ewma = tj
            if cached_q > 0:
                if n_scored == 0:
                    t0 = tj
                td = (tj - t0) * (1.0 / trend.DAY_MS)
                tw, twt, twr, twtt, twtr, twrr, tw2 = trend.step(
                    tw, twt, twr, twtt, twtr, twrr, tw2, td,
                    normalise.trend_error(err, x, mode) * inv_q, gamma)
                n_scored += 1
        row[S.LAST_T], row[S.N_SEEN], row[S.SIGMA], row[S.MU0] = last_t, n_seen, sigma, mu0
        row[S.RAW_MODE], row[S.RAW_A], row[S.RAW_INV_B] = mode, a, inv_b
        row[S.N_OUT], row[S.N_WARN], row[S.N_UNCOVERED] = n_out, n_warn, n_unc
        row[S.FIRST_OUT_T], row[S.FIRST_WARN_T] = first_out, first_warn
        row[S.LAST_R], row[S.MAX_ABS_R] = last_r, max_abs_r
        row[S.CUSUM_HI], row[S.CUSUM_LO], row[S.EWMA] = hi, lo, ew
        row[S.N_CUSUM], row[S.FIRST_CUSUM_T] = n_cusum, first_cusum
        row[S.N_EWMA], row[S.FIRST_EWMA_T] = n_ewma, first_ewma
        row[S.T0], row[S.N_SCORED] = t0, n_scored
        row[S.TW], row[S.TWT], row[S.TWR] = tw, twt, twr
        row[S.TWTT], row[S.TWTR], row[S.TWRR], row[S.TW2] = twtt, twtr, twrr, tw2


def scan(spec: FleetSpec, checks: Checks, state: S.DriftState,
         params: Params | None = None, *, in_place: bool = False) -> S.DriftState:
    """Fold `checks` into a copy of `state` and return it. in_place=True folds into `state`
    itself (no copy: for fleets whose state is large; after an InputError raised by the
    kernel, such a state is then undefined)."""
    params = params or Params()
    n_inst = state.instruments
    known = ~np.isnan(state.values[:, S.SIGMA])
    if state.baseline != params.baseline and not (state.baseline == 0 and np.all(known)):
        raise InputError(f"baseline: state was made for {state.baseline} readings, "
                         f"params say {params.baseline}")
    t = columns.int_column("t", checks.t, None)
    n = t.shape[0]
    offsets = columns.offsets(checks.offsets, n_inst, n)
    indication = columns.int_column("indication", checks.indication, n)
    reference = columns.int_column("reference", checks.reference, n)
    has_raw = checks.raw is not None
    raw = columns.int_column("raw", checks.raw, n) if has_raw else np.zeros(1, np.int64)
    for name, arr in (("quantum", spec.quantum), ("since", spec.since),
                      ("profiles.index", spec.profiles.index)):
        if arr.shape != (n_inst,):
            raise InputError(f"{name}: expected one value per instrument ({n_inst})")
    if np.any(spec.quantum <= 0):
        raise InputError(f"quantum: e must be positive (instrument {int(np.argmin(spec.quantum))})")
    if np.any(state.values[known, S.SIGMA] <= 0):
        raise InputError("sigma: a known sigma must be positive")
    out = state if in_place else state.copy()
    bad = np.full(n_inst, -1, dtype=np.int64)
    pr = spec.profiles
    _scan(offsets, t, indication, reference, raw, has_raw, spec.since, spec.quantum,
          pr.index, pr.start, pr.upper, pr.fixed_q, pr.coef, pr.at_q, pr.emin_q,
          params.vector(), out.values, out.base, bad)
    if np.any(bad >= 0):
        i = int(np.argmax(bad >= 0))
        raise InputError(f"t: readings of instrument {i} go back in time at row {bad[i]} "
                         f"(each instrument's rows must be in time order, also across batches)")
    return out
