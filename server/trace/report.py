"""Recall report: a forward trace written for a regulator as JSON, CSV or one HTML page.

Invariant: the three forms carry the same rows (every holder and every sale of the
forward trace, with instrument, measured quantity and tolerance state); the CSV is one
sortable sheet with a `kind` column, as FSMA 204's "electronic sortable spreadsheet" asks;
the HTML page escapes every value and needs no script or external file. A sale counts as
sold on an instrument out of tolerance only when its state then was `out_of_tolerance`;
`drifting` (a confirmed drift signal, still within the in-service MPE) is counted apart and
shown amber, `warning` and `overdue_verification` are listed but not counted.
"""

from __future__ import annotations

import csv
import html
import io
import json
from datetime import UTC, datetime
from typing import Any

from .query import Trace

_FLAG = {"out_of_tolerance": " bad", "drifting": " drift"}  # HTML row classes
COLUMNS = ("kind", "time_utc", "location", "epc", "qty", "unit", "instrument", "measured",
           "measured_unit", "tolerance", "event", "raw")


def _utc(ms: int | None) -> str:
    if ms is None:
        return ""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def rows(trace: Trace) -> list[dict[str, Any]]:
    out = []
    for h in trace.holders:
        out.append({"kind": "holder", "time_utc": _utc(h["first"]), "location": h["location"],
                    "epc": h["epc"], "qty": h["received"], "unit": h["unit"]})
    for t in trace.transformations:
        for o in t["outputs"]:
            out.append({"kind": "transformation", "time_utc": _utc(t["time"]),
                        "location": t["location"], "epc": o["epc"], "qty": o["qty"],
                        "unit": o["unit"], "event": t["event"]})
    for s in trace.sales:
        out.append({"kind": "sale", "time_utc": _utc(s["time"]), "location": s["location"],
                    "epc": s["epc"], "qty": s["qty"], "unit": s["unit"],
                    "instrument": s["instrument"], "measured": s["measured"],
                    "measured_unit": s["measured_unit"], "tolerance": s["tolerance"],
                    "event": s["event"], "raw": s["raw"]})
    return [{c: r.get(c) for c in COLUMNS} for r in out]


def summary(trace: Trace) -> dict[str, Any]:
    sold: dict[str | None, int] = {}
    for s in trace.sales:
        sold[s["unit"]] = sold.get(s["unit"], 0) + (s["qty"] or 0)
    return {"lot": trace.start, "objects_reached": len(trace.nodes),
            "holders": len({h["location"] for h in trace.holders}),
            "sale_points": len({s["location"] for s in trace.sales}),
            "sales": len(trace.sales), "sold": sold,
            "sales_on_instruments_out_of_tolerance": sum(
                1 for s in trace.sales if s["tolerance"] == "out_of_tolerance"),
            "sales_on_drifting_instruments": sum(
                1 for s in trace.sales if s["tolerance"] == "drifting"),
            "sales_with_unknown_instrument_state": sum(
                1 for s in trace.sales if s["tolerance"] is None)}


def to_json(trace: Trace) -> str:
    return json.dumps({"summary": summary(trace), "rows": rows(trace)}, indent=1)


def to_csv(trace: Trace) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows(trace))
    return buf.getvalue()


def to_html(trace: Trace) -> str:
    e = html.escape
    head = summary(trace)
    facts = "".join(f"<tr><th>{e(str(k))}</th><td>{e(str(v))}</td></tr>"
                    for k, v in head.items())
    body = "".join(
        "<tr class='{}'>".format(e(r["kind"]) + _FLAG.get(r["tolerance"] or "", ""))
        + "".join(f"<td>{e('' if r[c] is None else str(r[c]))}</td>" for c in COLUMNS)
        + "</tr>" for r in rows(trace))
    cols = "".join(f"<th>{e(c)}</th>" for c in COLUMNS)
    return (
        "<!doctype html><html lang='en'><meta charset='utf-8'>"
        f"<title>Recall {e(trace.start)}</title><style>body{{font:14px sans-serif;margin:2em}}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}"
        ".bad{background:#fdd}.drift{background:#fec}.holder{background:#eef}</style>"
        f"<h1>Recall report: {e(trace.start)}</h1><table>{facts}</table>"
        f"<h2>Holders, transformations and sales</h2><table><tr>{cols}</tr>{body}</table>"
        "</html>\n")
