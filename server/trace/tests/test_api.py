import sqlite3

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from metrotrace.server.trace import jsonld
from metrotrace.server.trace.api import make_router
from metrotrace.server.trace.examples import M1, S1, A, food_events
from metrotrace.server.trace.query import TableTolerance
from metrotrace.server.trace.store import TraceStore


@pytest.fixture
def client(tmp_path):
    conn = sqlite3.connect(tmp_path / "api.sqlite3", check_same_thread=False)
    store = TraceStore(conn)
    store.migrate()
    app = FastAPI()
    app.include_router(make_router(lambda: store))
    with TestClient(app) as c:
        yield c, store
    conn.close()


def test_capture_query_trace_and_recall(client):
    http, store = client
    doc = jsonld.write_document(food_events())
    answer = http.post("/epcis/capture", json=doc)
    assert answer.status_code == 201 and answer.json()["captured"] == 18
    TableTolerance(store).set_state(S1, 0, "out_of_tolerance")
    found = http.get("/epcis/events",
                     params={"MATCH_anyEPCClass": A, "EQ_bizStep": "retail_selling"})
    assert found.status_code == 200
    jsonld.validate(found.json())
    assert len(jsonld.read_document(found.json())) == 2
    trace = http.get("/trace/forward", params={"epc": A}).json()
    assert [s["tolerance"] for s in trace["sales"]] == ["out_of_tolerance", None]
    csv_text = http.get("/trace/recall", params={"lot": A, "format": "csv"}).text
    assert csv_text.splitlines()[0].startswith("kind,time_utc,location")
    assert sum(1 for line in csv_text.splitlines() if line.startswith("sale,")) == 2
    page = http.get("/trace/recall", params={"lot": A, "format": "html"}).text
    assert "<h1>Recall report" in page and S1 in page
    summary = http.get("/trace/recall", params={"lot": A}).json()["summary"]
    assert summary["sales"] == 2 and summary["sales_on_instruments_out_of_tolerance"] == 1
    balance = http.get("/trace/balance", params={"holder": M1, "lot": A}).json()
    assert balance[0]["held"] == 38_500_000
    assert http.get("/trace/backward", params={"start": M1}).json()["producers"]


def test_capture_refuses_whole_document_and_names_event_and_field(client):
    http, store = client
    doc = jsonld.write_document(food_events())
    doc["epcisBody"]["eventList"][4]["quantityList"][0]["uom"] = "LTR"
    answer = http.post("/epcis/capture", json=doc)
    assert answer.status_code == 400
    assert (answer.json()["event"], answer.json()["field"]) == (4, "quantityList[0].uom")
    assert store.rows("SELECT COUNT(*) FROM trace_event")[0][0] == 0
    broken = http.post("/epcis/capture", json={"type": "EPCISDocument", "epcisBody": {}})
    assert broken.status_code == 400 and broken.json()["field"]
