"""What the demo reports: live figures while it runs, and the summary at the end.

Invariant: every figure is read from where the system keeps it — the server's store
(records, rejects, alerts, the trace tables), the gateways' own counters (their stop
line in the log), the nodes' consoles — never from what the demo meant to happen, so a
broken part shows as a wrong number. `collect` returns plain JSON-able data (written to
summary.json and asserted on by tests/test_demo.py); `render` draws it with rich.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections import Counter
from pathlib import Path

from rich.console import Console, Group
from rich.table import Table

from metrotrace.firmware.metro.wire import record as wire
from metrotrace.server.trace.query import TableTolerance, Tracer
from metrotrace.server.trace.store import TraceStore
from metrotrace.tools.demo_scenario import NODES, RECALLED

FLAGGED = ("out_of_tolerance", "drifting", "warning", "overdue_verification")
FIGURES = ("checks", "out", "cusum", "ewma", "confirmed", "zero_alarms", "first_alarm_ms")


def live(db: Path, jobs: Path) -> dict:
    """Cheap figures for the progress display (one short read of the store)."""
    out: dict = {"stored": 0, "rejects": 0, "states": {}, "trace": {}}
    if db.exists():
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            out["stored"] = conn.execute("SELECT count(*) FROM records").fetchone()[0]
            out["rejects"] = conn.execute("SELECT count(*) FROM rejects").fetchone()[0]
        except sqlite3.Error:
            pass  # tables not made yet
        finally:
            conn.close()
    if jobs.exists():
        try:
            status = json.loads(jobs.read_text())
        except ValueError:
            status = {}
        out["states"] = status.get("states", {})
        out["trace"] = status.get("trace", {})
        out["unplaced"] = status.get("unplaced", {})
    return out


def progress(figures: dict, made: int, day) -> Table:
    """The table shown while the demo runs (`day`: tools/demo_day.Day)."""
    left = max(0.0, day.duration - day.elapsed())
    t = Table(title=f"metrotrace demo - {day.elapsed():.0f} s of {day.duration:.0f} "
                    f"({left:.0f} s left; Ctrl-C ends it early)", show_header=False)
    t.add_row("records", f"{made} made by the nodes, {figures['stored']} stored by the "
                         f"server, {figures['rejects']} rejected")
    tr = figures["trace"]
    t.add_row("trace", f"{tr.get('receipts', 0)} receipts, {tr.get('sales', 0)} sales, "
                       f"{tr.get('dispenses', 0)} fuellings linked to their instruments")
    states = figures["states"] or {}
    t.add_row("instruments", ", ".join(f"{k} [{'green' if v == 'ok' else 'red'}]{v}[/]"
                                       for k, v in sorted(states.items())) or "all ok so far")
    ppm = day.drift_ppm()
    t.add_row("drift (accelerated)", f"MKT1-S2 reads {ppm / 1e4:.3f} % heavy: "
                                     f"{ppm / 100:.1f} g at 10 kg (MPE 10 g)")
    if day.tampered_at is not None:
        t.add_row("tampering", f"MKT1-S3's span calibration changed at {day.tampered_at:.0f} s")
    if day.checks_refused:
        t.add_row("checks", f"[red]refused by the firmware: {day.checks_refused}")
    return t


def status_line(figures: dict, made: int, day) -> str:
    """One line of progress, for output that is not a terminal (CI, `| tee`)."""
    flagged = ", ".join(f"{k} {v}" for k, v in sorted((figures["states"] or {}).items())
                        if v != "ok") or "none yet"
    return (f"{day.elapsed():.0f} of {day.duration:.0f} s: {made} records made, "
            f"{figures['stored']} stored, {figures['rejects']} rejected; "
            f"{figures['trace'].get('sales', 0)} sales traced; flagged: {flagged}")


def _status(jobs: Path) -> dict:
    try:
        return json.loads(jobs.read_text())
    except (OSError, ValueError):
        return {}


def jobs_pass_started(jobs: Path) -> int:
    """UTC ms at which the server jobs' latest complete pass began (0: none yet)."""
    return _status(jobs).get("t", 0)


def gateway_counters(log: Path) -> dict:
    """The counters a gateway logged when it stopped (gateway/app.py `gateway_stop`)."""
    if not log.exists():
        return {}
    last: dict = {}
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{") and '"gateway_stop"' in line:
            try:
                last = json.loads(line)
            except ValueError:
                continue
    return {k: v for k, v in last.items() if k not in ("event", "t")}


def _why(detail: dict, events: list[dict]) -> list[str]:
    why = []
    if detail.get("out"):
        why.append(f"{detail['out']} check(s) outside the in-service MPE "
                   f"(max |error| {detail.get('max_abs_r', 0):.1f} x MPE)")
    if detail.get("cusum") or detail.get("ewma"):
        why.append(f"control charts signalled (CUSUM {detail.get('cusum', 0)}, "
                   f"EWMA {detail.get('ewma', 0)})")
    if detail.get("zero_alarms"):
        why.append(f"zero drift: {detail['zero_alarms']} alarm(s)")
    if detail.get("last_r") is not None and detail.get("checks"):
        why.append(f"last of {detail['checks']} checks: error {detail['last_r']:+.2f} x MPE")
    if detail.get("crossing_ms") and detail.get("state") != "out_of_tolerance":
        why.append("predicted to cross its MPE at "
                   + time.strftime("%H:%M:%S", time.localtime(detail["crossing_ms"] / 1000)))
    for ev in events:
        d = ev.get("detail") or {}
        why.append(f"audit trail: {ev['code']} {d.get('param', '')} {d.get('old')} -> "
                   f"{d.get('new')} by {d.get('by')} (seq {ev['seq']})")
    return why


def _audit_events(conn: sqlite3.Connection) -> dict[bytes, list[dict]]:
    """Calibration and parameter changes the nodes recorded, by node."""
    out: dict[bytes, list[dict]] = {}
    for (data,) in conn.execute("SELECT record FROM records WHERE kind = ?", (wire.EVENT,)):
        rec = wire.decode(bytes(data))
        if rec.get("code") in ("cal_change", "param_change", "seal"):
            out.setdefault(rec["node"], []).append(
                {"code": rec["code"], "detail": rec.get("detail"), "seq": rec["seq"]})
    return out


def fleet_report(db: Path) -> list[dict]:
    """The drift engine's report now, as the dashboard computes it (server/dashboard/
    states.py) with the drift settings of the data directory, which the server's jobs
    (the monitor) use too: the summary, the alerts and the page cannot disagree."""
    from metrotrace.server.dashboard import states
    from metrotrace.server.metrology import settings
    from metrotrace.server.store import open_store

    store = open_store(f"sqlite:///{db}")
    try:
        return states.report(store, time.time_ns() // 1_000_000,
                             settings=settings.for_data_dir(db.parent))
    finally:
        store.close()


def collect(db: Path, logs: Path, nodes: dict, day: dict) -> dict:
    conn = sqlite3.connect(db, timeout=30)
    try:
        stored = dict(conn.execute("SELECT kind, count(*) FROM records GROUP BY kind").fetchall())
        rejects = dict(conn.execute(
            "SELECT reason, count(*) FROM rejects GROUP BY reason").fetchall())
        latest: dict[str, tuple[str, dict]] = {}
        for inst, kind, detail in conn.execute(
                "SELECT instrument, kind, detail FROM alerts WHERE instrument IS NOT NULL"
                " ORDER BY id"):
            d = json.loads(detail)
            if d.get("source") == "metrology":
                latest[inst] = (kind, d)
        audit = _audit_events(conn)
        # A node numbers its records 1, 2, 3, ...: a seq missing below the highest one
        # stored is a record lost on the way (the test of "nothing lost").
        for node, count, top in conn.execute(
                "SELECT node, count(*), max(seq) FROM records GROUP BY node"):
            if bytes(node).hex() in nodes:
                nodes[bytes(node).hex()]["stored"] = count
                nodes[bytes(node).hex()]["missing"] = top - count
    finally:
        conn.close()
    node_of = {p.scale or p.pump: p.node for p in NODES if p.scale or p.pump}
    fleet = fleet_report(db)
    flagged = [{"instrument": r["instrument"], "state": r["state"],
                "why": _why(r, audit.get(node_of.get(r["instrument"], b""), [])),
                "figures": {k: r.get(k) for k in FIGURES}}
               for r in fleet if r["state"] in FLAGGED]
    trace = TraceStore(sqlite3.connect(db, timeout=30))
    found = Tracer(trace, TableTolerance(trace)).forward(RECALLED.urn)
    sales = [{"time": s["time"], "location": s.get("location"), "qty_mg": s.get("qty"),
              "instrument": s.get("instrument"), "state": s.get("tolerance"),
              "record": s.get("raw")} for s in found.sales]
    gateways = {log.stem.removeprefix("gateway-"): gateway_counters(log)
                for log in sorted(logs.glob("gateway-*.log"))}
    return {
        "records_made": sum(sum(n["kinds"].values()) for n in nodes.values()),
        "records_stored": sum(stored.values()),
        "records_missing": sum(n.get("missing", 0) for n in nodes.values()),
        "stored_by_kind": {wire.KIND_NAMES.get(k, str(k)): v for k, v in stored.items()},
        "rejects": rejects,
        "gateways": gateways,
        "nodes": nodes,
        "states": {r["instrument"]: r["state"] for r in fleet},
        "alerts": {inst: state for inst, (state, _) in latest.items()},
        "flagged": flagged,
        "recall": {"lot": RECALLED.urn, "title": RECALLED.title,
                   "holders": [h.get("location") for h in found.holders],
                   "sales": sales},
        "day": day,
    }


def render(s: dict, console: Console) -> None:
    made = Counter()
    for n in s["nodes"].values():
        made.update(n["kinds"])
    records = Table(title="records", show_header=False)
    records.add_row("made by the 6 nodes (MicroPython)", str(s["records_made"]),
                    ", ".join(f"{k} {v}" for k, v in sorted(made.items())))
    for gw, c in s["gateways"].items():
        records.add_row(f"gateway {gw}: accepted / forwarded / still queued",
                        f"{c.get('accepted', '?')} / {c.get('forwarded', '?')} / "
                        f"{c.get('queued', '?')}",
                        ", ".join(f"{k} {v}" for k, v in sorted((c.get('rejected') or {})
                                                                .items())) or "no rejects")
    pending = s["records_made"] - s["records_stored"]
    if pending > 0:
        records.add_row("still in the nodes' outboxes at the stop", str(pending),
                        "kept on their flash; sent when they next connect")
    records.add_row("stored by the server (verified, once each)", str(s["records_stored"]),
                    ", ".join(f"{k} {v}" for k, v in sorted(s["stored_by_kind"].items())))
    records.add_row("missing (a seq below a node's highest stored)", str(s["records_missing"]),
                    "none lost" if not s["records_missing"] else "[red]lost on the way")
    records.add_row("rejected by the server", str(sum(s["rejects"].values())),
                    ", ".join(f"{k} {v}" for k, v in sorted(s["rejects"].items())) or "none")
    flagged = Table(title="instruments flagged by the drift engine")
    for col in ("instrument", "state", "why"):
        flagged.add_column(col)
    for f in s["flagged"]:
        colour = "red" if f["state"] == "out_of_tolerance" else "yellow"
        flagged.add_row(f["instrument"], f"[{colour}]{f['state']}", "\n".join(f["why"]))
    fine = sorted(inst for inst, state in s["states"].items() if state not in FLAGGED)
    if fine:
        flagged.add_row(", ".join(fine), "[green]ok", "no check or zero reading out of line")
    recall = Table(title=f"recall of {s['recall']['title']}: {s['recall']['lot']}")
    for col in ("sold on", "sales", "kg", "state of the instrument at the sales"):
        recall.add_column(col)
    by_instrument: dict[str, list[dict]] = {}
    for sale in s["recall"]["sales"]:
        by_instrument.setdefault(str(sale["instrument"]), []).append(sale)
    watched = set(s["states"])  # before its first state change an instrument is ok
    for inst, sales in sorted(by_instrument.items()):
        states = Counter(sale["state"] or ("ok" if inst in watched else "not registered")
                         for sale in sales)
        recall.add_row(inst, str(len(sales)),
                       f"{sum(sale['qty_mg'] or 0 for sale in sales) / 1e6:.3f}",
                       ", ".join(f"{k} {v}" for k, v in sorted(states.items())))
    console.print(Group(records, flagged, recall))
    intruder = s.get("intruder")
    if intruder and "error" not in intruder:
        refused = {k: v for k, v in s["rejects"].items() if k in ("replay", "bad_signature")}
        console.print(f"intruder: sent {' and '.join(intruder['sent'])} on {intruder['topic']}; "
                      f"the server refused {sum(refused.values())} of 2 "
                      f"({', '.join(f'{k} {v}' for k, v in sorted(refused.items())) or 'none'})"
                      f"; the dashboard's Rejects page shows their bytes")
    elif intruder:
        console.print(f"[red]intruder: {intruder['error']}[/red]")
    if s["day"].get("checks_refused"):
        console.print(f"[red]the firmware refused the inspector's check command "
                      f"({s['day']['checks_refused']}): without checks only zero readings "
                      f"can show drift, and no calibration error can be seen[/red]")
    console.print(f"recall: {len(s['recall']['holders'])} holders "
                  f"({', '.join(h.rsplit(':', 1)[-1] for h in s['recall']['holders'])}), "
                  f"{len(s['recall']['sales'])} sales; `metrotrace trace recall "
                  f"{s['recall']['lot']} --data-dir {s.get('data_dir', '...')}` lists each")
