"""The drift kernel: one numba pass over check readings grouped by instrument.

Invariant: readings arrive as columns (no Python object per reading or per instrument)
grouped by instrument in CSR form — instrument i owns rows offsets[i]:offsets[i+1], in
time order — and the kernel is a left fold of each instrument's rows into its state row
(state.py), one reading at a time by fold.py. Instruments are independent, so they run in
parallel (prange) in tiles of 32 whose fold is vectorised across instruments (tiles.py);
batch and incremental analysis are the same call: `state = scan(spec, batch, state)` any number of
times gives the state of one call over all batches joined. `scan` is the public wrapper:
it validates every input, naming the bad column or parameter, and never changes the state
it is given unless asked to (in_place=True).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
from numba import njit, prange

from metrotrace.server.metrology import columns, cusum, ewma, fold, tiles
from metrotrace.server.metrology import state as S
from metrotrace.server.metrology.errors import InputError
from metrotrace.server.metrology.mpe import Instrument, Profiles, compile_profiles
from metrotrace.server.metrology.tables import Table

OUT_OF_ORDER = 1  # bad[i] holds the row; the reason is always time going backwards


@dataclass(frozen=True)
class Params:
    cusum: cusum.CusumParams = field(default_factory=cusum.CusumParams)
    ewma: ewma.EwmaParams = field(default_factory=ewma.EwmaParams)
    warn: Fraction = Fraction(4, 5)  # early warning at |r| > 0.8 (ILAC G24 staircase)
    baseline: int = 30  # readings that fix mu0 and sigma when the registry has none
    trend_window: float = 100.0  # readings; forgetting factor gamma = 1 - 1/window
    # A chart signal within this many readings of the previous signal (either chart)
    # confirms it; only confirmed signals make an instrument "drifting" (fleet.py).
    confirm_within: int = 30

    def __post_init__(self):
        if not 0 < self.warn < 1:
            raise InputError(f"warn: early-warning fraction must be in (0, 1), got {self.warn}")
        if not 3 <= self.baseline <= 10_000:
            raise InputError(f"baseline: must be 3..10000 readings, got {self.baseline}")
        if not self.trend_window >= 2:
            raise InputError(f"trend_window: must be >= 2 readings, got {self.trend_window}")
        if not 1 <= self.confirm_within <= 1_000_000:
            raise InputError(f"confirm_within: must be 1..1000000 readings, "
                             f"got {self.confirm_within}")

    def vector_tuple(self) -> tuple:
        """(k, h, lam, limit, gamma, warn numerator, warn denominator, confirm_within)
        for fold.charted."""
        return (float(self.cusum.k), float(self.cusum.h), float(self.ewma.lam),
                float(self.ewma.limit), 1.0 - 1.0 / self.trend_window,
                int(self.warn.numerator), int(self.warn.denominator),
                float(self.confirm_within))

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
def _scan(order, offsets, t, indication, reference, raw, has_raw, since, quantum, prof, pa,
          par, values, base, bad):
    """Full tiles of tiles.TILE instruments (taken in `order`) in parallel, then the last
    instruments of `order` one at a time -> readings folded on the vector path."""
    n_inst = offsets.shape[0] - 1
    full = n_inst // tiles.TILE
    tiled = np.zeros(full, np.int64)
    for g in prange(full):
        tiled[g] = tiles.tile(order, g * tiles.TILE, offsets, t, indication, reference, raw,
                              has_raw, since, quantum, prof, pa, par, values, base, bad)
    for k in prange(full * tiles.TILE, n_inst):
        i = order[k]
        s, j, b = fold.prefix(fold.load(values[i]), offsets[i], offsets[i + 1], t, indication,
                              reference, raw, has_raw, since[i], prof[i], pa, par, base[i],
                              quantum[i])
        s, bad[i] = fold.rest(s, j, offsets[i + 1], b, t, indication, reference, raw, has_raw,
                              prof[i], pa, par)
        fold.store(values[i], s)
    return tiled.sum()


def _order(offsets: np.ndarray) -> np.ndarray:
    """Instruments by falling reading count, so a tile's lanes have similar counts (its
    lanes run together as long as the shortest) and the one-at-a-time rest is small."""
    counts = np.diff(offsets)
    if counts.size == 0 or np.all(counts == counts[0]):
        return np.arange(counts.size, dtype=np.int64)
    return np.argsort(-counts, kind="stable").astype(np.int64)


def scan(spec: FleetSpec, checks: Checks, state: S.DriftState,
         params: Params | None = None, *, in_place: bool = False,
         stats: dict | None = None) -> S.DriftState:
    """Fold `checks` into a copy of `state` and return it. in_place=True folds into `state`
    itself (no copy: for fleets whose state is large; after an InputError raised by the
    kernel, such a state is then undefined). `stats`, if given, receives "readings" and
    "tiled" (of them, those folded on the vector path, tiles.py)."""
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
    pr = spec.profiles
    for p in range(pr.start.shape[0] - 1):  # mpe_q counts bounds below the load
        if np.any(np.diff(pr.upper[pr.start[p]:pr.start[p + 1]]) < 0):
            raise InputError(f"profiles.upper: band bounds of profile {p} must rise")
    if np.any(spec.quantum <= 0):
        raise InputError(f"quantum: e must be positive (instrument {int(np.argmin(spec.quantum))})")
    if np.any(state.values[known, S.SIGMA] <= 0):
        raise InputError("sigma: a known sigma must be positive")
    out = state if in_place else state.copy()
    bad = np.full(n_inst, -1, dtype=np.int64)
    pa = (pr.start, pr.upper, pr.fixed_q, pr.coef, pr.at_q, pr.emin_q)
    tiled = _scan(_order(offsets), offsets, t, indication, reference, raw, has_raw, spec.since,
                  spec.quantum, pr.index, pa, params.vector_tuple(), out.values, out.base, bad)
    if stats is not None:
        stats["readings"], stats["tiled"] = n, int(tiled)
    if np.any(bad >= 0):
        i = int(np.argmax(bad >= 0))
        raise InputError(f"t: readings of instrument {i} go back in time at row {bad[i]} "
                         f"(each instrument's rows must be in time order, also across batches)")
    return out
