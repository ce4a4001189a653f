"""In-memory index of the lot genealogy: CSR arrays both ways, caught up by event id.

Invariant: after `refresh(store, upto)`, `reach()` visits exactly the nodes a recursive
CTE over the trace_edge rows of events up to `upto` would. trace_edge is append-only and
its ids grow with the events that made them (one writer at a time), so the index loads
only ids above the last one it saw. Edges newer than the CSR arrays sit in a chain per
node until the next rebuild. Traversal is one compiled breadth-first loop (kernels.reach)
over a visited bitmap: a heavy-blending trace (tens of thousands of lots reached through
tanks) costs a pass over the edges it reaches and nothing else.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import kernels
from .touches import Growing

REBUILD_AFTER = 50_000  # chained edges before the CSR arrays are rebuilt
_EDGES = "SELECT id, src, dst FROM trace_edge WHERE id > ? AND event <= ? ORDER BY id"


def _csr(src: np.ndarray, dst: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(src, kind="stable")
    counts = np.bincount(src, minlength=n)
    return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64), dst[order]


class GraphIndex:
    def __init__(self) -> None:
        self.last_edge = 0
        self.src = Growing(np.int64)
        self.dst = Growing(np.int64)
        self.base = 0  # edges [0, base) are in the CSR arrays, later ones in chains
        self.fwd = (np.zeros(1, np.int64), np.zeros(0, np.int64))
        self.bwd = (np.zeros(1, np.int64), np.zeros(0, np.int64))
        self.head_fwd = Growing(np.int64, -1)  # by node: newest chained edge out of it
        self.head_bwd = Growing(np.int64, -1)  # by node: newest chained edge into it
        self.link_fwd = Growing(np.int64, -1)  # by edge: the previous one of its src
        self.link_bwd = Growing(np.int64, -1)  # by edge: the previous one of its dst
        self.seen = np.zeros(1, np.bool_)

    def refresh(self, store: Any, upto: int) -> int:
        """Load the edges of events up to `upto` stored since the last refresh."""
        rows = store.rows(_EDGES, (self.last_edge, upto))
        if not rows:
            return 0
        self.last_edge = rows[-1][0]
        arr = np.asarray(rows, dtype=np.int64)
        first, n = self.src.size, len(rows)
        at = np.arange(first, first + n)
        self.src.put(at, arr[:, 1], first + n)
        self.dst.put(at, arr[:, 2], first + n)
        if first + n - self.base >= REBUILD_AFTER or not self.base:
            self._rebuild()
            return n
        top = int(arr[:, 1:].max()) + 1
        for head, link, ends in ((self.head_fwd, self.link_fwd, arr[:, 1]),
                                 (self.head_bwd, self.link_bwd, arr[:, 2])):
            if top > head.size:
                head.put(np.arange(head.size, top), -1, top)
            link.put(at, -1, first + n)
            kernels.chain(np.ascontiguousarray(ends), first, head.array, link.array)
        return n

    def _rebuild(self) -> None:
        src, dst = self.src.data, self.dst.data
        size = int(max(src.max(), dst.max())) + 1
        self.fwd = _csr(src, dst, size)
        self.bwd = _csr(dst, src, size)
        self.base = self.src.size
        for head in (self.head_fwd, self.head_bwd):
            head.array[:] = -1
            head.size = 0

    def reach(self, starts: list[int] | np.ndarray, forward: bool = True) -> np.ndarray:
        """Every node reachable from `starts` (included), breadth first."""
        starts = np.asarray(starts, np.int64)
        if not starts.size:
            return starts
        indptr, indices = self.fwd if forward else self.bwd
        head, link, target = ((self.head_fwd, self.link_fwd, self.dst) if forward
                              else (self.head_bwd, self.link_bwd, self.src))
        top = max(indptr.size, head.size, int(starts.max()) + 1)
        if self.seen.size < top:
            self.seen = np.zeros(top * 2, np.bool_)
        return kernels.reach(indptr, indices, head.data, link.array, target.array, starts,
                             self.seen)
