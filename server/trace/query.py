"""Traces over stored events: forward, backward, mass balance.

Invariant: a trace reads only committed rows and returns every event that touched a
reached object, classified once: a holder (received, produced or packed at a location),
a transformation, a sale (retail_selling / dispensing, with the instrument that measured
it and that instrument's tolerance state at the sale's time), or a producer (the event
that created an object with no ancestor). Reachability comes from either a recursive CTE
(`method="cte"`) or the in-memory TraceIndex (`method="index"`, index.py); both give the
same rows in the same order.
"""

from __future__ import annotations

import bisect
import json
from dataclasses import asdict, dataclass, field
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Protocol

from .store import TraceStore, gc_paused
from .vocab import RECEIVE_STEPS, SALE_STEPS
from .vocab import unit_of as _unit

if TYPE_CHECKING:
    from .columns import TraceColumns
    from .index import TraceIndex

_ROWS = ("SELECT t.node, n.urn, t.role, t.qty, t.dim, t.via, e.event_id, e.type, e.time,"
         " e.biz_step, e.location, e.instrument, e.measured, e.measured_unit, e.raw_ref,"
         " n.origin = e.id"
         " FROM trace_touch t JOIN trace_event e ON e.id = t.event"
         " JOIN trace_node n ON n.id = t.node")
_CTE = ("WITH RECURSIVE reach(n) AS (SELECT id FROM trace_node WHERE id IN ({starts})"
        " UNION SELECT e.{to} FROM trace_edge e JOIN reach ON e.{frm} = reach.n) ")


class ToleranceOracle(Protocol):
    """The metrology engine's answer: an instrument's tolerance state at times t."""

    def states(self, instrument: str, times: list[int]) -> list[str | None]: ...


class TableTolerance:
    """ToleranceOracle over trace_tolerance (instrument, from_t, state): the state that
    began last at or before t holds; None before the first one."""

    def __init__(self, store: TraceStore):
        self.store = store

    def set_state(self, instrument: str, from_t: int, state: str) -> None:
        self.store.begin_write()
        self.store.execute("DELETE FROM trace_tolerance WHERE instrument = ? AND from_t = ?",
                           (instrument, from_t))
        self.store.execute("INSERT INTO trace_tolerance (instrument, from_t, state)"
                           " VALUES (?, ?, ?)", (instrument, from_t, state))
        self.store.commit()

    def states(self, instrument: str, times: list[int]) -> list[str | None]:
        return self.states_many({instrument: times})[instrument]

    def states_many(self, times: dict[str, list[int]]) -> dict[str, list[str | None]]:
        """states() for many instruments with one query (a fuel recall names hundreds)."""
        history: dict[str, list[tuple[int, str]]] = {i: [] for i in times}
        for instrument, from_t, state in self.store.rows_in(
                "SELECT instrument, from_t, state FROM trace_tolerance WHERE instrument",
                list(times)):
            history[instrument].append((from_t, state))
        out = {}
        for instrument, rows in history.items():
            rows.sort()
            starts = [r[0] for r in rows]
            out[instrument] = [rows[i][1] if i >= 0 else None for i in
                               (bisect.bisect_right(starts, t) - 1 for t in times[instrument])]
        return out


@dataclass
class Trace:
    start: str
    direction: str
    nodes: list[str] = field(default_factory=list)
    holders: list[dict[str, Any]] = field(default_factory=list)
    transformations: list[dict[str, Any]] = field(default_factory=list)
    sales: list[dict[str, Any]] = field(default_factory=list)
    producers: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=1, sort_keys=True)


class Tracer:
    """Forward and backward traces on one store; `method` "index" keeps a TraceIndex."""

    def __init__(self, store: TraceStore, oracle: ToleranceOracle | None = None,
                 method: str = "index", index: TraceIndex | None = None):
        if method not in ("cte", "index"):
            raise ValueError(f"method: expected 'cte' or 'index', got {method!r}")
        self.store = store
        self.oracle = oracle
        self.method = method
        self.index: TraceIndex | None = None
        if method == "index":  # numba and numpy load only for this method
            from .index import TraceIndex

            # a long-lived process passes one shared index; it catches up by event id
            self.index = index if index is not None else TraceIndex()

    def start_nodes(self, start: str) -> list[int]:
        """Node ids for an EPC / lot URN, an eventID (what it touched), or a location."""
        if self.index is not None:
            with self.index.lock:
                self.index.refresh(self.store)
                return self.index.start_nodes(self.store, start)
        node = self.store.node_id(start)
        if node is not None:
            return [node]
        rows = self.store.rows("SELECT DISTINCT t.node FROM trace_touch t JOIN trace_event e"
                               " ON e.id = t.event WHERE e.event_id = ?", (start,))
        if not rows:
            rows = self.store.rows("SELECT DISTINCT t.node FROM trace_touch t JOIN trace_event"
                                   " e ON e.id = t.event WHERE e.location = ?", (start,))
        return [r[0] for r in rows]

    def reach(self, starts: list[int], forward: bool) -> list[int]:
        if not starts:
            return []
        if self.index is not None:
            with self.index.lock:
                self.index.refresh(self.store)
                return self.index.graph.reach(starts, forward).tolist()
        to, frm = ("dst", "src") if forward else ("src", "dst")
        sql = _CTE.format(starts=", ".join(str(int(s)) for s in starts), to=to, frm=frm)
        return [r[0] for r in self.store.rows(sql + "SELECT n FROM reach")]

    def _touches(self, nodes: list[int]) -> list[tuple]:
        if self.store.dialect == "postgresql":
            return self.store.rows(_ROWS + " WHERE t.node = ANY(?)", (nodes,))
        return self.store.rows(_ROWS + " WHERE t.node IN (SELECT value FROM json_each(?))",
                               (json.dumps(nodes),))

    def forward(self, start: str) -> Trace:
        return self._trace(start, forward=True)

    def backward(self, start: str) -> Trace:
        return self._trace(start, forward=False)

    def columns(self, start: str, forward: bool = True) -> TraceColumns:
        """The whole trace as column arrays (index method only), tolerance states
        included: what a recall computes before anything is written out; `materialize`
        turns it into the Trace that forward() / backward() return."""
        if self.index is None:
            raise ValueError("method: columns need method='index'")
        return self.index.trace(self.store, start, forward, self.oracle,
                                table_oracle=isinstance(self.oracle, TableTolerance))

    def _trace(self, start: str, forward: bool) -> Trace:
        if self.index is not None:
            from .columns import materialize

            cols = self.columns(start, forward)
            with gc_paused():
                return materialize(cols)
        nodes = self.reach(self.start_nodes(start), forward)
        trace = Trace(start, "forward" if forward else "backward")
        rows = self._touches(nodes) if nodes else []
        urns: dict[int, str] = {}
        held: dict[tuple[str, str], dict[str, Any]] = {}
        transforms: dict[str, dict[str, Any]] = {}
        for (node, urn, role, qty, dim, _via, event_id, kind, time, step, location,
             instrument, measured, unit, raw_ref, is_origin) in rows:
            urns[node] = urn
            if kind == "TransformationEvent":
                entry = transforms.setdefault(event_id, {
                    "event": event_id, "time": time, "location": location,
                    "inputs": [], "outputs": []})
                entry["inputs" if role == "in" else "outputs"].append(
                    {"epc": urn, "qty": qty, "unit": _unit(dim)})
                continue
            if step in SALE_STEPS and role == "obs":
                trace.sales.append({
                    "event": event_id, "time": time, "location": location, "epc": urn,
                    "qty": qty, "unit": _unit(dim), "instrument": instrument,
                    "measured": measured, "measured_unit": unit, "raw": raw_ref,
                    "tolerance": None})
            elif location is not None and (step in RECEIVE_STEPS or role == "parent"):
                entry = held.setdefault((location, urn), {
                    "location": location, "epc": urn, "received": 0, "unit": _unit(dim),
                    "first": time, "last": time, "via": []})
                entry["received"] += qty or 0
                entry["unit"] = entry["unit"] or _unit(dim)
                entry["first"], entry["last"] = min(entry["first"], time), max(entry["last"],
                                                                                time)
            if is_origin and not forward:
                trace.producers.append({"epc": urn, "event": event_id, "time": time,
                                        "location": location, "step": step})
        trace.nodes = sorted(urns.get(n, "") for n in nodes if n in urns)
        for entry in held.values():
            del entry["via"]
        trace.holders = list(held.values())
        trace.transformations = list(transforms.values())
        return finish(trace, self.oracle)



def finish(trace: Trace, oracle: ToleranceOracle | None) -> Trace:
    """One order for every list, then tolerance states (the SQL path; columns.materialize
    writes the index's trace out in the same order)."""
    trace.holders.sort(key=itemgetter("first", "location", "epc"))
    for entry in trace.transformations:  # most have one or two of each: skip the call
        for side in (entry["inputs"], entry["outputs"]):
            if len(side) > 1:
                side.sort(key=lambda x: (x["epc"], x["qty"] or 0))
    trace.transformations.sort(key=itemgetter("time", "event"))
    trace.sales.sort(key=itemgetter("time", "event", "epc"))
    trace.producers.sort(key=itemgetter("time", "event", "epc"))
    if oracle is None:
        return trace
    by_instrument: dict[str, list[dict[str, Any]]] = {}
    for sale in trace.sales:
        if sale["instrument"]:
            by_instrument.setdefault(sale["instrument"], []).append(sale)
    times = {i: [s["time"] for s in group] for i, group in by_instrument.items()}
    many = getattr(oracle, "states_many", None)
    states = many(times) if many else {i: oracle.states(i, t) for i, t in times.items()}
    for instrument, group in by_instrument.items():
        for sale, state in zip(group, states[instrument], strict=True):
            sale["tolerance"] = state
    return trace
