"""EWMA chart on standardised errors z (Roberts 1959; NIST e-Handbook 2.3.5.2.2).

Invariant: W = (1 - lambda) W + lambda z from W = 0, a signal when |W| > L sqrt(lambda /
(2 - lambda)) (asymptotic limits), after which W restarts at 0. lambda = 0.2, L = 2.86
gives ARL0 ~ 371 and ~ 9.8 readings at a 1 sigma shift (research/metrology.md §4.2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from numba import njit

from metrotrace.server.metrology.errors import InputError


@dataclass(frozen=True)
class EwmaParams:
    lam: float = 0.2
    L: float = 2.86  # noqa: N815 - the letter of the control-chart literature

    def __post_init__(self):
        if not 0 < self.lam <= 1:
            raise InputError(f"lam: EWMA weight must be in (0, 1], got {self.lam}")
        if not 0 < self.L < 100:
            raise InputError(f"L: EWMA limit width must be in (0, 100) sigma, got {self.L}")

    @property
    def limit(self) -> float:
        return self.L * math.sqrt(self.lam / (2.0 - self.lam))


@njit(cache=True, inline="always")
def step(w, z, lam, limit):
    """One reading: returns (W, signalled). Selects, not branches (as cusum.step)."""
    w = (1.0 - lam) * w + lam * z
    fired = abs(w) > limit
    return (0.0 if fired else w), fired
