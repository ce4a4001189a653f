"""In-memory index of the lot genealogy: CSR arrays both ways, caught up by edge id.

Invariant: after `refresh()`, `reach()` visits exactly the nodes a recursive CTE over
trace_edge would (trace_edge is append-only, so the index loads only ids above the last
one it saw). Edges newer than the CSR arrays sit in a small delta map until the next
rebuild. Traversal is level-synchronous with numpy, so one level costs a few array ops
however wide it is: this is what keeps heavy-blending traces (tens of thousands of lots
reached through tanks) fast where a CTE visits them one row at a time.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

REBUILD_AFTER = 50_000  # delta edges before the CSR arrays are rebuilt


def _csr(src: np.ndarray, dst: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(src, kind="stable")
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.add.at(indptr, src + 1, 1)
    return np.cumsum(indptr), dst[order].astype(np.int64)


class GraphIndex:
    def __init__(self, store: Any = None):
        self.store = store  # default store for refresh(); a long-lived index may be given
        # each request's store instead (the edges are the same table)
        self.last_edge = 0
        self.size = 1
        self._src = np.zeros(0, np.int64)
        self._dst = np.zeros(0, np.int64)
        self.fwd = (np.zeros(2, np.int64), np.zeros(0, np.int64))
        self.bwd = (np.zeros(2, np.int64), np.zeros(0, np.int64))
        self._delta_fwd: dict[int, list[int]] = {}
        self._delta_bwd: dict[int, list[int]] = {}
        self._delta_count = 0
        self._seen = np.zeros(1, np.bool_)
        self.lock = threading.Lock()  # the visited bitmap is shared: one traversal at a time
        self._stamp = np.zeros(1, np.int64)
        self.touches: Any = None  # the TouchIndex traced with this graph (query.Tracer sets it)

    def refresh(self, store: Any = None) -> int:
        """Load edges stored since the last refresh; return how many."""
        rows = (store or self.store).rows(
            "SELECT id, src, dst FROM trace_edge WHERE id > ? ORDER BY id", (self.last_edge,))
        if not rows:
            return 0
        self.last_edge = rows[-1][0]
        if self._delta_count + len(rows) >= REBUILD_AFTER or not self._src.size:
            arr = np.asarray(rows, dtype=np.int64)
            self._rebuild(arr[:, 1], arr[:, 2])
        else:
            for _, src, dst in rows:
                self._delta_fwd.setdefault(src, []).append(dst)
                self._delta_bwd.setdefault(dst, []).append(src)
                self.size = max(self.size, src + 1, dst + 1)
            self._delta_count += len(rows)
        if self._seen.size < self.size:
            self._seen = np.zeros(self.size * 2, np.bool_)
        return len(rows)

    def _rebuild(self, src: np.ndarray, dst: np.ndarray) -> None:
        if self._delta_count:
            pending = [(s, d) for s, ds in self._delta_fwd.items() for d in ds]
            src = np.concatenate([np.asarray([p[0] for p in pending], np.int64), src])
            dst = np.concatenate([np.asarray([p[1] for p in pending], np.int64), dst])
        self._src = np.concatenate([self._src, src])
        self._dst = np.concatenate([self._dst, dst])
        self.size = int(max(self._src.max(), self._dst.max())) + 1
        self.fwd = _csr(self._src, self._dst, self.size)
        self.bwd = _csr(self._dst, self._src, self.size)
        self._delta_fwd, self._delta_bwd, self._delta_count = {}, {}, 0

    def reach(self, starts: list[int], forward: bool = True) -> np.ndarray:
        """Every node reachable from `starts` (included), in breadth-first levels."""
        indptr, indices = self.fwd if forward else self.bwd
        delta = self._delta_fwd if forward else self._delta_bwd
        csr_n = indptr.size - 1
        top = max(starts, default=0) + 1
        if self._seen.size < max(self.size, top):
            self._seen = np.zeros(max(self.size, top) * 2, np.bool_)
        seen = self._seen
        frontier = np.unique(np.asarray(starts, dtype=np.int64))
        seen[frontier] = True
        levels = [frontier]
        while frontier.size:
            inside = frontier[frontier < csr_n]
            lo, hi = indptr[inside], indptr[inside + 1]
            counts = hi - lo
            total = int(counts.sum())
            if total:
                offsets = np.repeat(lo - np.cumsum(counts) + counts, counts)
                nxt = indices[offsets + np.arange(total)]
            else:
                nxt = np.zeros(0, np.int64)
            if delta:
                extra = [d for f in frontier.tolist() for d in delta.get(f, ())]
                if extra:
                    nxt = np.concatenate([nxt, np.asarray(extra, np.int64)])
                    if seen.size <= nxt.max():
                        seen = self._grow(int(nxt.max()))
            nxt = nxt[~seen[nxt]]
            if nxt.size > 1:  # drop repeats without sorting: one slot per node, last wins
                if self._stamp.size < seen.size:
                    self._stamp = np.zeros(seen.size, np.int64)
                order = np.arange(nxt.size)
                self._stamp[nxt] = order
                nxt = nxt[self._stamp[nxt] == order]
            seen[nxt] = True
            frontier = nxt
            levels.append(nxt)
        out = np.concatenate(levels)
        seen[out] = False  # reset only what was touched: the bitmap is reused
        return out

    def _grow(self, top: int) -> np.ndarray:
        grown = np.zeros((top + 1) * 2, np.bool_)
        grown[: self._seen.size] = self._seen
        self._seen = grown
        return grown
