"""The dashboard's JSON over the sample store (no browser): states, charts, recall, refusals."""

from __future__ import annotations

import argparse
import shutil
import sqlite3
from dataclasses import replace

import pytest
from fastapi.testclient import TestClient

from metrotrace.firmware.metro.wire import record
from metrotrace.server import cli
from metrotrace.server.api.app import create_app
from metrotrace.server.dashboard import recall, states
from metrotrace.server.dashboard.routes import api_docs_router, make_router
from metrotrace.server.dashboard.sample import GTIN_HAM, LOT_RECALLED, send
from metrotrace.server.ingest.core import Ingest
from metrotrace.server.metrology import kernels, settings
from metrotrace.server.metrology.monitor import Monitor
from metrotrace.server.store import open_store
from metrotrace.server.trace import CodeError, examples, netgen
from metrotrace.server.trace.build import Builder
from metrotrace.server.trace.query import Tracer
from metrotrace.server.trace.store import TraceStore


@pytest.fixture(scope="module")
def client(seeded_store):
    data, truth = seeded_store
    app = create_app(f"sqlite:///{data / 'metrotrace.sqlite3'}",
                     routers=[api_docs_router(), make_router()])
    with TestClient(app) as c:
        yield c, truth


def test_fleet_states_come_from_the_engine_with_reasons(client):
    c, truth = client
    fleet = {i["instrument"]: i for i in c.get("/dashboard/api/fleet").json()["instruments"]}
    assert fleet[truth.tampered]["state"] == "out_of_tolerance"
    assert fleet[truth.tampered]["out"] >= 10
    assert "outside the in-service MPE" in fleet[truth.tampered]["reasons"][0]
    assert fleet[truth.drifting]["state"] == "drifting"
    assert fleet[truth.drifting]["out"] == 0
    assert fleet[truth.overdue]["state"] == "overdue_verification"
    assert fleet[truth.drifting]["verification_due"] > truth.now
    assert all(-1.0 <= r <= 1.0 for r in fleet[truth.drifting]["spark"])


def test_instrument_charts_are_the_engines_state_after_each_check(client):
    c, truth = client
    body = c.get(f"/dashboard/api/instrument/{truth.drifting}").json()
    checks, fleet_row = body["charts"]["checks"], body["instrument"]
    assert len(checks) == fleet_row["checks"]
    assert sum(p["cusum_signal"] for p in checks) == fleet_row["cusum"]
    assert sum(p["ewma_signal"] for p in checks) == fleet_row["ewma"]
    assert all(p["baseline"] for p in checks[:30]) and not checks[30]["baseline"]
    assert {p["mpe"] for p in checks} == {10.0}  # class III, 10 kg = 2000 e: 2 e in service
    tampered = c.get(f"/dashboard/api/instrument/{truth.tampered}").json()
    codes = [e["code"] for e in tampered["charts"]["events"]]
    assert "cal_change" in codes and "seal" in codes
    assert c.get("/dashboard/api/instrument/NOPE").status_code == 404


def test_recall_answers_every_sale_and_refuses_bad_codes_by_field(client):
    c, truth = client
    body = c.get("/dashboard/api/recall", params={"gtin": GTIN_HAM, "lot": LOT_RECALLED}).json()
    assert body["summary"]["sales"] == len(truth.sales_recalled)
    assert sorted((s["instrument"], s["time"]) for s in body["sales"]) == sorted(
        truth.sales_recalled)
    late = [s for s in body["sales"] if s["instrument"] == truth.tampered and s["after_alarm"]]
    assert late and {s["tolerance"] for s in late} == {"out_of_tolerance"}  # sample wrote it
    kinds = {n["kind"] for n in body["graph"]["nodes"]}
    assert kinds == {"lot", "place", "instrument"}
    csv = c.get("/dashboard/api/recall",
                params={"gtin": GTIN_HAM, "lot": LOT_RECALLED, "format": "csv"}).text
    assert csv.count("\nsale,") == len(truth.sales_recalled)
    bad = c.get("/dashboard/api/recall", params={"gtin": "04012345000017", "lot": "X"})
    assert bad.status_code == 422 and "gtin" in bad.json()["detail"]
    missing = c.get("/dashboard/api/recall", params={"gtin": GTIN_HAM})
    assert missing.status_code == 422 and missing.json()["detail"].startswith("lot")
    lots = c.get("/dashboard/api/lots").json()["lots"]
    assert {"gtin": GTIN_HAM, "lot": LOT_RECALLED} in [
        {"gtin": x["gtin"], "lot": x["lot"]} for x in lots]


def test_page_and_static_files_are_local_and_confined(client):
    c, _ = client
    page = c.get("/").text
    assert "/dashboard/static/app.js" in page and "http" not in page.replace(
        'href="/docs"', "")
    assert c.get("/dashboard/static/app.js").headers["content-type"].startswith(
        "text/javascript")
    for name in ("..%2Fsample.py", ".hidden.js", "nope.js", "..%2F..%2Froutes.py"):
        assert c.get(f"/dashboard/static/{name}").status_code == 404, name
    assert c.get("/health").json()["ok"]  # the API beside it still answers


def test_alert_evidence_shows_both_copies_of_a_forged_record(client):
    c, truth = client
    (forgery,) = [a for a in c.get("/dashboard/api/alerts").json()["stored"]
                  if a["kind"] == "forgery"]
    stored, offered = forgery["evidence"]["stored"], forgery["evidence"]["offered"]
    assert (stored["node"], stored["seq"]) == (offered["node"], offered["seq"])
    assert stored["record_hex"] != offered["record_hex"]
    assert stored["value"] != offered["value"]


def test_recall_graph_keeps_a_mixed_pallet_from_leaking_the_other_lot(tmp_path):
    """examples.food_events: pallet X carries lots A and B to M1; Y carries only A to M2.
    A's graph reaches M1 and M2 and the scales that sold A (S1, S3), never S2 (sold B)."""
    conn = sqlite3.connect(tmp_path / "t.sqlite3")
    ts = TraceStore(conn)
    ts.migrate()
    ts.capture(examples.food_events(), 0)
    trace = Tracer(ts).forward(examples.A)
    graph = recall.graph(trace, {}, recall.movements(ts, trace.nodes))
    places = {n["label"] for n in graph["nodes"] if n["kind"] == "place"}
    scales = {n["label"] for n in graph["nodes"] if n["kind"] == "instrument"}
    assert {examples.D1, examples.M1, examples.M2} <= places
    assert scales == {examples.S1, examples.S3}
    edges = {(e["src"], e["dst"]) for e in graph["edges"]}
    assert ("loc:" + examples.D1, "loc:" + examples.M1) in edges  # via pallet X
    assert ("loc:" + examples.D1, "loc:" + examples.M2) in edges  # via pallet Y
    assert ("loc:" + examples.M1, "loc:" + examples.M2) not in edges
    assert ("loc:" + examples.M1, "inst:" + examples.S1) in edges
    conn.close()
    with pytest.raises(CodeError, match="gtin"):
        recall.lot_urn("123", "A")


def test_recall_graph_draws_only_moves_that_happened_on_a_branching_network(tmp_path):
    """A producer ships to a distributor, which ships to two markets separately (one by a
    named destination, one without); a stall of the first market sells. Edges follow the
    shipments: D -> M1 and D -> M2, never M1 -> M2 (which held the lot after M1), and the
    stall hangs from its market, not from nowhere."""
    lot = netgen.lot_urn(77, "BR1")
    prod, dist, m1, m2 = (netgen.sgln(k, 1) for k in ("P", "D", "M", "N"))
    stall = f"urn:epc:id:sgln:{netgen.CP}.M1.3"
    b = Builder("branching")
    named = b.move(40, "shipping", dist, [(lot, 10, "mass")])
    named = replace(named, destinations=(("urn:epcglobal:cbv:sdt:location", m2),))
    events = [
        b.commission(1, lot, 100, "mass", prod),
        b.move(2, "shipping", prod, [(lot, 100, "mass")]),
        b.move(3, "receiving", dist, [(lot, 100, "mass")]),
        b.move(10, "shipping", dist, [(lot, 50, "mass")]),
        b.move(20, "receiving", m1, [(lot, 50, "mass")]),
        named,
        b.move(30, "shipping", m1, [(lot, 5, "mass")]),  # to somewhere else by name below
        b.move(50, "receiving", m2, [(lot, 10, "mass")]),
        b.sell(60, lot, 2, "mass", stall, "urn:epc:id:giai:4012345.SC1", "0a", 1),
    ]
    events[6] = replace(events[6], destinations=(("location", netgen.sgln("X", 9)),))
    conn = sqlite3.connect(tmp_path / "b.sqlite3")
    ts = TraceStore(conn)
    ts.migrate()
    ts.capture(events, 0)
    trace = Tracer(ts).forward(lot)
    graph = recall.graph(trace, {}, recall.movements(ts, trace.nodes))
    conn.close()
    edges = {(e["src"].removeprefix("loc:"), e["dst"].removeprefix("loc:")): e["kind"]
             for e in graph["edges"]}
    assert edges == {("lot", prod): "move", (prod, dist): "move", (dist, m1): "move",
                     (dist, m2): "move", (m1, stall): "site",
                     (stall, "inst:urn:epc:id:giai:4012345.SC1"): "sale"}
    assert recall.site_of(stall) == m1 and recall.site_of(m1) is None


def test_page_summary_and_monitor_agree_under_one_drift_settings_file(seeded_store, tmp_path):
    """The same store read with the same settings file gives the same states to the
    monitor (which stores the alerts) and to the page; the settings matter (told that
    M-SCALE-02's checks scatter by 50 g, neither calls its 6 g creep drift), and the
    instrument page backs a zero-reading alarm with the zero chart's own signals."""
    data, truth = seeded_store
    shutil.copy(data / "metrotrace.sqlite3", tmp_path / "metrotrace.sqlite3")
    settings.write(tmp_path / settings.FILE, settings.Settings(
        kernels.Params(baseline=40), {"M-SCALE-02": 50.0}))
    drift = cli.drift_settings(argparse.Namespace(drift_settings=None, db=None,
                                                  data_dir=tmp_path))
    assert drift.params.baseline == 40 and drift.check_sigma == {"M-SCALE-02": 50.0}
    url = f"sqlite:///{tmp_path / 'metrotrace.sqlite3'}"
    store = open_store(url)
    try:  # M-SCALE-04's zero reading jumps to 2 e after 60 days at 0
        node, t0 = truth.scales[3], truth.now - 3_600_000
        zeros = [node.make(record.ZERO, t0 + k * 10_000, indication=10, e=5, unit="g")
                 for k in range(10)]
        send(Ingest(store), truth.market, zeros)
        now = truth.now + 60_000
        monitor = Monitor(store, params=drift.params, sigma=drift.check_sigma,
                          record_tolerance=False)
        monitor.run(now)
        page = {r["instrument"]: r for r in states.report(store, now, settings=drift)}
        default = {r["instrument"]: r["state"] for r in states.report(store, now)}
    finally:
        store.close()
    assert {i: r["state"] for i, r in page.items()} == {
        i: monitor.states.get(i, "ok") for i in page}
    assert default["M-SCALE-02"] == "drifting" != page["M-SCALE-02"]["state"]
    assert page["M-SCALE-04"]["zero_alarms"] > 0
    app = create_app(url, routers=[make_router(settings=drift)])
    with TestClient(app) as c:
        fleet = {i["instrument"]: i["state"] for i in c.get("/dashboard/api/fleet").json()[
            "instruments"]}
        body = c.get("/dashboard/api/instrument/M-SCALE-04").json()
        known = c.get("/dashboard/api/instrument/M-SCALE-02").json()
    assert fleet["M-SCALE-04"] == page["M-SCALE-04"]["state"]
    charts, row = body["charts"], body["instrument"]
    zero_signals = sum(p["cusum_signal"] + p["ewma_signal"] + p["out"] for p in charts["zeros"])
    assert zero_signals == row["zero_alarms"] > 0 and charts["zeros_total"] >= 10
    assert charts["limits"]["known_sigma"] is None and charts["limits"]["baseline"] == 40
    assert sum(p["cusum_signal"] for p in charts["checks"]) == row["cusum"]
    assert known["charts"]["limits"]["known_sigma"] == 50.0
    assert not any(p["baseline"] for p in known["charts"]["checks"])  # no baseline needed
    assert sum(p["ewma_signal"] for p in known["charts"]["checks"]) == known["instrument"][
        "ewma"]


def test_a_bad_drift_settings_file_is_refused_naming_the_key(tmp_path):
    (tmp_path / settings.FILE).write_text('{"check_sigma": {"M-SCALE-01": -1}}')
    with pytest.raises(SystemExit, match=r"check_sigma\.M-SCALE-01: must be positive"):
        cli.drift_settings(argparse.Namespace(drift_settings=None, db=None,
                                              data_dir=tmp_path))


def test_api_docs_are_served_without_a_cdn(client):
    c, _ = client
    page = c.get("/docs").text
    assert "/docs/static/apidocs.js" in page and "cdn" not in page.lower()
    assert "http" not in page  # every reference is local
    assert c.get("/docs/static/apidocs.js").headers["content-type"].startswith(
        "text/javascript")
    assert c.get("/docs/static/sample.py").status_code == 404
    assert c.get("/redoc").status_code == 404
    assert "/rejects" in c.get("/openapi.json").json()["paths"]
