"""Maximum permissible error of an instrument at a load, exactly, from the tables.

Invariant: legal values stay exact. Loads are integers in the instrument's base unit, the
MPE is a `Fraction` of that unit, and the kernels get integer profiles whose MPE numerators
are over `SCALE` (so "error within MPE" is an integer comparison, never a float one).
Boundary rule (R 76): `m <= 500 e` is the lower band; the tables say which bounds are
inclusive. `None` means the table has no limit at that load ("not covered").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from numba import njit

from metrotrace.server.metrology.errors import InstrumentError
from metrotrace.server.metrology.tables import Band, Table

# MPE numerators in the kernels are over SCALE base units: 2 (half e) x 10,000 (basis
# points) covers every value in the built-in tables exactly.
SCALE = 20_000
UNCOVERED = -1
INT64_MAX = np.iinfo(np.int64).max
GRAMS = {"mg": Fraction(1, 1000), "g": Fraction(1), "kg": Fraction(1000)}
PER_LITRE = {"mL": 1000, "L": 1}


@dataclass(frozen=True)
class Instrument:
    """Registry facts the MPE depends on. Quantities are integers in `unit`."""

    id: str
    table: str
    accuracy_class: str
    unit: str
    e: int  # verification scale interval e (scales) or indicating interval d (dispensers)
    mmq: int | None = None  # minimum measured quantity (dispensers)
    line: str = "A"  # R 117 line: "A" measuring system, "B" meter alone


def _spec(inst: Instrument, tables: dict[str, Table]):
    table = tables.get(inst.table)
    if table is None:
        raise InstrumentError(f"table: unknown MPE table {inst.table!r} for {inst.id}")
    cls = table.classes.get(inst.accuracy_class)
    if cls is None:
        raise InstrumentError(f"accuracy_class: {inst.accuracy_class!r} is not a class of "
                              f"{table.id} (has {sorted(table.classes)}) for {inst.id}")
    units = GRAMS if table.kind == "weighing" else PER_LITRE
    if inst.unit not in units:
        raise InstrumentError(f"unit: {inst.unit!r} does not fit {table.kind} table {table.id}")
    if isinstance(inst.e, bool) or not isinstance(inst.e, int) or inst.e <= 0:
        raise InstrumentError(f"e: expected a positive integer, got {inst.e!r} for {inst.id}")
    if cls.lines and inst.line not in cls.lines:
        raise InstrumentError(f"line: {inst.line!r} not in {sorted(cls.lines)} for {inst.id}")
    if (table.emin or table.load_unit == "mmq") and (not inst.mmq or inst.mmq <= 0):
        raise InstrumentError(f"mmq: table {table.id} needs the minimum measured quantity "
                              f"for {inst.id}")
    return table, cls


def _load_unit(table: Table, inst: Instrument) -> int:
    if table.load_unit == "e":
        return inst.e
    if table.load_unit == "mmq":
        return int(inst.mmq or 0)
    return PER_LITRE[inst.unit]


def _mpe_unit(table: Table, inst: Instrument) -> int:
    return inst.e if table.mpe_unit == "e" else PER_LITRE[inst.unit]


def _pct(band: Band, lines: dict[str, Fraction], line: str) -> Fraction:
    return band.pct if band.line_factor is None else band.line_factor * lines[line]


def _select(table: Table, bands, load: int, lu: int) -> Band | None:
    if table.min_load is not None and load < table.min_load * _litres(table, lu):
        return None
    for band in bands:
        if band.upto is None:
            return band
        bound = band.upto * lu
        if load <= bound if band.inclusive else load < bound:
            return band
    return None


def _litres(table: Table, lu: int) -> int:
    return lu if table.load_unit == "L" else 1


def _band_mpe(table, cls, inst, band: Band, load: int, line: str) -> Fraction:
    lu, mu = _load_unit(table, inst), _mpe_unit(table, inst)
    volume = max(Fraction(load), band.apply_at * lu)
    return band.mpe * mu + _pct(band, cls.lines, line) / 100 * volume


def emin(inst: Instrument, tables: dict[str, Table]) -> Fraction | None:
    """Emin of R 117 (line A only), or None where the table has no such rule."""
    table, cls = _spec(inst, tables)
    if table.emin != "mmq" or inst.line != "A":
        return None
    litre = PER_LITRE[inst.unit]
    mmq = int(inst.mmq or 0)
    if mmq >= 2 * litre:
        value = 2 * Fraction(mmq) * cls.lines["A"] / 100
    else:
        band = _select(table, cls.bands, mmq, _load_unit(table, inst))
        value = 2 * _band_mpe(table, cls, inst, band, mmq, "A") if band else Fraction(0)
    if 2 * inst.e > value:
        raise InstrumentError(f"e: indicating interval {inst.e} {inst.unit} exceeds Emin/2 = "
                              f"{value / 2} {inst.unit} (R 117: Emin >= 2 R) for {inst.id}")
    return value


def mpe(inst: Instrument, load: int, tables: dict[str, Table], *,
        in_service: bool = True) -> Fraction | None:
    """MPE (a positive Fraction of the base unit) at `load`, or None if not covered."""
    table, cls = _spec(inst, tables)
    load = abs(int(load))
    band = _select(table, cls.bands, load, _load_unit(table, inst))
    if band is None:
        return None
    value = _band_mpe(table, cls, inst, band, load, inst.line)
    floor = emin(inst, tables)
    if floor is not None:
        value = max(value, floor)
    return value * table.in_service_factor if in_service else value


def min_capacity(inst: Instrument, tables: dict[str, Table]) -> int | None:
    """Min (R 76 minimum capacity) for scales, the MMQ for dispensers; base units."""
    table, cls = _spec(inst, tables)
    if table.kind == "volume":
        return inst.mmq
    e_grams = inst.e * GRAMS[inst.unit]
    for upto, min_e in cls.min_rules:
        if upto is None or e_grams <= upto:
            return min_e * inst.e
    return None


def _exact(value: Fraction, what: str, inst: Instrument) -> int:
    if value.denominator != 1:
        raise InstrumentError(f"unit: {what} = {value} is not exact in 1/{SCALE} "
                              f"{inst.unit}; use a finer base unit for {inst.id}")
    return int(value)


@dataclass(frozen=True)
class Profiles:
    """Integer MPE profiles for the kernels: instrument i uses bands
    start[index[i]] .. start[index[i] + 1]; MPE_q(a) = max(emin_q, fixed_q + max(coef * a,
    at_q)) for the first band with a <= upper; fixed_q == UNCOVERED marks "no limit"."""

    index: np.ndarray  # int64 per instrument
    start: np.ndarray  # int64 per profile + 1
    upper: np.ndarray  # int64 per band, inclusive bound on |load|
    fixed_q: np.ndarray
    coef: np.ndarray
    at_q: np.ndarray
    emin_q: np.ndarray  # int64 per profile


def _profile(inst: Instrument, tables: dict[str, Table], in_service: bool) -> list[tuple]:
    table, cls = _spec(inst, tables)
    lu, mu = _load_unit(table, inst), _mpe_unit(table, inst)
    factor = (table.in_service_factor if in_service else 1) * SCALE
    rows = []
    if table.min_load is not None:
        rows.append((math.ceil(table.min_load * _litres(table, lu)) - 1, UNCOVERED, 0, 0))
    for band in cls.bands:
        if band.upto is None:
            upper = int(INT64_MAX)
        else:
            bound = band.upto * lu
            upper = math.floor(bound) if band.inclusive else math.ceil(bound) - 1
        coef = _pct(band, cls.lines, inst.line) / 100 * factor
        rows.append((upper, _exact(band.mpe * mu * factor, "band mpe", inst),
                     _exact(coef, "percentage per unit", inst),
                     _exact(coef * band.apply_at * lu, "apply_at", inst)))
    rows.append((int(INT64_MAX), UNCOVERED, 0, 0))  # above the last band: no limit
    floor = emin(inst, tables)
    return [(0 if floor is None else _exact(floor * factor, "Emin", inst),), *rows]


def compile_profiles(instruments: list[Instrument], tables: dict[str, Table], *,
                     in_service: bool = True) -> Profiles:
    """Instruments -> integer profiles (identical profiles shared)."""
    keys: dict[tuple, int] = {}
    index = np.empty(len(instruments), dtype=np.int64)
    for i, inst in enumerate(instruments):
        key = tuple(_profile(inst, tables, in_service))
        index[i] = keys.setdefault(key, len(keys))
    start, upper, fixed_q, coef, at_q, emin_q = [0], [], [], [], [], []
    for key in keys:  # dicts keep insertion order: profile n is the n-th key
        emin_q.append(key[0][0])
        for row in key[1:]:
            upper.append(row[0])
            fixed_q.append(row[1])
            coef.append(row[2])
            at_q.append(row[3])
        start.append(len(upper))

    def arr(values):
        return np.asarray(values, dtype=np.int64)

    return Profiles(index, arr(start), arr(upper), arr(fixed_q), arr(coef), arr(at_q),
                    arr(emin_q))


@njit(cache=True, inline="always")
def mpe_q(p, load, start, upper, fixed_q, coef, at_q, emin_q):
    """Kernel twin of mpe(): the MPE numerator over SCALE for profile p, or UNCOVERED.
    A profile's `upper` bounds rise (compile_profiles writes them so; the kernels' wrapper
    checks), so the band is found by counting the bounds below the load: a loop of fixed
    length per profile with no data-dependent exit, which a random mix of loads cannot
    mispredict."""
    a = abs(load)
    b = start[p]
    for u in range(start[p], start[p + 1]):
        b += np.int64(a > upper[u])
    fixed = fixed_q[b]
    q = max(emin_q[p], fixed + max(coef[b] * a, at_q[b]))
    return UNCOVERED if fixed == UNCOVERED else q
