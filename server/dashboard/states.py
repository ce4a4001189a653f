"""Fleet states of the stored instruments, as the dashboard shows them: the metrology
engine's report over the store (metrology.storeio + metrology.analysis), with the registry
facts, the reasons in words and a sparkline of recent checks.

Invariant: every state here is the engine's, computed with the same drift settings
(metrology/settings.py: kernel parameters, known check sigma per instrument) that the
monitor storing the alerts uses, so the page and the alerts agree; this module never
decides a state, except `unknown` when the engine cannot run (an instrument the MPE tables
do not cover: the reason names the field) and `withdrawn` for instruments the engine
leaves out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from fractions import Fraction

from metrotrace.server.metrology import (
    InstrumentError,
    MetrologyError,
    analysis,
    storeio,
    tables,
)
from metrotrace.server.metrology.mpe import Instrument, mpe
from metrotrace.server.metrology.settings import Settings

from ..store.rows import InstrumentRow, Store

# Registry `type` -> MPE table, beyond metrology's own (storeio.TYPE_TABLES); a type that
# is itself a table id is taken as it is.
TYPE_ALIASES = {"nawi": "oiml-r76", "scale": "oiml-r76", "dispenser": "oiml-r117"}
MAX_RECORDS = 2_000_000  # records one instrument page or alarm reads at most
SPARK = 40  # last normalised check errors kept per instrument for the overview
UNKNOWN = "unknown"  # the engine could not analyse the instrument (reason given)
WITHDRAWN = "withdrawn"  # registry status withdrawn: the engine leaves it out


def type_tables(store: Store, tabs: dict) -> dict[str, str]:
    out = dict(TYPE_ALIASES)
    for row in store.registry()["instruments"]:
        if row.type in tabs:
            out[row.type] = row.type
    return out


def metrology_instrument(row: InstrumentRow, tabs: dict) -> Instrument:
    """The registry row as the engine's Instrument (as storeio reads it); raises
    MetrologyError naming the field that does not fit."""
    table = {**storeio.TYPE_TABLES, **TYPE_ALIASES}.get(row.type, row.type)
    if table not in tabs:
        raise InstrumentError(f"type: no MPE table for instrument type {row.type!r}")
    mmq = int(row.min) if tabs[table].kind == "volume" and row.min else None
    inst = Instrument(row.id, table, row.accuracy_class, row.unit, int(row.e), mmq)
    mpe(inst, row.max, tabs)  # refuses what the table cannot cover, naming the field
    return inst


@dataclass
class Fleet:
    """The engine's report over a store, and the columns it was computed from (the
    instrument pages fold the same columns, so their charts count what the report counts)."""

    rows: list[dict]
    loaded: storeio.Loaded | None
    settings: Settings

    def index(self, instrument: str) -> int | None:
        if self.loaded is None:
            return None
        return next((i for i, inst in enumerate(self.loaded.instruments)
                     if inst.id == instrument), None)


def fleet(store: Store, now_ms: int, tabs: dict | None = None,
          settings: Settings | None = None, tables_dir=None) -> Fleet:
    """One row per registered instrument: registry facts, the engine's state and figures
    (metrology.analysis.report over metrology.storeio.load, with `settings`), the reasons
    in words, and the last normalised check errors (`spark`)."""
    settings = settings or Settings()
    tabs = tabs if tabs is not None else tables.load(tables_dir)
    registry = store.registry()["instruments"]
    rows: dict[str, dict] = {}
    problem = loaded = None
    try:
        loaded = storeio.load(store, type_tables(store, tabs))
        ids = [inst.id for inst in loaded.instruments]
        found = analysis.report(loaded.instruments, loaded.verified, loaded.due, loaded.data,
                                now_ms, tables_dir=tables_dir, params=settings.params,
                                sigma=settings.sigma(ids))
        checks = loaded.data["check"]
        for i, (inst, out) in enumerate(zip(loaded.instruments, found, strict=True)):
            out["spark"] = _spark(inst, int(loaded.verified[i]), checks, i, tabs)
            rows[inst.id] = out
    except MetrologyError as exc:  # one instrument the tables cannot cover stops the engine
        problem, loaded = str(exc), None
    result = []
    for row in registry:
        out = rows.get(row.id)
        if out is None:
            state = WITHDRAWN if row.status == "withdrawn" else UNKNOWN
            out = {"instrument": row.id, "state": state, "due_ms": row.verification_due}
        out.update(registry_facts(row))
        out["reasons"] = reasons(out, now_ms, problem)
        result.append(out)
    return Fleet(result, loaded, settings)


def report(store: Store, now_ms: int, tabs: dict | None = None,
           settings: Settings | None = None, tables_dir=None) -> list[dict]:
    """fleet(...).rows: what the overview shows."""
    return fleet(store, now_ms, tabs, settings, tables_dir).rows


def registry_facts(row: InstrumentRow) -> dict:
    return {"site": row.site, "type": row.type, "accuracy_class": row.accuracy_class,
            "max": row.max, "min": row.min, "e": row.e, "unit": row.unit,
            "node": row.node.hex() if row.node else None, "verified_on": row.verified_on,
            "verification_due": row.verification_due, "registry_status": row.status}


def _spark(inst: Instrument, since: int, checks, i: int, tabs: dict) -> list:
    lo, hi = int(checks.offsets[i]), int(checks.offsets[i + 1])
    cols = checks.columns
    out, limits = [], {}
    for j in range(max(lo, hi - SPARK), hi):
        if cols["t"][j] < since:
            continue
        ref = int(cols["reference"][j])
        if ref not in limits:
            limits[ref] = mpe(inst, ref, tabs)
        err = int(cols["indication"][j]) - ref
        out.append(None if not limits[ref] else round(float(Fraction(err) / limits[ref]), 4))
    return out


def _day(ms: float | None) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d") if ms else "?"


def reasons(row: dict, now_ms: int, problem: str | None = None) -> list[str]:
    """Why the instrument is in its state, most serious first, in a regulator's words."""
    if row["state"] == WITHDRAWN:
        return ["withdrawn from service"]
    if row["state"] == UNKNOWN:
        return [f"not analysed: {problem}" if problem else "not analysed"]
    out = []
    if row.get("out"):
        out.append(f"{row['out']} check(s) outside the in-service MPE since "
                   f"{_day(row.get('first_alarm_ms'))}")
    if row.get("zero_alarms"):
        out.append(f"{row['zero_alarms']} zero-reading alarm(s)")
    if row.get("cusum") or row.get("ewma"):
        signals = f"CUSUM signalled {row.get('cusum', 0)}×, EWMA {row.get('ewma', 0)}×"
        out.append(f"drift confirmed: {signals}" if row.get("confirmed", 1)
                   else f"a chart signal not confirmed yet ({signals})")
    if row.get("pulse_anomalies"):
        out.append(f"{row['pulse_anomalies']} dispense(s) where pulses and volume disagree "
                   "by more than 0.6 %")
    due = row.get("due_ms")
    if due is not None and due < now_ms:
        out.append(f"verification overdue since {_day(due)}")
    if row.get("max_abs_r") is not None and row["max_abs_r"] > 0.8 and not row.get("out"):
        out.append(f"errors up to {row['max_abs_r']:.2f} × MPE")
    if row.get("crossing_ms") is not None and row["crossing_ms"] >= now_ms:
        out.append(f"predicted to cross its MPE on {_day(row['crossing_ms'])} "
                   f"(95 %: {_day(row.get('crossing_lo_ms'))} – {_day(row.get('crossing_hi_ms'))})")
    return out
