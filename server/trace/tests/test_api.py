import sqlite3

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from metrotrace.server.cli import api_app
from metrotrace.server.trace import jsonld
from metrotrace.server.trace.api import make_router, shared
from metrotrace.server.trace.examples import M1, M2, S1, A, X, food_events
from metrotrace.server.trace.query import TableTolerance
from metrotrace.server.trace.store import TraceStore
from metrotrace.tools.cli import build_parser

from .conftest import PG_TEST, fresh_pg

TOKEN = "s3cret-token"


@pytest.fixture
def client(tmp_path):
    conn = sqlite3.connect(tmp_path / "api.sqlite3", check_same_thread=False)
    store = TraceStore(conn)
    store.migrate()
    app = FastAPI()
    app.include_router(make_router(shared(store)))
    with TestClient(app) as c:
        yield c, store
    conn.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def server_api(request, tmp_path):
    """The app `metrotrace server api` serves, built from its own command line."""
    if request.param == "sqlite":
        store_args = ["--data-dir", str(tmp_path)]
    else:
        fresh_pg().close()
        store_args = ["--db", PG_TEST]
    args = build_parser().parse_args(["server", "api", *store_args, "--token", TOKEN,
                                      "--no-dashboard"])
    app = api_app(args)
    with TestClient(app) as http:
        yield http
    app.state.trace_stores.close()


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


def _times(doc):
    return sorted(e["eventTime"] for e in jsonld.event_list(doc))


def test_server_api_serves_capture_and_queries_with_the_api_token(server_api):
    http = server_api
    events = food_events()  # times 1..200 ms after the epoch; pallet X packed at 10 ms
    doc = jsonld.write_document(events)
    assert http.post("/epcis/capture", json=doc).status_code == 401  # no token
    wrong = {"Authorization": "Bearer nope"}
    assert http.post("/epcis/capture", json=doc, headers=wrong).status_code == 401
    auth = {"Authorization": f"Bearer {TOKEN}"}
    answer = http.post("/epcis/capture", json=doc, headers=auth)
    assert answer.status_code == 201 and answer.json()["captured"] == 18
    # by EPC: pallet X is packed, shipped, received and unpacked — its contents' own
    # events (lots A and B) are not X's
    by_epc = http.get("/epcis/events", params={"MATCH_anyEPC": X}).json()
    jsonld.validate(by_epc)
    assert [e.biz_step for e in jsonld.read_document(by_epc)] == [
        "packing", "shipping", "receiving", "unpacking"]
    # by lot: A's commissioning, moves, packing onto X and Y, sales and stock count
    by_lot = jsonld.read_document(http.get("/epcis/events",
                                           params={"MATCH_anyEPCClass": A}).json())
    assert len(by_lot) == 8 and all(A in [q.epc_class for q in e.quantities] for e in by_lot)
    # by time: [20 ms, 31 ms) holds the two shipments and the receipt and unpacking of X
    window = {"GE_eventTime": "1970-01-01T00:00:00.020Z",
              "LT_eventTime": "1970-01-01T00:00:00.031Z"}
    in_window = http.get("/epcis/events", params=window).json()
    assert _times(in_window) == ["1970-01-01T00:00:00.020+00:00",
                                 "1970-01-01T00:00:00.021+00:00",
                                 "1970-01-01T00:00:00.022+00:00",
                                 "1970-01-01T00:00:00.030+00:00"]
    both = http.get("/epcis/events", params={**window, "MATCH_anyEPC": X}).json()
    assert len(jsonld.event_list(both)) == 3
    bad = http.get("/epcis/events", params={"GE_eventTime": "yesterday"})
    assert bad.status_code == 400 and bad.json()["field"] == "GE_eventTime"
    # the trace routes read the same store; a forward trace reaches both sales of A
    trace = http.get("/trace/forward", params={"epc": A}).json()
    assert sorted(s["location"] for s in trace["sales"]) == [M1, M2]
    assert http.get("/health").json()["ok"]
