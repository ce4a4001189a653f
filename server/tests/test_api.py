"""The HTTP API over a real store: reads open, writes need the token, OpenAPI documented."""

from typing import Annotated

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import APIRouter, Depends
from fastapi.testclient import TestClient

from metrotrace.gateway import envelope
from metrotrace.server.api.app import create_app
from metrotrace.server.api.deps import get_store
from metrotrace.server.ingest.core import Ingest
from metrotrace.server.ingest.synth import T0
from metrotrace.server.store import AlertRow, Store

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def client(loaded, site, store_url):
    ingest = Ingest(loaded)
    records = [site.weighing(i % site.nodes, T0 + i, 1000 + i) for i in range(9)]
    records.append(site.check(0, T0 + 100, 10_005, 10_000))
    ingest.handle(site.topic, site.seal(records), T0 + 1000)
    ingest.handle(site.topic, b"junk", T0 + 2000)
    extra = APIRouter()

    @extra.get("/extra/count")
    def count(store: Annotated[Store, Depends(get_store)]):
        return {"records": store.count("records")}

    with TestClient(create_app(store_url, token=TOKEN, routers=[extra])) as c:
        yield c


def test_reads(client, site):
    inst = site.instrument(0)
    assert {i["id"] for i in client.get("/instruments").json()} == {
        site.instrument(i) for i in range(3)}
    readings = client.get(f"/instruments/{inst}/readings", params={"t0": T0 + 3}).json()
    assert [(r["t"], r["value"], r["kind"]) for r in readings] == [
        (T0 + 3, 1003, "weighing"), (T0 + 6, 1006, "weighing")]
    (check,) = client.get(f"/instruments/{inst}/checks").json()
    assert (check["value"], check["reference"], check["kind"]) == (10_005, 10_000, "check")
    (reject,) = client.get("/rejects").json()
    assert reject["reason"] == "malformed"
    (gw,) = client.get("/gateways").json()
    assert gw["id"] == site.gateway and len(gw["keys"]) == 1
    assert client.get("/extra/count").json() == {"records": 10}
    assert client.get("/instruments/nope").status_code == 404


def test_writes_need_the_token(client, site):
    body = {"site": "market", "type": "NAWI", "accuracy_class": "III", "max": 6000,
            "min": 40, "e": 2, "unit": "g", "status": "suspended"}
    assert client.put("/instruments/NEW", json=body).status_code == 401
    assert client.put("/instruments/NEW", json=body,
                      headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.put("/instruments/NEW", json=body, headers=AUTH).status_code == 200
    assert client.get("/instruments", params={"status": "suspended"}).json()[0]["id"] == "NEW"
    bad = client.put("/instruments/BAD", json={**body, "unit": "lb"}, headers=AUTH)
    assert bad.status_code == 422 and "unit" in bad.json()["detail"]


def test_key_rotation_and_revocation_through_the_api(client, site):
    new = Ed25519PrivateKey.generate()
    public = envelope.raw_public(new.public_key()).hex()
    added = client.post(f"/gateways/{site.gateway}/keys", headers=AUTH,
                        json={"public_key": public, "valid_from": T0 + 5000})
    assert added.status_code == 201
    kid = added.json()["kid"]
    assert kid == envelope.key_id(new.public_key()).hex()
    revoked = client.post(f"/gateways/{site.gateway}/keys/{kid}/revoke", headers=AUTH,
                          json={"revoked_at": T0 + 9000})
    assert revoked.json()["revoked_at"] == T0 + 9000
    keys = client.get("/gateways").json()[0]["keys"]
    assert sorted(k["revoked_at"] or 0 for k in keys) == [0, T0 + 9000]


def test_openapi_documents_the_routes(client):
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/instruments", "/instruments/{instrument}/readings", "/alerts", "/rejects",
                 "/gateways", "/gateways/{gateway}/keys", "/registry"):
        assert path in paths


def test_alerts_are_listed_by_site_and_time(client, loaded, site):
    site.next_seq = dict.fromkeys(site.node_ids, 1)  # seq 1 again, other bytes: forgery
    outcome = Ingest(loaded).handle(site.topic, site.seal([site.weighing(0, T0, 77)]),
                                    T0 + 3000)
    (forgery,) = outcome.alerts
    loaded.add_alert(AlertRow(T0 + 5000, "harbour", "out_of_tolerance", {"e": 3},
                              instrument="SCALE-9"))
    everything = client.get("/alerts").json()
    assert [(a["site"], a["kind"]) for a in everything] == [
        ("market", "forgery"), ("harbour", "out_of_tolerance")]
    (market,) = client.get("/alerts", params={"site": "market"}).json()
    assert market["id"] == forgery.id and market["node"] == site.node_ids[0].hex()
    assert market["detail"]["seq"] == 1 and market["seq"] == 1
    (late,) = client.get("/alerts", params={"since": T0 + 4000}).json()
    assert late["instrument"] == "SCALE-9" and late["detail"] == {"e": 3}
    assert client.get("/alerts", params={"limit": 10**6}).status_code == 422


def test_post_registry_loads_entries_whole_or_not_at_all(client):
    entries = {"site": [{"id": "harbour", "name": "Harbour"}],
               "instrument": [{"id": "DISP-1", "site": "harbour", "type": "fuel_dispenser",
                               "accuracy_class": "0.5", "max": 60000, "min": 2000, "e": 10,
                               "unit": "mL", "verification_due": "2026-06-01"}]}
    assert client.post("/registry", json=entries).status_code == 401
    done = client.post("/registry", json=entries, headers=AUTH)
    assert done.status_code == 200 and done.json() == {"loaded": 2}
    disp = client.get("/instruments/DISP-1").json()
    assert (disp["unit"], disp["max"], disp["verification_due"]) == ("mL", 60000,
                                                                     1780272000000)
    bad = {"site": [{"id": "pier"}], "instrument": [{**entries["instrument"][0], "id": "X",
                                                     "max": "lots"}]}
    refused = client.post("/registry", json=bad, headers=AUTH)
    assert refused.status_code == 422
    assert refused.json()["detail"] == "instrument[0].max: expected an integer in base units"
    assert client.get("/instruments/X").status_code == 404  # nothing of it was loaded
    assert "pier" not in {s.id for s in client.app.state.store.registry()["sites"]}


def test_without_a_configured_token_every_write_is_refused(loaded, store_url):
    with TestClient(create_app(store_url, token=None)) as c:
        for method, path, body in (
                ("put", "/instruments/NEW", {"site": "market"}),
                ("post", "/registry", {"site": [{"id": "x", "name": "x"}]}),
                ("post", "/gateways/market-1/keys", {"public_key": "00" * 32, "valid_from": 0})):
            for headers in ({}, {"Authorization": "Bearer anything"}, {"Authorization": ""}):
                r = c.request(method, path, json=body, headers=headers)
                assert r.status_code == 403, (path, headers, r.text)
                assert r.json()["detail"] == "writes are disabled: no API token set"
        assert c.get("/instruments").status_code == 200  # reads stay open
    assert "x" not in {s.id for s in loaded.registry()["sites"]}
