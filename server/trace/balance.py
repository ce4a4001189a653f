"""Mass balance per holder and lot, computed in SQL over trace_touch ⋈ trace_event.

Invariant: held = received − shipped − sold − consumed, per (holder, lot), in the lot's
base unit; a pallet's contents count where the pallet was received or shipped.
"""

from __future__ import annotations

from typing import Any

from .store import TraceStore
from .vocab import COUNT_STEPS, RECEIVE_STEPS, SALE_STEPS, SHIP_STEPS
from .vocab import unit_of as _unit


def _in(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


def mass_balance(store: TraceStore, holder: str | None = None,
                 lot: str | None = None) -> list[dict[str, Any]]:
    """Per (holder, lot): received, shipped, sold, consumed, held = received − shipped −
    sold − consumed, and the latest stock count with what it leaves unaccounted."""
    where, params = ["t.qty IS NOT NULL", "e.location IS NOT NULL"], []
    if holder:
        where.append("e.location = ?")
        params.append(holder)
    if lot:
        where.append("n.urn = ?")
        params.append(lot)
    cond = " AND ".join(where)
    sql = (
        "SELECT e.location, n.urn, t.dim,"
        f" SUM(CASE WHEN (t.role = 'obs' AND e.biz_step IN ({_in(RECEIVE_STEPS)}))"
        "  OR t.role = 'out' THEN t.qty ELSE 0 END),"
        f" SUM(CASE WHEN t.role = 'obs' AND e.biz_step IN ({_in(SHIP_STEPS)})"
        "  THEN t.qty ELSE 0 END),"
        f" SUM(CASE WHEN t.role = 'obs' AND e.biz_step IN ({_in(SALE_STEPS)})"
        "  THEN t.qty ELSE 0 END),"
        " SUM(CASE WHEN t.role = 'in' THEN t.qty ELSE 0 END)"
        " FROM trace_touch t JOIN trace_event e ON e.id = t.event"
        f" JOIN trace_node n ON n.id = t.node WHERE {cond}"
        " GROUP BY e.location, n.urn, t.dim ORDER BY e.location, n.urn")
    counts: dict[tuple[str, str], tuple[int, int]] = {}
    for location, urn, time, qty in store.rows(
            "SELECT e.location, n.urn, e.time, t.qty FROM trace_touch t JOIN trace_event e"
            f" ON e.id = t.event JOIN trace_node n ON n.id = t.node WHERE {cond}"
            f" AND e.biz_step IN ({_in(COUNT_STEPS)})", params):
        if (location, urn) not in counts or counts[(location, urn)][0] <= time:
            counts[(location, urn)] = (time, qty)
    out = []
    for location, urn, dim, received, shipped, sold, consumed in store.rows(sql, params):
        received, shipped, sold, consumed = (int(v) for v in (received, shipped, sold,
                                                              consumed))
        held = received - shipped - sold - consumed
        counted = counts.get((location, urn), (None, None))[1]
        out.append({"holder": location, "lot": urn, "unit": _unit(dim), "received": received,
                    "shipped": shipped, "sold": sold, "consumed": consumed, "held": held,
                    "counted": counted,
                    "unaccounted": None if counted is None else held - counted})
    return out
