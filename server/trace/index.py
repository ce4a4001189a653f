"""The in-memory trace index: genealogy graph, touch rows, names and tolerance states.

Invariant: a trace asks the database one question, "what is the newest event id, and has
trace_tolerance changed?", catches up with what it answers (graph.py, touches.py, and
tolerance.py's cache), then computes the whole trace from memory. Everything is loaded up
to that one event id, so the graph never reaches an object whose rows are not loaded yet.
One trace at a time per index (a lock): the visited bitmap is shared scratch.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

import numpy as np

from . import kernels
from .columns import TraceColumns, ordered
from .graph import GraphIndex
from .tolerance import ToleranceCache
from .touches import TouchIndex

_NEWEST = ("SELECT (SELECT COALESCE(MAX(id), 0) FROM trace_event),"
           " (SELECT value FROM trace_meta WHERE key = 'tolerance_version')")


class TraceIndex:
    def __init__(self) -> None:
        self.graph = GraphIndex()
        self.touches = TouchIndex()
        self.tolerance = ToleranceCache()
        self.lock = threading.Lock()

    def refresh(self, store: Any, tolerance: bool = False) -> None:
        """Catch up with the store (caller holds `lock`)."""
        newest, version = store.rows(_NEWEST)[0]
        if newest > self.touches.last_event:
            self.touches.refresh(store, newest)  # objects first: edges name them
            self.graph.refresh(store, newest)
        if tolerance and (version is None or version != self.tolerance.version):
            self.tolerance.load(store, version,
                                lambda names: self.touches.coded("instrument", names))

    def nbytes(self) -> int:
        """Memory the index holds: its arrays, strings and the URN → node map (a sum
        over every string: for reports, not for hot paths)."""
        total = sys.getsizeof(self.touches.node_of)
        for part in (self.graph, self.touches, self.tolerance):
            for value in vars(part).values():
                array = getattr(value, "array", value)
                if isinstance(array, np.ndarray):
                    total += array.nbytes
                    if array.dtype == object:
                        total += sum(sys.getsizeof(s) for s in array.tolist()
                                     if s is not None)
        return total

    def start_nodes(self, store: Any, start: str) -> list[int]:
        """Node ids for an EPC / lot URN, an eventID (what it touched), or a location."""
        node = self.touches.node_of.get(start)
        if node is not None:
            return [node]
        rows = store.rows("SELECT DISTINCT t.node FROM trace_touch t JOIN trace_event e"
                          " ON e.id = t.event WHERE e.event_id = ? AND e.id <= ?",
                          (start, self.touches.last_event))
        if not rows:
            rows = store.rows("SELECT DISTINCT t.node FROM trace_touch t JOIN trace_event"
                              " e ON e.id = t.event WHERE e.location = ? AND e.id <= ?",
                              (start, self.touches.last_event))
        return [r[0] for r in rows]

    def trace(self, store: Any, start: str, forward: bool, oracle: Any = None,
              table_oracle: bool = False) -> TraceColumns:
        """The whole trace as columns. `table_oracle`: tolerance states from the cached
        trace_tolerance table; else from `oracle.states_many` / `states` (or none)."""
        with self.lock:
            self.refresh(store, tolerance=table_oracle)
            starts = self.start_nodes(store, start)
            t = self.touches
            nodes = np.sort(self.graph.reach(starts, forward))  # rows in memory order
            (touched, sales, trans, prods, h_loc, h_node, h_recv, h_dim, h_first,
             h_last) = kernels.collect(
                nodes, t.indptr, t.head.data, t.link.array, t.r_event.array,
                t.r_class.array, t.r_qty.array, t.r_dim.array, t.e_time.array,
                t.e_loc.array, t.n_origin.array, not forward)
            cols = TraceColumns(start, forward, touched, t,
                                _holders(h_loc, h_node, h_recv, h_dim, h_first, h_last),
                                _sales(t, sales), _transforms(t, trans),
                                _producers(t, prods) if not forward else None)
            if table_oracle:
                cols.sales["tolerance"] = self.tolerance.states(
                    cols.sales["instrument"], cols.sales["time"])
                cols.state_names = self.tolerance.names
            elif oracle is not None:
                cols.ask(oracle)
            return cols


def _holders(loc, node, received, dim, first, last) -> dict[str, np.ndarray]:
    order = ordered(first, loc)
    return {"location": loc[order], "node": node[order], "received": received[order],
            "dim": dim[order], "first": first[order], "last": last[order]}


def _rows(t: TouchIndex, rows: np.ndarray, row_columns: tuple[str, ...],
          event_columns: tuple[str, ...]) -> dict[str, np.ndarray]:
    # ordered by (time, event); then column by column, one numpy take each (this measured
    # faster than one compiled pass over all of them: independent loads overlap)
    event = t.r_event.array[rows]
    time = t.e_time.array[event]
    # a transformation's inputs (role code 1) before its outputs (2)
    order = ordered(time, event * 8 + t.r_role.array[rows]) if "role" in row_columns \
        else ordered(time, event)
    event, rows = event[order], rows[order]
    out = {"event": event, "time": time[order], "location": t.e_loc.array[event]}
    for name in row_columns:
        out[name] = getattr(t, "r_" + name).array[rows]
    for name in event_columns:
        out[name] = getattr(t, "e_" + name).array[event]
    return out


def _sales(t: TouchIndex, rows: np.ndarray) -> dict[str, np.ndarray]:
    out = _rows(t, rows, ("node", "qty", "dim"), ("inst", "meas", "munit"))
    out["instrument"], out["measured"] = out.pop("inst"), out.pop("meas")
    out["tolerance"] = np.full(rows.size, -1, np.int64)
    return out


def _transforms(t: TouchIndex, rows: np.ndarray) -> dict[str, np.ndarray]:
    return _rows(t, rows, ("node", "role", "qty", "dim"), ())


def _producers(t: TouchIndex, rows: np.ndarray) -> dict[str, np.ndarray]:
    return _rows(t, rows, ("node",), ("step",))
