"""A trace as column arrays: classify gathered touch rows, then write them out.

Invariant: `classify` applies exactly the rules of query.py's SQL path: a transformation
row belongs to its transformation; an `obs` row of a sale step is a sale; any other row
at a location whose step receives (or that names a container's parent) adds to that
holder's lot. It does this with whole-array operations, so its cost grows with the number
of rows, not with Python work per row. `materialize` adds what the arrays do not hold
(URNs, eventIDs, rawData, producers) with one query each.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .touches import ROLES, TouchIndex
from .vocab import RECEIVE_STEPS, SALE_STEPS, unit_of

_OBS, _IN, _PARENT = ROLES.index("obs"), ROLES.index("in"), ROLES.index("parent")


@dataclass
class TraceColumns:
    start: str
    forward: bool
    nodes: np.ndarray  # ids of reached objects that some event touched
    holders: dict[str, np.ndarray]  # location, node, received, dim, first, last
    sales: dict[str, np.ndarray]  # event, time, location, node, qty, dim, instrument, ...
    transforms: dict[str, np.ndarray]  # event, time, location, node, role, qty, dim

    def summary(self) -> dict[str, int]:
        return {"objects": int(self.nodes.size), "holders": int(self.holders["node"].size),
                "sales": int(self.sales["event"].size),
                "sale_points": int(np.unique(self.sales["location"]).size),
                "transformation_rows": int(self.transforms["event"].size)}


def classify(rows: dict[str, np.ndarray], index: TouchIndex, start: str,
             forward: bool) -> TraceColumns:
    if not rows:
        empty = np.zeros(0, np.int64)
        rows = {k: empty for k in ("node", "event", "role", "qty", "dim", "is_t", "time",
                                   "step", "location", "instrument", "measured", "munit")}
    is_t = rows["is_t"].astype(bool)
    sale_codes = [index.code("step", s) for s in SALE_STEPS]
    receive_codes = [index.code("step", s) for s in RECEIVE_STEPS]
    sale = ~is_t & np.isin(rows["step"], sale_codes) & (rows["role"] == _OBS)
    held = (~is_t & ~sale & (rows["location"] != 0)
            & (np.isin(rows["step"], receive_codes) | (rows["role"] == _PARENT)))
    return TraceColumns(
        start, forward, rows["touched"] if "touched" in rows else np.unique(rows["node"]),
        _holders(rows, held),
        {k: rows[k][sale] for k in ("event", "time", "location", "node", "qty", "dim",
                                    "instrument", "measured", "munit")},
        {k: rows[k][is_t] for k in ("event", "time", "location", "node", "role", "qty",
                                    "dim")})


def _holders(rows: dict[str, np.ndarray], mask: np.ndarray) -> dict[str, np.ndarray]:
    # one sort by (location, node), then every sum / min / max is a reduceat over runs
    loc, node = rows["location"][mask].astype(np.int64), rows["node"][mask]
    if not node.size:
        empty = np.zeros(0, np.int64)
        return {k: empty for k in ("location", "node", "received", "dim", "first", "last")}
    key = loc * (int(node.max()) + 1) + node
    order = np.argsort(key, kind="stable")
    key = key[order]
    runs = np.flatnonzero(np.concatenate([[True], key[1:] != key[:-1]]))
    qty, times = rows["qty"][mask][order], rows["time"][mask][order]
    return {"location": loc[order][runs], "node": node[order][runs],
            "received": np.add.reduceat(np.where(qty > 0, qty, 0), runs),
            "dim": np.maximum.reduceat(rows["dim"][mask][order].astype(np.int64), runs),
            "first": np.minimum.reduceat(times, runs), "last": np.maximum.reduceat(times, runs)}


def _lookup(store: Any, sql: str, ids: list[int]) -> list[tuple]:
    if not ids:
        return []
    if store.dialect == "postgresql":
        return store.rows(sql + " = ANY(?)", (ids,))
    # ids are ints: a JSON array by join is several times faster than json.dumps
    return store.rows(sql + " IN (SELECT value FROM json_each(?))",
                      ("[" + ",".join(map(str, ids)) + "]",))


def materialize(store: Any, cols: TraceColumns, index: TouchIndex):
    from .query import Trace  # the Trace dataclass lives with the SQL path

    name = index.names
    urn = dict(_lookup(store, "SELECT id, urn FROM trace_node WHERE id",
                       cols.nodes.tolist()))
    event_ids = np.unique(np.concatenate([cols.sales["event"], cols.transforms["event"]]))
    events = {i: (e, raw) for i, e, raw in _lookup(
        store, "SELECT id, event_id, raw_ref FROM trace_event WHERE id", event_ids.tolist())}
    trace = Trace(cols.start, "forward" if cols.forward else "backward",
                  nodes=sorted(urn.values()))
    h = cols.holders
    units = [unit_of(d) for d in name["dim"]]  # by dim code: one lookup per row, no call
    places, instruments, munits = name["location"], name["instrument"], name["munit"]
    trace.holders = [{"location": places[loc], "epc": urn[node], "received": r,
                      "unit": units[d], "first": f, "last": la}
                     for loc, node, r, d, f, la in zip(
                         h["location"].tolist(), h["node"].tolist(), h["received"].tolist(),
                         h["dim"].tolist(), h["first"].tolist(), h["last"].tolist(),
                         strict=True)]
    s = cols.sales
    trace.sales = [{"event": events[ev][0], "time": t, "location": places[loc],
                    "epc": urn[node], "qty": None if q < 0 else q, "unit": units[d],
                    "instrument": instruments[inst], "measured": None if m < 0 else m,
                    "measured_unit": munits[mu], "raw": events[ev][1], "tolerance": None}
                   for ev, t, loc, node, q, d, inst, m, mu in zip(
                       *(s[k].tolist() for k in ("event", "time", "location", "node", "qty",
                                                 "dim", "instrument", "measured", "munit")),
                       strict=True)]
    transforms: dict[int, dict[str, Any]] = {}
    tr = cols.transforms
    for ev, t, loc, node, role, q, d in zip(
            *(tr[k].tolist() for k in ("event", "time", "location", "node", "role", "qty",
                                       "dim")), strict=True):
        entry = transforms.get(ev)
        if entry is None:
            entry = transforms[ev] = {"event": events[ev][0], "time": t,
                                      "location": places[loc], "inputs": [], "outputs": []}
        entry["inputs" if role == _IN else "outputs"].append(
            {"epc": urn[node], "qty": None if q < 0 else q, "unit": units[d]})
    trace.transformations = list(transforms.values())
    if not cols.forward:
        trace.producers = [
            {"epc": u, "event": e, "time": t, "location": loc, "step": step}
            for u, e, t, loc, step in _lookup(
                store, "SELECT n.urn, e.event_id, e.time, e.location, e.biz_step"
                " FROM trace_node n JOIN trace_event e ON e.id = n.origin"
                " JOIN trace_touch t ON t.node = n.id AND t.event = e.id"
                " WHERE e.type <> 'TransformationEvent' AND n.id",
                cols.nodes.tolist())]
    return trace
