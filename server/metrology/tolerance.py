"""Legal flags: |r| > 1 out of tolerance, |r| > 0.8 early warning, in integer arithmetic.

Invariant: the tests compare |error| x SCALE with the integer MPE numerator (mpe.SCALE),
so a check exactly at the MPE is within tolerance (R 76: "the MPE applies") and no float
rounding can move a check across the limit. 0.8 is ILAC G24's staircase fraction.
"""

from __future__ import annotations

from numba import njit

from metrotrace.server.metrology.mpe import SCALE


@njit(cache=True, inline="always")
def flags(err, mpe_q, warn_num, warn_den):
    """(covered, out, warning, 1 / MPE as a float) of an integer error against MPE =
    mpe_q / SCALE; mpe_q <= 0: the load is not covered. Out counts as a warning too. The
    float 1 / MPE is for reports and the trend, never for the flags."""
    covered = mpe_q > 0
    scaled = abs(err) * SCALE
    out = covered and scaled > mpe_q
    warning = covered and scaled * warn_den > mpe_q * warn_num
    return covered, out, warning, (SCALE * 1.0 / mpe_q if covered else 0.0)
