"""The dashboard's JSON over the sample store (no browser): states, charts, recall, refusals."""

from __future__ import annotations

import sqlite3

import pytest
from fastapi.testclient import TestClient

from metrotrace.server.api.app import create_app
from metrotrace.server.dashboard import recall
from metrotrace.server.dashboard.routes import make_router
from metrotrace.server.dashboard.sample import GTIN_HAM, LOT_RECALLED
from metrotrace.server.trace import CodeError, examples
from metrotrace.server.trace.query import Tracer
from metrotrace.server.trace.store import TraceStore


@pytest.fixture(scope="module")
def client(seeded_store):
    data, truth = seeded_store
    app = create_app(f"sqlite:///{data / 'metrotrace.sqlite3'}", routers=[make_router()])
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
    graph = recall.graph(Tracer(ts).forward(examples.A), {})
    places = {n["label"] for n in graph["nodes"] if n["kind"] == "place"}
    scales = {n["label"] for n in graph["nodes"] if n["kind"] == "instrument"}
    assert {examples.D1, examples.M1, examples.M2} <= places
    assert scales == {examples.S1, examples.S3}
    edges = {(e["src"], e["dst"]) for e in graph["edges"]}
    assert ("loc:" + examples.D1, "loc:" + examples.M1) in edges  # via pallet X
    assert ("loc:" + examples.M1, "inst:" + examples.S1) in edges
    conn.close()
    with pytest.raises(CodeError, match="gtin"):
        recall.lot_urn("123", "A")
