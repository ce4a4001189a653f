"""In-memory columns of the trace tables, touch rows grouped by object, caught up by event id.

Invariant: after `refresh(store, upto)` the index holds exactly the touch rows of the
events with ids up to `upto`, those events' columns (type, time, step, location,
instrument, measured quantity and unit, eventID, rawData) and every object stored so far
(URN, origin event). Events and touch rows are append-only, and ids are allocated under
the writer lock and committed in id order, so "load what lies above the last id" never
skips a row. An object's origin is set at most once, by an event that touches it, so the
origins worth asking again are those of objects without one that new rows touch.
Strings (step, location, instrument, units) are coded as small integers, code 0 meaning
NULL; quantities NULL are -1 (stored quantities are never negative). A trace reads
everything it writes out from here: no SQL per trace beyond `TraceIndex.refresh`'s one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .kernels import HOLDER, NONE, SALE, TRANSFORMATION, chain
from .vocab import RECEIVE_STEPS, SALE_STEPS

REBUILD_AFTER = 100_000  # rows in chains before the CSR arrays are rebuilt
LOAD_CHUNK = 100_000  # events per query while loading, to bound the rows held at once
ROLES = ("obs", "in", "out", "child", "parent")
STRING_COLUMNS = ("step", "location", "instrument", "munit", "dim")
_EVENTS = ("SELECT id, event_id, type = 'TransformationEvent', time, biz_step, location,"
           " instrument, measured, measured_unit, raw_ref FROM trace_event"
           " WHERE id > ? AND id <= ? ORDER BY id")
_TOUCHES = ("SELECT node, event, role, qty, dim FROM trace_touch"
            " WHERE event > ? AND event <= ? ORDER BY event")
_NODES = "SELECT id, urn, origin FROM trace_node WHERE id > ? ORDER BY id"
_ROLE_CODE = {r: i for i, r in enumerate(ROLES)}


class Growing:
    """A numpy column that grows by doubling; `data` is its filled part."""

    def __init__(self, dtype: Any, fill: Any = 0):
        self.dtype, self.fill = dtype, fill
        self.array = np.full(16, fill, dtype)
        self.size = 0

    @property
    def data(self) -> np.ndarray:
        return self.array[:self.size]

    def reserve(self, size: int) -> None:
        if size > self.array.size:
            grown = np.full(max(size, self.array.size * 2), self.fill, self.dtype)
            grown[:self.size] = self.array[:self.size]
            self.array = grown

    def put(self, at: np.ndarray | int, values: Any, size: int) -> None:
        """Write values at positions (ids); the column then covers [0, size)."""
        self.reserve(size)
        self.array[at] = values
        self.size = max(self.size, size)


class TouchIndex:
    def __init__(self) -> None:
        self.last_event = 0
        self.last_node = 0
        self.codes: dict[str, dict[str | None, int]] = {c: {None: 0} for c in STRING_COLUMNS}
        self.names: dict[str, list[str | None]] = {c: [None] for c in STRING_COLUMNS}
        self._tables: dict[str, np.ndarray] = {}
        # by event id
        self.e_ist = Growing(np.bool_, False)
        self.e_time = Growing(np.int64)
        self.e_step = Growing(np.int32)
        self.e_loc = Growing(np.int32)
        self.e_inst = Growing(np.int32)
        self.e_meas = Growing(np.int64, -1)
        self.e_munit = Growing(np.int32)
        self.e_id = Growing(object, None)
        self.e_raw = Growing(object, None)
        # by node id
        self.n_urn = Growing(object, None)
        self.n_origin = Growing(np.int64, -1)
        self.node_of: dict[str, int] = {}
        # touch rows: [0, base) sorted by node with CSR `indptr`, later rows in chains
        self.r_node = Growing(np.int64)
        self.r_event = Growing(np.int64)
        self.r_role = Growing(np.int8)
        self.r_qty = Growing(np.int64, -1)
        self.r_dim = Growing(np.int8)
        self.r_class = Growing(np.int8)  # what a trace makes of the row (kernels.collect)
        self.base = 0
        self.indptr = np.zeros(1, np.int64)
        self.head = Growing(np.int64, -1)  # by node: newest row past the CSR
        self.link = Growing(np.int64, -1)  # by row: the node's row before it

    def table(self, column: str) -> np.ndarray:
        """The names of a string column as an object array: codes index it."""
        names = self.names[column]
        cached = self._tables.get(column)
        if cached is None or cached.size != len(names):
            cached = self._tables[column] = np.empty(len(names), object)
            cached[:] = names
        return cached

    def code(self, column: str, value: str | None) -> int:
        return self.codes[column].get(value, -1)

    def coded(self, column: str, values: Any) -> np.ndarray:
        codes, names = self.codes[column], self.names[column]
        out = []
        for value in values:
            code = codes.get(value)
            if code is None:
                code = codes[value] = len(names)
                names.append(value)
            out.append(code)
        return np.asarray(out, np.int32)

    # -- loading
    def refresh(self, store: Any, upto: int) -> int:
        """Load events (last_event, upto], their touch rows, and new objects; return how
        many touch rows came in."""
        self._load_nodes(store)
        loaded = 0
        while self.last_event < upto:
            top = min(upto, self.last_event + LOAD_CHUNK)
            self._load_events(store.rows(_EVENTS, (self.last_event, top)), top)
            loaded += self._load_touches(store, store.rows(_TOUCHES, (self.last_event, top)))
            self.last_event = top
        if self.r_node.size - self.base >= REBUILD_AFTER or (loaded and not self.base):
            self._rebuild()
        return loaded

    def _load_nodes(self, store: Any) -> None:
        rows = store.rows(_NODES, (self.last_node,))
        if not rows:
            return
        ids, urns, origins = zip(*rows, strict=True)
        at = np.asarray(ids, np.int64)
        top = int(at[-1]) + 1
        self.n_urn.put(at, urns, top)
        self.n_origin.put(at, [-1 if o is None else o for o in origins], top)
        self.head.reserve(top)
        self.head.size = max(self.head.size, top)
        self.node_of.update(zip(urns, ids, strict=True))
        self.last_node = int(at[-1])

    def _load_events(self, rows: list[tuple], top: int) -> None:
        if not rows:
            return
        (ids, event_ids, is_t, times, steps, locations, instruments, measured, munits,
         raws) = zip(*rows, strict=True)
        at = np.asarray(ids, np.int64)
        size = int(at[-1]) + 1
        self.e_ist.put(at, np.asarray(is_t, np.bool_), size)
        self.e_time.put(at, times, size)
        self.e_step.put(at, self.coded("step", steps), size)
        self.e_loc.put(at, self.coded("location", locations), size)
        self.e_inst.put(at, self.coded("instrument", instruments), size)
        self.e_meas.put(at, [-1 if m is None else m for m in measured], size)
        self.e_munit.put(at, self.coded("munit", munits), size)
        self.e_id.put(at, event_ids, size)
        self.e_raw.put(at, raws, size)

    def _load_touches(self, store: Any, rows: list[tuple]) -> int:
        if not rows:
            return 0
        node, event, role, qty, dim = zip(*rows, strict=True)
        nodes = np.asarray(node, np.int64)
        first, n = self.r_node.size, len(rows)
        at = np.arange(first, first + n)
        self.r_node.put(at, nodes, first + n)
        self.r_event.put(at, event, first + n)
        self.r_role.put(at, [_ROLE_CODE[r] for r in role], first + n)
        self.r_qty.put(at, [-1 if q is None else q for q in qty], first + n)
        self.r_dim.put(at, self.coded("dim", dim), first + n)
        self.r_class.put(at, self._classes(self.r_event.array[at], self.r_role.array[at]),
                         first + n)
        self.link.reserve(first + n)
        self.link.size = first + n
        top = int(nodes.max()) + 1
        if top > self.head.size:
            self.head.put(np.arange(self.head.size, top), -1, top)
        chain(nodes, first, self.head.array, self.link.array)
        # objects stored before without an origin that new rows touch: ask again
        unknown = np.unique(nodes[self.n_origin.array[np.minimum(
            nodes, self.n_origin.array.size - 1)] < 0])
        unknown = unknown[unknown <= self.last_node]
        if unknown.size:
            for node_id, origin in store.rows_in(
                    "SELECT id, origin FROM trace_node WHERE origin IS NOT NULL AND id",
                    unknown.tolist()):
                self.n_origin.array[node_id] = origin
        return n

    def _classes(self, event: np.ndarray, role: np.ndarray) -> np.ndarray:
        """Each row's part in a trace, decided once when it is loaded, as query.py's SQL
        path decides it per row: a transformation's row; an `obs` row of a sale step; a
        row at a location whose step receives, or naming a container's parent (a holder's);
        or none of these. Stored with the row, a trace reads one byte per row instead of
        three event columns scattered in memory."""
        names = self.names["step"]
        sale = np.asarray([n in SALE_STEPS for n in names], np.bool_)[self.e_step.array[event]]
        receive = np.asarray([n in RECEIVE_STEPS for n in names],
                             np.bool_)[self.e_step.array[event]]
        out = np.full(event.size, NONE, np.int8)
        holder = (self.e_loc.array[event] != 0) & (receive | (role == ROLES.index("parent")))
        out[holder] = HOLDER
        out[sale & (role == ROLES.index("obs"))] = SALE
        out[self.e_ist.array[event]] = TRANSFORMATION
        return out

    def _rebuild(self) -> None:
        n = self.r_node.size
        order = np.argsort(self.r_node.data, kind="stable")
        for column in (self.r_node, self.r_event, self.r_role, self.r_qty, self.r_dim,
                       self.r_class):
            column.array[:n] = column.array[:n][order]
        counts = np.bincount(self.r_node.data, minlength=self.head.size)
        self.indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self.base = n
        self.head.array[:] = -1
        self.link.array[:] = -1
