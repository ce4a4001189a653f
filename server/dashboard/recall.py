"""Recall page data: a GTIN + lot (or a lot URN) -> the forward trace as a table and as a
graph of places and instruments, with each sale's instrument state.

Invariant: the trace itself is `server.trace`'s (`Tracer.forward`, `report.rows` and
`report.summary`); this module only names the lot, opens the trace tables read-only on
the store's database, and arranges the trace as a graph: the lot, every place that held
it or something made or packed from it (an edge for each move, in time order), and every
instrument that sold it (an edge from the place of sale).
"""

from __future__ import annotations

import sqlite3
from contextlib import contextmanager
from typing import Any

from metrotrace.server.trace import CodeError, gs1
from metrotrace.server.trace import report as trace_report
from metrotrace.server.trace.query import SALE_STEPS, TableTolerance, Trace, Tracer
from metrotrace.server.trace.store import TraceStore

from ..store.rows import Store

GRAPH_LIMIT = 150  # places + instruments drawn; the table always lists every row


def lot_urn(gtin: str | None = None, lot: str | None = None, epc: str | None = None) -> str:
    """The lot's class URN; raises CodeError naming `gtin`, `lot` or `epc`."""
    if epc:
        if not epc.startswith(("urn:", "https://", "http://")):
            raise CodeError("epc", "expected a URN (urn:epc:class:lgtin:…) or a Digital Link")
        return epc.strip()
    digits = (gtin or "").strip()
    if not digits.isdigit() or len(digits) not in (8, 12, 13, 14):
        raise CodeError("gtin", "expected 8, 12, 13 or 14 digits")
    if not (lot or "").strip():
        raise CodeError("lot", "missing: a recall names the lot (AI 10)")
    try:
        code = gs1.parse("]C101" + digits.zfill(14) + "10" + lot.strip())
    except CodeError as exc:  # the form's fields are GTIN and lot, not AIs
        raise CodeError("gtin" if exc.field in ("(01)", "gtin") else "lot", exc.reason) from None
    urn = code.lot_class()
    if urn is None:
        raise CodeError("lot", "names no lot")
    return urn


@contextmanager
def trace_store(store: Store):
    """A TraceStore on the same database as `store`, or None when it has no trace tables.
    Reads only: never creates tables."""
    url = store.url
    if url.startswith("sqlite:///"):
        conn: Any = sqlite3.connect(url.removeprefix("sqlite:///"), check_same_thread=False)
    else:
        import psycopg

        conn = psycopg.connect(url)
    try:
        ts = TraceStore(conn)
        yield ts if ts.version() > 0 else None
    finally:
        conn.close()


def lots(ts: TraceStore, limit: int = 500) -> list[dict]:
    """Lots (LGTIN classes) with their GTIN and lot, and how many direct sales each has."""
    steps = ", ".join(f"'{s}'" for s in SALE_STEPS)
    found = ts.rows(
        "SELECT n.urn, COUNT(e.id) FROM trace_node n"
        " LEFT JOIN trace_touch t ON t.node = n.id AND t.role = 'obs'"
        f" LEFT JOIN trace_event e ON e.id = t.event AND e.biz_step IN ({steps})"
        " WHERE n.urn LIKE 'urn:epc:class:lgtin:%' GROUP BY n.urn ORDER BY n.urn LIMIT ?",
        (limit,))
    out = []
    for urn, sales in found:
        lot = urn.rsplit(".", 1)[-1]
        try:
            gtin = gs1.gtin_of_urn(urn)
            if lot_urn(gtin, lot) != urn:  # GTIN + lot would not name this lot again
                gtin = None
        except CodeError:
            gtin = None
        out.append({"urn": urn, "gtin": gtin, "lot": lot, "sales": int(sales)})
    return out


def recall(ts: TraceStore, urn: str, fleet: dict[str, dict]) -> dict:
    """Summary, rows, sales (with each instrument's state now) and the graph of one lot."""
    trace = Tracer(ts, TableTolerance(ts), method="cte").forward(urn)
    sales = []
    for s in trace.sales:
        state = fleet.get(s["instrument"] or "")
        first = state.get("first_alarm_ms") if state else None
        sales.append({**s, "instrument_state": state["state"] if state else None,
                      "registered": state is not None,
                      "after_alarm": bool(first is not None and s["time"] >= first)})
    return {"lot": urn, "found": bool(trace.nodes), "summary": trace_report.summary(trace),
            "rows": trace_report.rows(trace), "sales": sales,
            "holders": trace.holders, "transformations": trace.transformations,
            "graph": graph(trace, fleet)}


def graph(trace: Trace, fleet: dict[str, dict]) -> dict:
    """{"nodes": [{id, kind, label, ...}], "edges": [{src, dst, label, count, qty, unit}]}"""
    nodes: dict[str, dict] = {"lot": {"id": "lot", "kind": "lot", "label": trace.start}}
    edges: dict[tuple[str, str], dict] = {}

    def place(location: str | None) -> str:
        if location is None:
            return "lot"
        key = "loc:" + location
        nodes.setdefault(key, {"id": key, "kind": "place", "label": location})
        return key

    def edge(src: str, dst: str, epc: str, qty: int | None, unit: str | None) -> None:
        if src == dst:
            return
        e = edges.setdefault((src, dst), {"src": src, "dst": dst, "objects": [], "count": 0,
                                          "qty": 0, "unit": unit})
        if epc not in e["objects"]:
            e["objects"].append(epc)
        e["count"] += 1
        e["qty"] += qty or 0

    stops: dict[str, list[tuple[int, str, int | None, str | None]]] = {}
    for h in trace.holders:
        stops.setdefault(h["epc"], []).append((h["first"], h["location"], h["received"],
                                               h["unit"]))
    for t in trace.transformations:
        for o in t["outputs"]:
            stops.setdefault(o["epc"], []).append((t["time"], t["location"], o["qty"],
                                                   o["unit"]))
    entered: set[str] = set()
    for epc, visits in sorted(stops.items(), key=lambda kv: min(v[0] for v in kv[1])):
        visits.sort(key=lambda v: v[0])
        first = place(visits[0][1])
        if epc == trace.start or first not in entered:
            edge("lot", first, epc, visits[0][2], visits[0][3])
        entered.add(first)
        for (_, a, _, _), (_, b, qty, unit) in zip(visits, visits[1:], strict=False):
            edge(place(a), place(b), epc, qty, unit)
            entered.add(place(b))
    for s in trace.sales:
        key = "inst:" + (s["instrument"] or "?")
        state = fleet.get(s["instrument"] or "")
        nodes.setdefault(key, {"id": key, "kind": "instrument", "label": s["instrument"],
                               "place": s["location"],
                               "state": state["state"] if state else None})
        edge(place(s["location"]), key, s["epc"], s["qty"], s["unit"])
    kept = list(nodes.values())[:GRAPH_LIMIT]
    ids = {n["id"] for n in kept}
    return {"nodes": kept, "edges": [e for e in edges.values()
                                     if e["src"] in ids and e["dst"] in ids],
            "truncated": len(nodes) > GRAPH_LIMIT}


def record_tolerance(ts: TraceStore, fleet: list[dict]) -> None:
    """Write each instrument's tolerance history, as the engine knows it, into the trace
    tables (trace_tolerance): in tolerance from its verification, then its state from its
    first alarm. For the process that runs the metrology engine (the demo, a monitor): the
    dashboard itself only reads."""
    oracle = TableTolerance(ts)
    for row in fleet:
        oracle.set_state(row["instrument"], row.get("verified_on") or 0, "in_tolerance")
        if row.get("first_alarm_ms") is not None and row["state"] in ("out_of_tolerance",
                                                                       "drifting"):
            oracle.set_state(row["instrument"], row["first_alarm_ms"], row["state"])
