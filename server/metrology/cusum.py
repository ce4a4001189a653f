"""Two-sided tabular CUSUM on standardised errors z (Page 1954; NIST e-Handbook 6.3.2.3).

Invariant: S+ = max(0, S+ + z - k), S- = max(0, S- - z - k); a signal when either exceeds
h, after which both restart at 0 (so run lengths are renewals and ARL0 = readings/alarms).
k = 0.5, h = 4.77 gives ARL0 ~ 369 and ~ 9.9 readings to detect a 1 sigma shift (research
/metrology.md §4.2, Brook-Evans Markov chain in research/arl.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from numba import njit

from metrotrace.server.metrology.errors import InputError


@dataclass(frozen=True)
class CusumParams:
    k: float = 0.5
    h: float = 4.77

    def __post_init__(self):
        if not 0 <= self.k < 10:
            raise InputError(f"k: CUSUM reference value must be in [0, 10) sigma, got {self.k}")
        if not 0 < self.h < 1000:
            raise InputError(f"h: CUSUM decision interval must be in (0, 1000), got {self.h}")


@njit(cache=True, inline="always")
def step(hi, lo, z, k, h):
    """One reading: returns (S+, S-, signalled). Selects, not branches (fold.charted runs
    it in the vectorised lanes of tiles.py)."""
    hi = max(0.0, hi + z - k)
    lo = max(0.0, lo - z - k)
    fired = hi > h or lo > h
    return (0.0 if fired else hi), (0.0 if fired else lo), fired
