"""A trace as column arrays, and the same trace written out as the rows the API returns.

Invariant: `TraceColumns` holds the whole trace — every object reached, every holder
(location, lot, quantity received, first and last time), every transformation row and
every sale (time, place, lot, quantity, instrument, measured quantity and unit, eventID,
rawData, and the instrument's tolerance state then) — as integer columns whose strings
are codes into the index's name tables (dictionary encoding: the URN of node n is
`index.n_urn.array[n]`). Rows are in the order of their numeric keys (time, then
event id; holders by first time, then location code). `materialize`
writes them out exactly as query.py's SQL path does, same rows in the same order: ties
on the leading key (a time) are put in the SQL path's string order, run by run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

import numpy as np

from .touches import ROLES, TouchIndex
from .vocab import unit_of

_IN = ROLES.index("in")
_SALE_KEY = itemgetter("time", "event", "epc")
_HOLDER_KEY = itemgetter("first", "location", "epc")
_TRANSFORM_KEY = itemgetter("time", "event")


def ordered(lead: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Indices sorting rows by (lead, second), integer columns; rows equal in both keep
    no particular order (`materialize` orders them by their strings)."""
    if lead.size < 2:
        return np.arange(lead.size)
    lo, span = int(lead.min()), int(second.max()) - int(second.min()) + 1
    if (int(lead.max()) - lo + 1) * span < 1 << 62:  # one packed key: one quicksort,
        # several times faster than a stable multi-key sort
        return np.argsort((lead - lo) * span + (second - second.min()))
    return np.lexsort((second, lead))


@dataclass
class TraceColumns:
    start: str
    forward: bool
    nodes: np.ndarray  # ids of reached objects that some event touched
    index: TouchIndex  # the name tables the codes point into
    holders: dict[str, np.ndarray]  # location, node, received, dim, first, last
    sales: dict[str, np.ndarray]  # event, time, location, node, qty, dim, instrument,
    # measured, munit, tolerance (a code into state_names, -1: unknown)
    transforms: dict[str, np.ndarray]  # event, time, location, node, role, qty, dim
    producers: dict[str, np.ndarray] | None  # backward only: event, time, location, node,
    # step
    state_names: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, int]:
        return {"objects": int(self.nodes.size), "holders": int(self.holders["node"].size),
                "sales": int(self.sales["event"].size),
                "sale_points": int(np.unique(self.sales["location"]).size),
                "transformation_rows": int(self.transforms["event"].size)}

    def ask(self, oracle: Any) -> None:
        """Tolerance states from any ToleranceOracle (one call for all instruments when
        it has `states_many`)."""
        names = self.index.names["instrument"]
        inst, times = self.sales["instrument"], self.sales["time"]
        wanted: dict[str, list[int]] = {}
        for code in np.unique(inst[inst > 0]).tolist():
            if names[code]:
                wanted[names[code]] = times[inst == code].tolist()
        many = getattr(oracle, "states_many", None)
        found = many(wanted) if many else {i: oracle.states(i, t) for i, t in wanted.items()}
        codes: dict[str | None, int] = {None: -1}
        out = self.sales["tolerance"]
        for name, states in found.items():
            where = np.flatnonzero(inst == self.index.codes["instrument"][name])
            for row, state in zip(where.tolist(), states, strict=True):
                if state not in codes:
                    codes[state] = len(self.state_names)
                    self.state_names.append(state)
                out[row] = codes[state]


def _names(values: list) -> np.ndarray:
    out = np.empty(len(values), object)
    out[:] = values
    return out


def _nullable(values: np.ndarray) -> list:
    # -1 stands for NULL in the integer columns
    out = values.astype(object)
    out[values < 0] = None
    return out.tolist()


def _ties_in_order(lead: np.ndarray, rows: list[dict], key: Any) -> list[dict]:
    # rows are sorted by their numeric keys; where the leading key ties, the SQL path's
    # order is by strings: re-sort each such run by the full key (stable)
    if lead.size < 2:
        return rows
    change = np.flatnonzero(lead[1:] != lead[:-1]) + 1
    bounds = np.concatenate([[0], change, [lead.size]])
    for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
        if hi - lo > 1:
            rows[lo:hi] = sorted(rows[lo:hi], key=key)
    return rows


def materialize(cols: TraceColumns):
    from .query import Trace  # the Trace dataclass lives with the SQL path

    t = cols.index
    urn = t.n_urn.array
    place = t.table("location")
    units = _names([unit_of(d) for d in t.names["dim"]])
    trace = Trace(cols.start, "forward" if cols.forward else "backward",
                  nodes=sorted(urn[cols.nodes].tolist()))
    h = cols.holders
    trace.holders = _ties_in_order(h["first"], [
        {"location": loc, "epc": epc, "received": r, "unit": unit, "first": f, "last": la}
        for loc, epc, r, unit, f, la in zip(
            place[h["location"]].tolist(), urn[h["node"]].tolist(),
            h["received"].tolist(), units[h["dim"]].tolist(), h["first"].tolist(),
            h["last"].tolist(), strict=True)], _HOLDER_KEY)
    s = cols.sales
    states = _names(cols.state_names + [None])  # code -1 → the last entry: None
    trace.sales = _ties_in_order(s["time"], [
        {"event": e, "time": tm, "location": loc, "epc": epc, "qty": q, "unit": unit,
         "instrument": inst, "measured": m, "measured_unit": mu, "raw": raw,
         "tolerance": state}
        for e, tm, loc, epc, q, unit, inst, m, mu, raw, state in zip(
            t.e_id.array[s["event"]].tolist(), s["time"].tolist(),
            place[s["location"]].tolist(), urn[s["node"]].tolist(),
            _nullable(s["qty"]), units[s["dim"]].tolist(),
            t.table("instrument")[s["instrument"]].tolist(), _nullable(s["measured"]),
            t.table("munit")[s["munit"]].tolist(), t.e_raw.array[s["event"]].tolist(),
            states[s["tolerance"]].tolist(), strict=True)], _SALE_KEY)
    trace.transformations = _transformations(cols, urn, place, units)
    if cols.producers is not None:
        p = cols.producers
        trace.producers = _ties_in_order(p["time"], [
            {"epc": epc, "event": e, "time": tm, "location": loc, "step": step}
            for epc, e, tm, loc, step in zip(
                urn[p["node"]].tolist(), t.e_id.array[p["event"]].tolist(),
                p["time"].tolist(), place[p["location"]].tolist(),
                t.table("step")[p["step"]].tolist(), strict=True)], _SALE_KEY)
    return trace


def _transformations(cols: TraceColumns, urn: np.ndarray, place: np.ndarray,
                     units: np.ndarray) -> list[dict]:
    # rows come grouped by event, each event's inputs before its outputs
    tr = cols.transforms
    event = tr["event"]
    if not event.size:
        return []
    items = [{"epc": epc, "qty": q, "unit": unit} for epc, q, unit in zip(
        urn[tr["node"]].tolist(), _nullable(tr["qty"]), units[tr["dim"]].tolist(),
        strict=True)]
    starts = np.concatenate([[0], np.flatnonzero(event[1:] != event[:-1]) + 1])
    ends = np.append(starts[1:], event.size)
    mids = starts + np.add.reduceat((tr["role"] == _IN).astype(np.int64), starts)
    entries = [{"event": e, "time": tm, "location": loc, "inputs": items[lo:mid],
                "outputs": items[mid:hi]}
               for e, tm, loc, lo, mid, hi in zip(
                   cols.index.e_id.array[event[starts]].tolist(), tr["time"][starts].tolist(),
                   place[tr["location"][starts]].tolist(), starts.tolist(), mids.tolist(),
                   ends.tolist(), strict=True)]
    for entry in entries:  # most have one or two of each: skip the call
        for side in (entry["inputs"], entry["outputs"]):
            if len(side) > 1:
                side.sort(key=_SIDE_KEY)
    return _ties_in_order(tr["time"][starts], entries, _TRANSFORM_KEY)


def _side_key(item: dict) -> tuple:
    return item["epc"], item["qty"] or 0


_SIDE_KEY = _side_key
