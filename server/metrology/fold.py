"""One instrument's fold, one reading at a time, branch-light, on a tuple of locals.

Invariant: the state of one instrument is its state row (state.py) as a tuple of 33
float64 values, and `charted` is THE update of that tuple by one reading once the baseline
is known and the reading is on or after the last verification; `baseline` is the update
before that. kernels.py and tiles.py call these same functions whether they advance one
instrument or 32 in SIMD lanes (`lanes=True` only moves what tiles.py settles once per
tile), so every schedule gives bit-identical states. `charted` decides with
selects rather than branches (a random mix of test loads or a rare alarm costs no branch
misprediction), and its result never depends on other instruments. `charted` and what it
calls are inlined into their callers (numba inline="always"): inside tiles.py's lane loop
the body must have no calls, so LLVM can vectorise it across instruments. `prefix` and
`rest` are the one-instrument-at-a-time loops (baseline and skipped readings; instruments
that do not fill a tile).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from metrotrace.server.metrology import cusum, ewma, normalise, tolerance, trend
from metrotrace.server.metrology import state as S
from metrotrace.server.metrology.mpe import mpe_q


@njit(cache=True)
def load(row):
    return (row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8], row[9],
            row[10], row[11], row[12], row[13], row[14], row[15], row[16], row[17], row[18],
            row[19], row[20], row[21], row[22], row[23], row[24], row[25], row[26], row[27],
            row[28], row[29], row[30], row[31], row[32])


@njit(cache=True)
def store(row, s):
    for c in range(S.NCOL):
        row[c] = s[c]


@njit(cache=True, inline="always")
def first_time(first, tj, event, count, minima):
    """The time of an instrument's first event: set when its count reaches 1. With `minima`
    (tiles.py's lanes) a running minimum with +inf for never instead: the same time while
    times rise, one select and one min, and no compare of the count."""
    if minima:
        return min(first, tj if event else np.inf)
    return tj if event and count == 1.0 else first


@njit(cache=True, inline="always")
def legal(s, tj, err, q, warn_num, warn_den, minima):
    """Tolerance flags of one reading (integer tests, tolerance.py): updated columns
    N_OUT .. MAX_ABS_R and 20000 / MPE (0 where the load is not covered)."""
    n_out, n_warn, n_unc = s[S.N_OUT], s[S.N_WARN], s[S.N_UNCOVERED]
    last_r, max_abs_r = s[S.LAST_R], s[S.MAX_ABS_R]
    covered, out, warn, inv_q = tolerance.flags(err, q, warn_num, warn_den)
    r = err * inv_q
    n_out += out
    n_warn += warn
    n_unc += not covered
    first_out = first_time(s[S.FIRST_OUT_T], tj, out, n_out, minima)
    first_warn = first_time(s[S.FIRST_WARN_T], tj, warn, n_warn, minima)
    max_abs_r = max(max_abs_r, abs(r)) if covered else max_abs_r
    last_r = r if covered else last_r
    return (n_out, n_warn, n_unc, first_out, first_warn, last_r, max_abs_r), inv_q


@njit(cache=True, inline="always")
def charted(s, tj, ind, ref, rawj, mode, q, inv_sigma, par, lanes):
    """One reading after the baseline: legal flags, CUSUM, EWMA and trend sums.
    par = (k, h, lam, limit, gamma, warn_num, warn_den, confirm_within); mode: the
    instrument's normalise mode (RAW_MODE), or a constant where the caller knows it. `lanes` (a
    constant: tiles.py passes True) keeps first times as running minima (first_time) and
    takes T0 as given: tiles.py sets T0 and N_SCORED once per tile, so the lanes neither
    test nor store them."""
    k, h, lam, limit, gamma, warn_num, warn_den, within = par
    mu0, a, inv_b = s[S.MU0], s[S.RAW_A], s[S.RAW_INV_B]
    err = ind - ref
    flags, inv_q = legal(s, tj, err, q, warn_num, warn_den, lanes)
    x = normalise.high_res(err, ref, rawj, mode, a, inv_b)
    on = not math.isnan(x)
    z = (x - mu0) * inv_sigma if on else 0.0
    hi, lo, fired = cusum.step(s[S.CUSUM_HI], s[S.CUSUM_LO], z, k, h)
    fired = on and fired  # a reading that is not charted leaves the charts alone
    hi = hi if on else s[S.CUSUM_HI]
    lo = lo if on else s[S.CUSUM_LO]
    n_cusum = s[S.N_CUSUM] + fired
    first_cusum = first_time(s[S.FIRST_CUSUM_T], tj, fired, n_cusum, lanes)
    ew, fired_ewma = ewma.step(s[S.EWMA], z, lam, limit)
    fired_ewma = on and fired_ewma
    ew = ew if on else s[S.EWMA]
    n_ewma = s[S.N_EWMA] + fired_ewma
    first_ewma = first_time(s[S.FIRST_EWMA_T], tj, fired_ewma, n_ewma, lanes)
    n_now = s[S.N_SEEN] + 1.0
    signal = fired or fired_ewma
    confirmed = signal and n_now - s[S.LAST_SIGNAL_N] <= within  # NaN: never signalled
    last_signal = n_now if signal else s[S.LAST_SIGNAL_N]
    n_confirmed = s[S.N_CONFIRMED] + confirmed
    first_confirmed = first_time(s[S.FIRST_CONFIRMED_T], tj, confirmed, n_confirmed, lanes)
    scored = q > 0
    n_scored = s[S.N_SCORED]
    t0 = s[S.T0] if lanes else (tj if scored and n_scored == 0.0 else s[S.T0])
    td = (tj - t0) * (1.0 / trend.DAY_MS)
    w, wt, wr, wtt, wtr, wrr, w2 = (s[S.TW], s[S.TWT], s[S.TWR], s[S.TWTT], s[S.TWTR],
                                    s[S.TWRR], s[S.TW2])
    nw, nwt, nwr, nwtt, nwtr, nwrr, nw2 = trend.step(
        w, wt, wr, wtt, wtr, wrr, w2, td, normalise.trend_error(err, x, mode) * inv_q, gamma)
    if not scored:
        nw, nwt, nwr, nwtt, nwtr, nwrr, nw2 = w, wt, wr, wtt, wtr, wrr, w2
    return (n_now, float(tj), s[2], s[3], s[4], s[5], s[6], flags[0], flags[1],
            flags[2], flags[3], flags[4], flags[5], flags[6], hi, lo, n_cusum, first_cusum,
            ew, n_ewma, first_ewma, t0, nw, nwt, nwr, nwtt, nwtr, nwrr, nw2,
            n_scored + scored, last_signal, n_confirmed, first_confirmed)


@njit(cache=True)
def baseline(s, tj, ind, ref, rawj, q, par, buf, quantum):
    """One reading while sigma is unknown: legal flags, and the reading into the baseline
    buffer `buf`; the baseline is fitted when the buffer is full."""
    err = ind - ref
    flags, _ = legal(s, tj, err, q, par[5], par[6], False)
    m = np.int64(s[S.N_SEEN])
    buf[m, S.BASE_ERR] = err
    buf[m, S.BASE_LOAD] = ref
    buf[m, S.BASE_RAW] = rawj
    n_seen = s[S.N_SEEN] + 1.0
    mu0, sigma, mode, a, inv_b = s[S.MU0], s[S.SIGMA], s[S.RAW_MODE], s[S.RAW_A], s[S.RAW_INV_B]
    if n_seen == buf.shape[0]:
        mu0, sigma, imode, a, inv_b = normalise.fit(buf, buf.shape[0], quantum)
        mode = float(imode)
    return (n_seen, float(tj), mu0, sigma, mode, a, inv_b, flags[0], flags[1], flags[2],
            flags[3], flags[4], flags[5], flags[6], s[14], s[15], s[16], s[17], s[18], s[19],
            s[20], s[21], s[22], s[23], s[24], s[25], s[26], s[27], s[28], s[29], s[30],
            s[31], s[32])


@njit(cache=True)
def prefix(s, j, end, t, indication, reference, raw, has_raw, since, p, pa, par, buf, quantum):
    """Readings before `since` (skipped) and of the baseline (sigma still NaN), one by one:
    -> (state, first row for `charted`, row going back in time or -1)."""
    while j < end:
        tj = t[j]
        if tj < since:
            j += 1
            continue
        if tj < s[S.LAST_T]:
            return s, j, j
        if not np.isnan(s[S.SIGMA]):
            break
        rawj = raw[j] if has_raw else normalise.RAW_NONE
        q = mpe_q(p, reference[j], pa[0], pa[1], pa[2], pa[3], pa[4], pa[5])
        s = baseline(s, tj, indication[j], reference[j], rawj, q, par, buf, quantum)
        j += 1
    return s, j, np.int64(-1)


@njit(cache=True)
def rest(s, j, end, bad, t, indication, reference, raw, has_raw, p, pa, par):
    """The charted readings of one instrument from row j, one at a time -> (state, first
    row going back in time or -1); nothing is folded when `bad` is already set."""
    inv_sigma, mode = 1.0 / s[S.SIGMA], np.int64(s[S.RAW_MODE])
    for jj in range(j, end if bad < 0 else j):
        tj = t[jj]
        bad = jj if bad < 0 and tj < s[S.LAST_T] else bad
        rawj = raw[jj] if has_raw else normalise.RAW_NONE
        q = mpe_q(p, reference[jj], pa[0], pa[1], pa[2], pa[3], pa[4], pa[5])
        s = charted(s, tj, indication[jj], reference[jj], rawj, mode, q, inv_sigma, par, False)
    return s, bad
