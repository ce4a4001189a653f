"""Checks -> normalised errors: error = indication - reference, r = error / MPE(load) for the
legal flags, z = (x - mu0) / sigma for the control charts.

Invariant: mu0 and sigma come from the instrument's first `baseline` readings (or from the
registry) and never move afterwards, so a drift cannot teach the chart to accept itself.
mu0 and sigma are robust yet efficient: the mean and standard deviation of the baseline after
dropping points more than TRIM robust sigmas (1.4826 x MAD) from the median, so a bad
check in the baseline cannot inflate sigma, and an honest baseline keeps nearly the full
efficiency of the standard deviation (MAD alone wastes 63 % of the data). sigma is never below
the quantisation step / sqrt(12) (an indication rounded to e cannot resolve less,
research/metrology.md §4.3).
x, the value charted, depends on the mode fixed by the baseline:
  CALIBRATED  every baseline check has raw converter counts and the loads span at least
              MIN_SPREAD_E intervals: raw = a + b x indication is fitted over the baseline and
              x = (raw - a) / b - reference, the error in base units below e/2 (also trended);
  COUNTS      raw counts everywhere but one load: x = raw (z is unit-free, so counts serve
              the charts), only for checks at that load (a holds it); the trend uses error;
  INDICATION  otherwise: x = error = indication - reference.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from metrotrace.server.metrology.state import BASE_ERR, BASE_LOAD, BASE_RAW

RAW_NONE = np.iinfo(np.int64).min  # "no raw counts in this record"
MAD_TO_SIGMA = 1.482602218505602  # 1 / Phi^-1(3/4): MAD of a normal sample -> sigma
TRIM = 3.5  # robust sigmas from the median beyond which a baseline point is dropped
MIN_SPREAD_E = 10.0  # loads must span 10 e to calibrate counts against the indication
INDICATION, CALIBRATED, COUNTS = 0, 1, 2


@njit(cache=True, inline="always")
def high_res(err, load, raw, mode, a, inv_b):
    """The value charted (see the module docstring); NaN: this reading is not charted."""
    if mode == CALIBRATED and raw != RAW_NONE:
        return (raw - a) * inv_b - load
    if mode == COUNTS:
        return float(raw) if raw != RAW_NONE and load == a else np.nan
    return float(err)


@njit(cache=True, inline="always")
def trend_error(err, x, mode):
    """The error in base units for the trend: x when calibrated, else the indication's."""
    if mode == CALIBRATED:
        return x
    return float(err)


@njit(cache=True)
def fit(buf, n, quantum):
    """Baseline buffer rows (error, load, raw) -> (mu0, sigma, mode, a, 1/b)."""
    use_raw = True
    lo, hi = np.inf, -np.inf
    mean_i, mean_r = 0.0, 0.0
    for k in range(n):
        indication = buf[k, BASE_ERR] + buf[k, BASE_LOAD]
        lo, hi = min(lo, indication), max(hi, indication)
        mean_i += indication
        mean_r += buf[k, BASE_RAW]
        if buf[k, BASE_RAW] == RAW_NONE:
            use_raw = False
    a, inv_b, mode = 0.0, 0.0, INDICATION
    if use_raw and hi - lo < MIN_SPREAD_E * quantum:
        mode, a = COUNTS, np.median(buf[:n, BASE_LOAD])
    elif use_raw:
        mean_i /= n
        mean_r /= n
        sxx, sxy = 0.0, 0.0
        for k in range(n):
            di = buf[k, BASE_ERR] + buf[k, BASE_LOAD] - mean_i
            sxx += di * di
            sxy += di * (buf[k, BASE_RAW] - mean_r)
        b = sxy / sxx
        if b > 0.0:
            a, inv_b, mode = mean_r - b * mean_i, 1.0 / b, CALIBRATED
    x = np.empty(n)
    m = 0
    for k in range(n):
        v = high_res(buf[k, BASE_ERR], buf[k, BASE_LOAD], buf[k, BASE_RAW], mode, a, inv_b)
        if not np.isnan(v):
            x[m] = v
            m += 1
    med = np.median(x[:m])
    cut = TRIM * MAD_TO_SIGMA * np.median(np.abs(x[:m] - med))
    kept, total, squares = 0, 0.0, 0.0
    for k in range(m):
        if abs(x[k] - med) <= cut:
            kept += 1
            total += x[k]
    mu0 = total / kept
    for k in range(m):
        if abs(x[k] - med) <= cut:
            squares += (x[k] - mu0) ** 2
    sigma = math.sqrt(squares / (kept - 1)) if kept > 1 else 0.0
    step = quantum if mode == INDICATION else (inv_b if mode == CALIBRATED else 1.0)
    return mu0, max(sigma, step / math.sqrt(12.0)), mode, a, inv_b
