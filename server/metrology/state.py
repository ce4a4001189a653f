"""Per-instrument streaming state: one float64 row per instrument, columns named here.

Invariant: the state after readings A then B equals the state after A+B in one call (the
kernel is a left fold over each instrument's readings); so batch and incremental runs are
the same computation. Times are UTC ms held exactly in float64 (< 2**53); "never" is NaN.
While SIGMA is NaN the instrument is in its baseline: readings go to the `base` buffer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# normalise: baseline and calibration of raw counts
N_SEEN, LAST_T, MU0, SIGMA, RAW_MODE, RAW_A, RAW_INV_B = range(7)
# tolerance: legal flags on r = error / MPE (in service)
N_OUT, N_WARN, N_UNCOVERED, FIRST_OUT_T, FIRST_WARN_T, LAST_R, MAX_ABS_R = range(7, 14)
# cusum
CUSUM_HI, CUSUM_LO, N_CUSUM, FIRST_CUSUM_T = range(14, 18)
# ewma
EWMA, N_EWMA, FIRST_EWMA_T = range(18, 21)
# trend: forgetting least-squares sums of r_hr against days since T0
T0, TW, TWT, TWR, TWTT, TWTR, TWRR, TW2, N_SCORED = range(21, 30)
# confirmation: a chart signal (either chart) within `confirm_within` readings of the
# previous one confirms it (kernels.Params); LAST_SIGNAL_N is N_SEEN at the last signal
LAST_SIGNAL_N, N_CONFIRMED, FIRST_CONFIRMED_T = range(30, 33)
NCOL = 33

NEVER = np.nan
BASE_ERR, BASE_LOAD, BASE_RAW = range(3)

_NAN_AT_START = (MU0, SIGMA, FIRST_OUT_T, FIRST_WARN_T, LAST_R, FIRST_CUSUM_T,
                 FIRST_EWMA_T, T0, LAST_SIGNAL_N, FIRST_CONFIRMED_T)


@dataclass(frozen=True)
class DriftState:
    """State of a fleet between calls: `values` (n, NCOL) and the baseline buffer
    `base` (n, baseline, 3) holding (error, load, raw) of the first readings."""

    values: np.ndarray
    base: np.ndarray

    @property
    def instruments(self) -> int:
        return self.values.shape[0]

    @property
    def baseline(self) -> int:
        return self.base.shape[1]

    def copy(self) -> DriftState:
        return DriftState(self.values.copy(), self.base.copy())


def new(instruments: int, baseline: int, mu0=None, sigma=None) -> DriftState:
    """A fresh state. Give mu0 and sigma (arrays, NaN where unknown) to skip the baseline
    of instruments whose check-process noise is already known (registry, earlier runs)."""
    values = np.zeros((instruments, NCOL), dtype=np.float64)
    values[:, list(_NAN_AT_START)] = np.nan
    values[:, LAST_T] = -np.inf
    if sigma is not None:
        values[:, MU0] = np.broadcast_to(np.asarray(mu0, dtype=np.float64), instruments)
        values[:, SIGMA] = np.broadcast_to(np.asarray(sigma, dtype=np.float64), instruments)
    base = np.zeros((instruments, baseline, 3), dtype=np.float64)
    return DriftState(values, base)
