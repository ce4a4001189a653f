"""Legal flags: |r| > 1 out of tolerance, |r| > 0.8 early warning, in integer arithmetic.

Invariant: the tests compare |error| x SCALE with the integer MPE numerator (mpe.SCALE),
so a check exactly at the MPE is within tolerance (R 76: "the MPE applies") and no float
rounding can move a check across the limit. 0.8 is ILAC G24's staircase fraction.
"""

from __future__ import annotations

from numba import njit

from metrotrace.server.metrology.mpe import SCALE

UNCOVERED, OK, WARNING, OUT = -1, 0, 1, 2


@njit(cache=True)
def classify(err, mpe_q, warn_num, warn_den):
    """UNCOVERED / OK / WARNING / OUT for an integer error against MPE = mpe_q / SCALE."""
    if mpe_q <= 0:
        return UNCOVERED
    scaled = abs(err) * SCALE
    if scaled > mpe_q:
        return OUT
    if scaled * warn_den > mpe_q * warn_num:
        return WARNING
    return OK


@njit(cache=True)
def ratio(err, mpe_q):
    """r = error / MPE as a float, for reports and the trend (never for the flags)."""
    return err * SCALE / mpe_q
