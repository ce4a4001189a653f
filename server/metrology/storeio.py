"""The drift engine's columns (docs/metrology.md) read from a metrotrace store.

Invariant: everything comes through the store's own interface (`Store.registry()` and
`Store.records()`, server/store/rows.py) and leaves as io.py's shapes: a list of
Instrument plus verified/due arrays, and {kind: io.Grouped} of int64 columns, so the
kernels cannot tell a store from a file. Records are paged in the store's (t, node, seq)
order; a record whose instrument is not in the registry, whose unit is not the
registry's, or whose time is the node's uptime because its clock was never set (tq 0:
it has no place on the fleet's time axis), is skipped and counted (a morning report must
not fail on one stray node), never guessed at.

Store instrument -> MPE table: `type` picks the table (TYPE_TABLES, overridable), the
store's `accuracy_class` is the class, and for volume tables the store's `min` is the
minimum measured quantity (MMQ). A dispense record's pulses and K-factor are in its
`extra` JSON (server/ingest/columns.py keeps fields without a column there).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from metrotrace.server.metrology import io
from metrotrace.server.metrology.errors import InstrumentError
from metrotrace.server.metrology.mpe import Instrument
from metrotrace.server.metrology.normalise import RAW_NONE

CHECK, DISPENSE, ZERO = 3, 2, 4  # record kinds (firmware/metro/wire/record.py)
TQ_UNSET = 0  # time quality: the node's clock was never set, t is its uptime
CLOCK_UNSET = "clock not set (t is the node's uptime)"
KIND_NAMES = {CHECK: "check", ZERO: "zero", DISPENSE: "dispense"}
TYPE_TABLES = {"NAWI": "oiml-r76", "fuel_dispenser": "oiml-r117"}
VOLUME_TABLES = ("oiml-r117", "cn-jjg443", "ca-mc-dispenser")
PAGE = 50_000  # records per store query


@dataclass
class Loaded:
    instruments: list[Instrument]
    sites: list[str]
    verified: np.ndarray  # int64 UTC ms (0: none)
    due: np.ndarray  # float64 UTC ms (NaN: none)
    data: dict[str, io.Grouped]
    skipped: Counter = field(default_factory=Counter)  # reason -> records


def registry(store, type_tables: Mapping[str, str] | None = None):
    """Store instruments -> (instruments, sites, verified_ms, due_ms); withdrawn ones are
    left out. An instrument type with no table raises InstrumentError naming it."""
    type_tables = {**TYPE_TABLES, **(type_tables or {})}
    rows = [r for r in store.registry()["instruments"] if r.status != "withdrawn"]
    instruments, sites = [], []
    for r in rows:
        table = type_tables.get(r.type)
        if table is None:
            raise InstrumentError(f"type: no MPE table for instrument type {r.type!r} "
                                  f"({r.id}); name one with --table {r.type}=TABLE")
        mmq = int(r.min) if table in VOLUME_TABLES and r.min else None
        instruments.append(Instrument(r.id, table, r.accuracy_class, r.unit, int(r.e), mmq))
        sites.append(r.site)
    verified = np.array([r.verified_on or 0 for r in rows], dtype=np.int64)
    due = np.array([np.nan if r.verification_due is None else r.verification_due
                    for r in rows], dtype=np.float64)
    return instruments, sites, verified, due


def _pages(store, kinds, page: int):
    """Every record of `kinds`, in (t, node, seq) order, `page` at a time."""
    t0, last = None, None
    while True:
        got = store.records(kinds=kinds, t0=t0, limit=page)
        new = got if last is None else [r for r in got if (r.t, r.node, r.seq) > last]
        yield from new
        if len(got) < page:
            return
        if new:
            last, t0 = (new[-1].t, new[-1].node, new[-1].seq), new[-1].t
        else:  # a full page of rows already read: they all share t0, so read more at once
            page *= 2


def load(store, type_tables: Mapping[str, str] | None = None, page: int = PAGE) -> Loaded:
    """Registry and check / zero / dispense records of a store -> the engine's columns."""
    instruments, sites, verified, due = registry(store, type_tables)
    index = {inst.id: i for i, inst in enumerate(instruments)}
    units = [inst.unit for inst in instruments]
    cols: dict[str, dict[str, list]] = {k: {"i": [], "t": [], "a": [], "b": [], "c": []}
                                        for k in KIND_NAMES.values()}
    skipped: Counter = Counter()
    for r in _pages(store, list(KIND_NAMES), page):
        if r.tq == TQ_UNSET:
            skipped[CLOCK_UNSET] += 1
            continue
        i = index.get(r.inst)
        if i is None:
            skipped["instrument not in the registry"] += 1
            continue
        if r.unit != units[i]:
            skipped["unit differs from the registry"] += 1
            continue
        kind = KIND_NAMES[r.kind]
        c = cols[kind]
        c["i"].append(i)
        c["t"].append(r.t)
        c["a"].append(r.value)
        if kind == "dispense":
            extra = json.loads(r.extra or "{}")
            c["b"].append(extra.get("pulses", 0))
            c["c"].append(extra.get("kfactor", 0))
        else:
            c["b"].append(0 if r.reference is None else r.reference)
            c["c"].append(RAW_NONE if r.raw is None else r.raw)
    names = {"check": ("indication", "reference", "raw"), "zero": ("indication", None, "raw"),
             "dispense": ("volume", "pulses", "kfactor")}
    data = {}
    for kind, c in cols.items():
        arrays = {name: np.array(c[key], dtype=np.int64)
                  for name, key in zip(names[kind], "abc", strict=True) if name}
        data[kind] = io.group(np.array(c["i"], dtype=np.int64), np.array(c["t"], np.int64),
                              arrays, len(instruments))
    return Loaded(instruments, sites, verified, due, data, skipped)
