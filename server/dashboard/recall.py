"""Recall page data: a GTIN + lot (or a lot URN) -> the forward trace as a table and as a
graph of places and instruments, with each sale's instrument state.

Invariant: the trace itself is `server.trace`'s (`Tracer.forward`, `report.rows` and
`report.summary`); this module only names the lot, opens the trace tables read-only on
the store's database, and arranges the trace as a graph: the lot, every place that held
it or something made or packed from it, and every instrument that sold it. An edge is a
movement that happened (graph()): from the place that shipped to the place that received,
a transformation's inputs to its place, a stall from its site, a sale to its instrument;
places are never chained merely because one held the lot after another.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import contextmanager
from typing import Any

from metrotrace.server.trace import CodeError, gs1
from metrotrace.server.trace import report as trace_report
from metrotrace.server.trace.query import SALE_STEPS, TableTolerance, Trace, Tracer
from metrotrace.server.trace.store import TraceStore
from metrotrace.server.trace.vocab import RECEIVE_STEPS, SHIP_STEPS, unit_of

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
            "graph": graph(trace, fleet, movements(ts, trace.nodes))}


def movements(ts: TraceStore, urns: list[str]) -> list[dict]:
    """Every shipping and receiving (commissioning included) of the traced objects, with
    the EPCIS source and destination locations when the event names them, and the
    container a touch was expanded from (`via`)."""
    steps = ", ".join(f"'{s}'" for s in (*SHIP_STEPS, *RECEIVE_STEPS))
    rows = ts.rows_in(
        "SELECT n.urn, v.urn, e.time, e.biz_step, e.location, e.doc, t.qty, t.dim"
        " FROM trace_touch t JOIN trace_event e ON e.id = t.event"
        " JOIN trace_node n ON n.id = t.node LEFT JOIN trace_node v ON v.id = t.via"
        f" WHERE t.role IN ('obs', 'parent') AND e.biz_step IN ({steps}) AND n.urn", urns)
    out = []
    for urn, via, time, step, location, doc, qty, dim in rows:
        data = json.loads(doc) if doc else {}
        out.append({"epc": urn, "via": via, "time": int(time), "step": step,
                    "ship": step in SHIP_STEPS, "location": location, "qty": qty,
                    "unit": unit_of(dim),
                    "source": _sdt_location(data.get("sourceList"), "source"),
                    "destination": _sdt_location(data.get("destinationList"), "destination")})
    out.sort(key=lambda m: (m["time"], not m["ship"], m["epc"]))
    return out


def _sdt_location(entries, key: str) -> str | None:
    """The location-type entry of an EPCIS sourceList / destinationList (CBV `location`,
    however the type is spelled: `location`, `urn:epcglobal:cbv:sdt:location`, ...SDT-location)."""
    for entry in entries or ():
        kind = str(entry.get("type", "")).rsplit(":", 1)[-1].rsplit("-", 1)[-1]
        if kind == "location" and entry.get(key):
            return entry[key]
    return None


def site_of(location: str) -> str | None:
    """The site a sub-location belongs to: an SGLN with a non-zero extension (a stall,
    a dock) -> the same GLN with extension 0; None for anything else."""
    if not location.startswith("urn:epc:id:sgln:"):
        return None
    head, _, ext = location.rpartition(".")
    return f"{head}.0" if ext not in ("", "0") and head.count(".") == 1 else None


def graph(trace: Trace, fleet: dict[str, dict], moves: list[dict]) -> dict:
    """{"nodes": [{id, kind, label, ...}], "edges": [{src, dst, kind, objects, count, ...}]}.
    An edge is a movement that happened: a receipt from the location the EPCIS event names
    as its source, else from the last place that shipped that object before it (and did not
    ship it elsewhere by name), else from the last place that held it; a transformation's
    input to its location; a sub-location (a stall) from its site; a sale to its instrument."""
    nodes: dict[str, dict] = {"lot": {"id": "lot", "kind": "lot", "label": trace.start}}
    edges: dict[tuple[str, str], dict] = {}

    def place(location: str | None) -> str:
        if location is None:
            return "lot"
        key = "loc:" + location
        nodes.setdefault(key, {"id": key, "kind": "place", "label": location})
        return key

    def edge(src: str, dst: str, epc: str, qty: int | None, unit: str | None,
             kind: str = "move") -> None:
        if src == dst:
            return
        e = edges.setdefault((src, dst), {"src": src, "dst": dst, "kind": kind, "objects": [],
                                          "count": 0, "qty": 0, "unit": unit})
        if epc not in e["objects"]:
            e["objects"].append(epc)
        e["count"] += 1
        e["qty"] += qty or 0

    held: dict[str, list[tuple[int, str]]] = {}  # object -> (since, location), in order
    ships: dict[str, list[dict]] = {}
    events = [(m["time"], 0, m) for m in moves] + [
        (t["time"], 1, t) for t in trace.transformations]
    for _, is_transform, m in sorted(events, key=lambda x: (x[0], x[1])):
        if is_transform:  # inputs go to its location; outputs are held there from now on
            for i in m["inputs"]:
                before = held.get(i["epc"])
                if before and m["location"]:
                    edge(place(before[-1][1]), place(m["location"]), i["epc"], i["qty"],
                         i["unit"])
            for o in m["outputs"]:
                if m["location"]:
                    place(m["location"])
                    held.setdefault(o["epc"], []).append((m["time"], m["location"]))
            continue
        epc, where = m["epc"], m["location"]
        if m["ship"]:
            ships.setdefault(epc, []).append(m)
            continue
        if where is None:
            continue
        label = m["via"] or epc
        src = m["source"]
        if src is None and m["step"] != "commissioning":  # commissioning: it starts here
            shipped = [s for s in ships.get(epc, ()) if s["location"] not in (None, where)
                       and s["destination"] in (None, where)]
            before = [loc for _, loc in held.get(epc, ()) if loc != where]
            src = shipped[-1]["location"] if shipped else before[-1] if before else None
        # nothing shipped it here and nothing held it before: it starts here (the lot's
        # commissioning), or enters unexplained, drawn from the lot
        edge(place(src) if src else "lot", place(where), label, m["qty"], m["unit"])
        held.setdefault(epc, []).append((m["time"], where))
    for s in trace.sales:
        key = "inst:" + (s["instrument"] or "?")
        state = fleet.get(s["instrument"] or "")
        nodes.setdefault(key, {"id": key, "kind": "instrument", "label": s["instrument"],
                               "place": s["location"],
                               "state": state["state"] if state else None})
        edge(place(s["location"]), key, s["epc"], s["qty"], s["unit"], "sale")
    reached = {e["dst"] for e in edges.values()}
    for key, n in list(nodes.items()):  # a stall where things were sold: from its site
        if n["kind"] == "place" and key not in reached:
            site = site_of(n["label"])
            edge(place(site) if site else "lot", key, n["label"], None, None,
                 "site" if site else "move")
            if site:
                n["site"] = site
            if site and "loc:" + site not in reached:
                edge("lot", "loc:" + site, trace.start, None, None)
    kept = list(nodes.values())[:GRAPH_LIMIT]
    ids = {n["id"] for n in kept}
    return {"nodes": kept, "edges": [e for e in edges.values()
                                     if e["src"] in ids and e["dst"] in ids],
            "truncated": len(nodes) > GRAPH_LIMIT}


def record_tolerance(ts: TraceStore, fleet: list[dict], now_ms: int | None = None) -> None:
    """Write each instrument's tolerance history, as the engine knows it, into the trace
    tables (server/trace/tolerance.py: ok from its verification, then its state from its
    first alarm). For the process that runs the metrology engine (the sample; `server run`
    does it in its monitor): the dashboard itself only reads."""
    import time

    from metrotrace.server.trace import tolerance

    now = now_ms if now_ms is not None else time.time_ns() // 1_000_000
    tolerance.record(ts, fleet, [row.get("verified_on") or 0 for row in fleet], now)
