"""In-memory columnar copy of trace_touch ⋈ trace_event, grouped by object (CSR by node).

Invariant: after `refresh(store)` the index holds exactly the touch rows of every event
with a row id up to the last one loaded. Event ids are allocated under the writer lock
and committed in id order, so "load rows of events above the last id" never skips one.
Strings (business step, location, instrument, units) are coded as small integers, code 0
meaning NULL; quantities NULL are -1 (stored quantities are never negative).
`gather(nodes)` returns the column arrays of every row touching those nodes, which is what
a trace classifies; query.py's SQL path is the slow, obviously correct twin it is tested
against.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

REBUILD_AFTER = 100_000  # delta rows before the CSR arrays are rebuilt
ROLES = ("obs", "in", "out", "child", "parent")
STRING_COLUMNS = ("step", "location", "instrument", "munit", "dim")
_SQL = ("SELECT t.node, t.event, t.role, t.qty, t.dim, e.type = 'TransformationEvent',"
        " e.time, e.biz_step, e.location, e.instrument, e.measured, e.measured_unit"
        " FROM trace_touch t JOIN trace_event e ON e.id = t.event"
        " WHERE t.event > ? ORDER BY t.event")


class TouchIndex:
    def __init__(self) -> None:
        self.last_event = 0
        self.codes: dict[str, dict[str | None, int]] = {c: {None: 0} for c in STRING_COLUMNS}
        self.names: dict[str, list[str | None]] = {c: [None] for c in STRING_COLUMNS}
        self.base: dict[str, np.ndarray] = {}
        self.indptr = np.zeros(1, np.int64)
        self.delta: list[dict[str, np.ndarray]] = []
        self.delta_rows = 0
        self.lock = threading.Lock()

    def code(self, column: str, value: str | None) -> int:
        return self.codes[column].get(value, -1)

    def _coded(self, column: str, values: tuple) -> np.ndarray:
        codes, names = self.codes[column], self.names[column]
        out = []
        for value in values:
            code = codes.get(value)
            if code is None:
                code = codes[value] = len(names)
                names.append(value)
            out.append(code)
        return np.asarray(out, np.int32)

    def refresh(self, store: Any) -> int:
        rows = store.rows(_SQL, (self.last_event,))
        if not rows:
            return 0
        (node, event, role, qty, dim, is_t, time, step, location, instrument, measured,
         munit) = zip(*rows, strict=True)
        role_code = {r: i for i, r in enumerate(ROLES)}
        chunk = {
            "node": np.asarray(node, np.int64), "event": np.asarray(event, np.int64),
            "role": np.asarray([role_code[r] for r in role], np.int8),
            "qty": np.asarray([-1 if q is None else q for q in qty], np.int64),
            "dim": self._coded("dim", dim), "is_t": np.asarray(is_t, np.bool_),
            "time": np.asarray(time, np.int64), "step": self._coded("step", step),
            "location": self._coded("location", location),
            "instrument": self._coded("instrument", instrument),
            "measured": np.asarray([-1 if m is None else m for m in measured], np.int64),
            "munit": self._coded("munit", munit)}
        self.last_event = int(chunk["event"][-1])
        self.delta.append(chunk)
        self.delta_rows += len(rows)
        if self.delta_rows >= REBUILD_AFTER or not self.base:
            self._rebuild()
        return len(rows)

    def _rebuild(self) -> None:
        parts = ([self.base] if self.base else []) + self.delta
        merged = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        order = np.argsort(merged["node"], kind="stable")
        self.base = {k: v[order] for k, v in merged.items()}
        counts = np.bincount(self.base["node"])
        self.indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self.delta, self.delta_rows = [], 0

    def gather(self, nodes: np.ndarray) -> dict[str, np.ndarray]:
        """Column arrays of every row touching `nodes` (base rows first, then delta)."""
        inside = nodes[nodes < self.indptr.size - 1]
        lo, hi = self.indptr[inside], self.indptr[inside + 1]
        counts = hi - lo
        total = int(counts.sum())
        idx = np.repeat(lo - np.cumsum(counts) + counts, counts) + np.arange(total)
        out = {k: v[idx] for k, v in self.base.items()} if self.base else {}
        touched = [inside[counts > 0]]
        for chunk in self.delta:
            mask = np.isin(chunk["node"], nodes)
            if mask.any():
                part = {k: v[mask] for k, v in chunk.items()}
                out = part if not out else {k: np.concatenate([out[k], part[k]]) for k in out}
                touched.append(part["node"])
        if out:  # the distinct objects some event touched (what a trace lists as nodes)
            out["touched"] = np.unique(np.concatenate(touched)) if len(touched) > 1 \
                else touched[0]
        return out
