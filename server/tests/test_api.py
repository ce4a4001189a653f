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
from metrotrace.server.store import Store

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
