"""The server's own routes: instruments, readings, checks, alerts, gateways and keys, rejects.

Invariant: values leave as stored (integers in base units, UTC ms); bytes leave as
lowercase hex; nothing here writes without `require_token`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Query

from metrotrace.firmware.metro.wire import record as wire

from ..registry import RegistryError
from ..registry.keys import kid_of
from ..registry.load import instrument as parse_instrument
from ..registry.load import parse
from ..store.rows import GatewayKeyRow, RecordRow, Store
from .deps import get_store, require_token

router = APIRouter()
StoreDep = Annotated[Store, Depends(get_store)]
Limit = Annotated[int, Query(le=100_000)]
JsonBody = Annotated[dict, Body()]
READINGS = (wire.WEIGHING, wire.DISPENSE)
CHECKS = (wire.CHECK, wire.ZERO)


def _hex(value: Any) -> Any:
    return value.hex() if isinstance(value, bytes) else value


def _row(row: Any, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    items = row._asdict().items() if isinstance(row, tuple) else row.__dict__.items()
    return {k: _hex(v) for k, v in items if k not in skip}


def _reading(row: RecordRow) -> dict[str, Any]:
    out = _row(row, skip=("record", "tag"))
    out["kind"] = wire.KIND_NAMES[row.kind]
    return out


@router.get("/instruments", tags=["instruments"], summary="Instruments with their status")
def instruments(store: StoreDep, status: str | None = None) -> list[dict]:
    rows = store.registry()["instruments"]
    return [_row(r) for r in rows if status is None or r.status == status]


@router.get("/instruments/{instrument}", tags=["instruments"])
def instrument(instrument: str, store: StoreDep) -> dict:
    for r in store.registry()["instruments"]:
        if r.id == instrument:
            return _row(r)
    raise HTTPException(404, f"instrument {instrument!r} is not registered")


@router.put("/instruments/{instrument}", tags=["instruments"],
            dependencies=[Depends(require_token)], summary="Register or update an instrument")
def put_instrument(instrument: str, body: JsonBody,
                   store: StoreDep) -> dict:
    try:
        row = parse_instrument({**body, "id": instrument})
    except RegistryError as e:
        raise HTTPException(422, str(e)) from None
    store.put(row)
    return _row(row)


def _records(store: Store, instrument: str, kinds: tuple[int, ...], t0: int | None,
             t1: int | None, limit: int) -> list[dict]:
    return [_reading(r) for r in store.records(instrument=instrument, kinds=kinds, t0=t0, t1=t1,
                                               limit=limit)]


@router.get("/instruments/{instrument}/readings", tags=["readings"],
            summary="Weighings and dispenses of one instrument in [t0, t1) (UTC ms)")
def readings(instrument: str, store: StoreDep, t0: int | None = None, t1: int | None = None,
             limit: Limit = 1000) -> list:
    return _records(store, instrument, READINGS, t0, t1, limit)


@router.get("/instruments/{instrument}/checks", tags=["readings"],
            summary="Checks against references and zero readings in [t0, t1) (UTC ms)")
def checks(instrument: str, store: StoreDep, t0: int | None = None, t1: int | None = None,
           limit: Limit = 1000) -> list:
    return _records(store, instrument, CHECKS, t0, t1, limit)


@router.get("/alerts", tags=["alerts"])
def alerts(store: StoreDep, site: str | None = None, since: int | None = None,
           limit: Limit = 1000) -> list:
    return [_row(a) for a in store.alerts(site=site, since=since, limit=limit)]


@router.get("/rejects", tags=["rejects"], summary="Rejected messages with their reason")
def rejects(store: StoreDep, reason: str | None = None, since: int | None = None,
            limit: Limit = 1000) -> list:
    return [_row(r) for r in store.rejects(reason=reason, since=since, limit=limit)]


@router.get("/gateways", tags=["gateways"], summary="Gateways with every key they ever had")
def gateways(store: StoreDep) -> list[dict]:
    reg = store.registry()
    return [{"id": g.id, "site": g.site,
             "keys": [_row(k) for k in reg["keys"] if k.gateway == g.id]}
            for g in reg["gateways"]]


@router.post("/gateways/{gateway}/keys", tags=["gateways"], status_code=201,
             dependencies=[Depends(require_token)],
             summary="Add a gateway key (rotation: the new key's valid_from)")
def add_key(gateway: str, public_key: Annotated[str, Body(embed=True)],
            valid_from: Annotated[int, Body(embed=True)], store: StoreDep) -> dict:
    if gateway not in {g.id for g in store.registry()["gateways"]}:
        raise HTTPException(404, f"gateway {gateway!r} is not registered")
    try:
        raw = bytes.fromhex(public_key)
    except ValueError:
        raise HTTPException(422, "public_key: expected hex") from None
    if len(raw) != 32:
        raise HTTPException(422, "public_key: expected a 32-byte raw Ed25519 key")
    row = GatewayKeyRow(kid_of(raw), gateway, raw, valid_from)
    store.put(row)
    return _row(row)


@router.post("/gateways/{gateway}/keys/{kid}/revoke", tags=["gateways"],
             dependencies=[Depends(require_token)],
             summary="Revoke a key from revoked_at (UTC ms) on; history stays verifiable")
def revoke_key(gateway: str, kid: str, revoked_at: Annotated[int, Body(embed=True)],
               store: StoreDep) -> dict:
    for k in store.registry()["keys"]:
        if k.gateway == gateway and k.kid.hex() == kid:
            row = GatewayKeyRow(k.kid, k.gateway, k.public_key, k.valid_from, revoked_at)
            store.put(row)
            return _row(row)
    raise HTTPException(404, f"no key {kid} for gateway {gateway!r}")


@router.post("/registry", tags=["registry"], dependencies=[Depends(require_token)],
             summary="Load registry entries (the JSON form of a registry file)")
def load_registry(body: JsonBody, store: StoreDep) -> dict:
    try:
        rows = parse(body)
    except RegistryError as e:
        raise HTTPException(422, str(e)) from None
    for row in rows:
        store.put(row)
    return {"loaded": len(rows)}
