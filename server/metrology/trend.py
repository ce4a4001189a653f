"""Trend of r = x / MPE against time, and the date it is predicted to cross +-1.

Invariant: the kernel keeps only exponentially-forgetting least-squares sums (weight
gamma**age in readings, gamma = 1 - 1/window), time in days since the instrument's first
scored reading T0; everything else is computed from those sums, vectorised, here.
The crossing date is reported only when the slope points at the limit and is at least
`min_t` standard errors from zero; its interval is the delta-method normal interval of
t* = tbar + (sign(b) - rbar) / b (approximate: forgetting weights are treated as
frequency weights with the effective count (sum w)^2 / sum w^2).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from metrotrace.server.metrology import state as S

DAY_MS = 86_400_000.0


@njit(cache=True, inline="always")
def step(w, wt, wr, wtt, wtr, wrr, w2, td, r, gamma):
    """Add one point (td days, r) after ageing the sums by gamma."""
    return (gamma * w + 1.0, gamma * wt + td, gamma * wr + r, gamma * wtt + td * td,
            gamma * wtr + td * r, gamma * wrr + r * r, gamma * gamma * w2 + 1.0)


def predict(values: np.ndarray, *, z: float = 1.96, min_t: float = 3.0) -> dict:
    """Per instrument: slope of r per day, and the predicted crossing time with its
    interval (UTC ms; NaN where no crossing is predicted)."""
    w, wt, wr = values[:, S.TW], values[:, S.TWT], values[:, S.TWR]
    wtt, wtr, wrr, w2 = values[:, S.TWTT], values[:, S.TWTR], values[:, S.TWRR], values[:, S.TW2]
    with np.errstate(divide="ignore", invalid="ignore"):
        tbar, rbar = wt / w, wr / w
        sxx = wtt - w * tbar * tbar
        sxy = wtr - w * tbar * rbar
        syy = wrr - w * rbar * rbar
        slope = sxy / sxx
        n_eff = w * w / w2
        s2 = np.maximum(syy - slope * sxy, 0.0) / w * n_eff / (n_eff - 2.0)
        se_slope = np.sqrt(s2 / sxx)
        se_mean = np.sqrt(s2 / w)
        target = np.sign(slope)
        gap = (target - rbar) / slope
        t_star = tbar + gap
        sd = np.sqrt(se_mean**2 + gap**2 * se_slope**2) / np.abs(slope)
        ok = (n_eff >= 5.0) & (sxx > 0) & (np.abs(slope) > min_t * se_slope)
    nan = np.full(len(w), np.nan)
    t0 = values[:, S.T0]
    crossing = np.where(ok, t0 + t_star * DAY_MS, nan)
    return {
        "slope_per_day": np.where(sxx > 0, slope, nan),
        "crossing_ms": crossing,
        "crossing_lo_ms": np.where(ok, crossing - z * sd * DAY_MS, nan),
        "crossing_hi_ms": np.where(ok, crossing + z * sd * DAY_MS, nan),
    }
