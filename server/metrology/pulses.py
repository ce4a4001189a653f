"""Dispensers: independently counted pulses against the indicated volume, per transaction.

Invariant: a transaction is anomalous when the indicated volume differs from the volume
the pulses imply by more than `limit_bp` basis points of the latter, decided in integers:
|V u K - P 10^6| x 10^4 > limit_bp x P x 10^6, with K the K-factor in pulses per 1000 L
(the wire's kfactor) and u the mL per volume unit. `repeat` anomalies since the last
verification (cumulative, not consecutive) raise the alarm: JJG 443-2006 practice,
"encoder volume and metering volume disagree by > +-0.6 % 5 times cumulatively -> lock"
(research/metrology.md §2.3). Same CSR layout and fold as kernels.py: batches = one call.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit, prange

from metrotrace.server.metrology import columns
from metrotrace.server.metrology.errors import InputError

N_TX, N_ANOMALY, FIRST_ANOMALY_T, ALARM_T, LAST_T, WORST_BP = range(6)
NCOL = 6


@dataclass(frozen=True)
class PulseParams:
    limit_bp: int = 60  # 0.6 %
    repeat: int = 5

    def __post_init__(self):
        if not 0 < self.limit_bp < 10_000:
            raise InputError(f"limit_bp: must be 1..9999 basis points, got {self.limit_bp}")
        if not 1 <= self.repeat <= 1_000_000:
            raise InputError(f"repeat: must be at least 1, got {self.repeat}")


@dataclass(frozen=True)
class Dispenses:
    """Dispense transactions grouped by instrument (CSR), int64 columns."""

    offsets: np.ndarray
    t: np.ndarray
    volume: np.ndarray
    pulses: np.ndarray
    kfactor: np.ndarray


def new(instruments: int) -> np.ndarray:
    values = np.zeros((instruments, NCOL), dtype=np.float64)
    values[:, FIRST_ANOMALY_T] = np.nan
    values[:, ALARM_T] = np.nan
    values[:, LAST_T] = -np.inf
    return values


@njit(cache=True)
def anomalous(volume, pulses, kfactor, ml_per_unit, limit_bp):
    """The integer test of the module docstring."""
    expected = pulses * 1_000_000
    gap = abs(volume * ml_per_unit * kfactor - expected)
    return gap * 10_000 > limit_bp * expected


@njit(parallel=True, cache=True)
def _scan(offsets, t, volume, pulses, kfactor, ml_per_unit, since, limit_bp, repeat, values,
          bad):
    for i in prange(offsets.shape[0] - 1):
        row = values[i]
        for j in range(offsets[i], offsets[i + 1]):
            if t[j] < since[i]:
                continue
            if t[j] < row[LAST_T]:
                bad[i] = j
                break
            row[LAST_T] = t[j]
            row[N_TX] += 1
            if kfactor[j] > 0 and pulses[j] > 0:
                bp = abs(volume[j] * ml_per_unit[i] * kfactor[j] - pulses[j] * 1_000_000) \
                    * 10_000.0 / (pulses[j] * 1_000_000)
                row[WORST_BP] = max(row[WORST_BP], bp)
            if anomalous(volume[j], pulses[j], kfactor[j], ml_per_unit[i], limit_bp):
                row[N_ANOMALY] += 1
                if row[N_ANOMALY] == 1:
                    row[FIRST_ANOMALY_T] = t[j]
                if row[N_ANOMALY] == repeat:
                    row[ALARM_T] = t[j]


def scan(dispenses: Dispenses, values: np.ndarray, ml_per_unit: np.ndarray,
         since: np.ndarray | None = None, params: PulseParams | None = None) -> np.ndarray:
    """Fold `dispenses` into a copy of `values` (from new()); returns the new values."""
    params = params or PulseParams()
    n_inst = values.shape[0]
    t = columns.int_column("t", dispenses.t, None)
    n = t.shape[0]
    offsets = columns.offsets(dispenses.offsets, n_inst, n)
    volume = columns.int_column("volume", dispenses.volume, n)
    pulses = columns.int_column("pulses", dispenses.pulses, n)
    kfactor = columns.int_column("kfactor", dispenses.kfactor, n)
    columns.first_bad("volume", volume < 0)
    columns.first_bad("pulses", pulses < 0)
    columns.first_bad("kfactor", kfactor <= 0)
    ml = columns.int_column("ml_per_unit", ml_per_unit, n_inst)
    columns.first_bad("ml_per_unit", ml <= 0)
    since = np.zeros(n_inst, np.int64) if since is None else columns.int_column(
        "since", since, n_inst)
    out = values.copy()
    bad = np.full(n_inst, -1, dtype=np.int64)
    _scan(offsets, t, volume, pulses, kfactor, ml, since, params.limit_bp, params.repeat, out,
          bad)
    if np.any(bad >= 0):
        i = int(np.argmax(bad >= 0))
        raise InputError(f"t: transactions of instrument {i} go back in time at row {bad[i]}")
    return out
