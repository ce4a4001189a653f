"""numba kernels of the in-memory trace index: reach, collect, tolerance states.

Invariant: each kernel is a plain loop that query.py's SQL path states in SQL and Python
(the slow, obviously correct twin the tests compare against); none allocates per row
beyond its output arrays. Adjacency (edges by node, touch rows by node) is a CSR over the
rows loaded when it was last rebuilt plus, for rows loaded since, a chain per node:
`head[node]` is its newest later row, `link[row]` the one before it, -1 ending a chain.
So a trace pays nothing for rows it does not reach, however many arrived since the
last rebuild.
"""

from __future__ import annotations

import numpy as np
from numba import njit

NONE, TRANSFORMATION, SALE, HOLDER = range(4)  # a touch row's class (touches._classes)


@njit(cache=True)
def reach(indptr, indices, head, link, target, starts, seen):  # pragma: no cover (numba)
    """Every node reachable from `starts` (included) in breadth-first order. `seen` is a
    zeroed scratch bitmap at least as long as the node ids; it is zeroed again on return."""
    out = np.empty(seen.size, np.int64)
    n = 0
    for s in starts:
        if not seen[s]:
            seen[s] = True
            out[n] = s
            n += 1
    base_nodes = indptr.size - 1
    i = 0
    while i < n:
        u = out[i]
        i += 1
        if u < base_nodes:
            for k in range(indptr[u], indptr[u + 1]):
                v = indices[k]
                if not seen[v]:
                    seen[v] = True
                    out[n] = v
                    n += 1
        if u < head.size:
            e = head[u]
            while e >= 0:
                v = target[e]
                if not seen[v]:
                    seen[v] = True
                    out[n] = v
                    n += 1
                e = link[e]
    for k in range(n):
        seen[out[k]] = False
    return out[:n]


@njit(cache=True)
def _rows_of(node, indptr, head, link, buf):  # pragma: no cover (numba)
    # the touch rows of one node: its CSR range, then its chain of later rows
    n = 0
    if node < indptr.size - 1:
        for r in range(indptr[node], indptr[node + 1]):
            buf[n] = r
            n += 1
    if node < head.size:
        r = head[node]
        while r >= 0:
            buf[n] = r
            n += 1
            r = link[r]
    return n


@njit(cache=True)
def collect(nodes, indptr, head, link, r_event, r_class, r_qty, r_dim, e_time, e_loc,
            origin, producers):  # pragma: no cover (numba)
    """Gather every touch row of `nodes` by its class (touches._classes, the rules of
    query.py's SQL path): transformation rows; sale rows; holder rows summed per
    (location, node) into received (known quantities), dim (the lot's), first and last
    time; with `producers`, the rows (not of transformations) of the event that created
    their node. Returns (touched nodes, sale rows, transformation rows, producer rows,
    holder columns)."""
    total = 0
    longest = 0
    for node in nodes:  # sizes first: every output is one allocation
        count = 0
        if node < indptr.size - 1:
            count = indptr[node + 1] - indptr[node]
        if node < head.size:
            r = head[node]
            while r >= 0:
                count += 1
                r = link[r]
        total += count
        longest = max(longest, count)
    buf = np.empty(longest, np.int64)
    touched = np.empty(nodes.size, np.int64)
    sales = np.empty(total, np.int64)
    trans = np.empty(total, np.int64)
    prods = np.empty(total if producers else 0, np.int64)
    h_loc = np.empty(total, np.int64)
    h_node = np.empty(total, np.int64)
    h_recv = np.empty(total, np.int64)
    h_dim = np.empty(total, np.int64)
    h_first = np.empty(total, np.int64)
    h_last = np.empty(total, np.int64)
    nt = ns = nx = npr = nh = 0
    for node in nodes:
        count = _rows_of(node, indptr, head, link, buf)
        if count:
            touched[nt] = node
            nt += 1
        first_group = nh  # this node's holders: [first_group, nh)
        for k in range(count):
            r = buf[k]
            kind = r_class[r]
            if kind == TRANSFORMATION:
                trans[nx] = r
                nx += 1
                continue
            if producers and origin[node] == r_event[r]:
                prods[npr] = r
                npr += 1
            if kind == SALE:
                sales[ns] = r
                ns += 1
            elif kind == HOLDER:
                ev = r_event[r]
                loc = e_loc[ev]
                g = first_group
                while g < nh and h_loc[g] != loc:
                    g += 1
                t = e_time[ev]
                if g == nh:
                    h_loc[g], h_node[g], h_recv[g], h_dim[g] = loc, node, 0, 0
                    h_first[g], h_last[g] = t, t
                    nh += 1
                if r_qty[r] > 0:
                    h_recv[g] += r_qty[r]
                h_dim[g] = max(h_dim[g], r_dim[r])
                h_first[g] = min(h_first[g], t)
                h_last[g] = max(h_last[g], t)
    return (touched[:nt], sales[:ns], trans[:nx], prods[:npr], h_loc[:nh], h_node[:nh],
            h_recv[:nh], h_dim[:nh], h_first[:nh], h_last[:nh])


@njit(cache=True)
def states(instrument, times, ptr, from_t, state):  # pragma: no cover (numba)
    """The state that began last at or before each time, per instrument code: rows of
    instrument c are [ptr[c], ptr[c + 1]) sorted by from_t; -1 where none had begun."""
    out = np.full(instrument.size, -1, np.int64)
    for i in range(instrument.size):
        c = instrument[i]
        if c <= 0 or c >= ptr.size - 1:
            continue
        lo, hi = ptr[c], ptr[c + 1]
        t = times[i]
        while lo < hi:  # bisect_right on from_t, then one back
            mid = (lo + hi) // 2
            if from_t[mid] <= t:
                lo = mid + 1
            else:
                hi = mid
        if lo > ptr[c]:
            out[i] = state[lo - 1]
    return out


@njit(cache=True)
def chain(nodes, first, head, link):  # pragma: no cover (numba)
    """Append rows first, first + 1, … (of `nodes`) to their nodes' chains."""
    for k in range(nodes.size):
        r = first + k
        link[r] = head[nodes[k]]
        head[nodes[k]] = r
