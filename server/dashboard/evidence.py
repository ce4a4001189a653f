"""Alerts with the evidence behind them, and gateways with their keys and nodes.

Invariant: evidence is what the store holds, decoded by the server's own record decoder
(`ingest.columns.decode`), never re-encoded: a forgery alert shows the record stored
first and the different bytes offered later under the same (node, seq); an instrument
alarm shows the checks outside the MPE and the engine's figures. Bytes leave as hex.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from metrotrace.firmware.metro.wire import record as wire

from ..ingest import RecordError
from ..ingest.columns import decode
from ..store.rows import InstrumentRow, RecordRow, Store
from .states import MAX_RECORDS, metrology_instrument

TAG = 32  # bytes of the node's HMAC-SHA256 tag after the record in a reject's data
DAY_MS = 86_400_000


def record_fields(row: RecordRow) -> dict[str, Any]:
    out = {k: (v.hex() if isinstance(v, bytes) else v) for k, v in row._asdict().items()
           if k not in ("record", "tag")}
    out["kind"] = wire.KIND_NAMES.get(row.kind, row.kind)
    out["record_hex"] = row.record.hex()
    out["tag_hex"] = row.tag.hex()
    return out


def _offered(data: bytes | None) -> RecordRow | None:
    if not data or len(data) <= TAG:
        return None
    try:
        return decode(data[:-TAG], data[-TAG:])
    except RecordError:
        return None


def _stored(store: Store, node: bytes, seq: int, near: int | None) -> RecordRow | None:
    windows = [(near - DAY_MS, near + DAY_MS)] if near is not None else []
    windows.append((None, None))
    for t0, t1 in windows:
        for r in store.records(node=node, t0=t0, t1=t1, limit=MAX_RECORDS):
            if r.seq == seq:
                return r
    return None


def stored_alerts(store: Store, limit: int = 200) -> list[dict]:
    """Stored alerts (forgeries, ...), newest first, each with its evidence."""
    alerts = store.alerts(limit=100_000)[-limit:]
    forged = {(r.node, r.seq): r for r in store.rejects(reason="forgery", limit=100_000)}
    out = []
    for a in reversed(alerts):
        item = {"id": a.id, "t": a.t, "site": a.site, "kind": a.kind, "detail": a.detail,
                "gateway": a.gateway, "node": a.node.hex() if a.node else None, "seq": a.seq,
                "instrument": a.instrument, "evidence": None}
        if a.node is not None and a.seq is not None:
            reject = forged.get((a.node, a.seq))
            offered = _offered(reject.data if reject else None)
            stored = _stored(store, a.node, a.seq, offered.t if offered else None)
            item["evidence"] = {
                "stored": record_fields(stored) if stored else None,
                "offered": record_fields(offered) if offered else None,
                "offered_hex": reject.data.hex() if reject and reject.data else None,
                "reject": reject.detail if reject else None}
        out.append(item)
    return out


def instrument_alarm(store: Store, row: InstrumentRow, state: dict, tabs: dict,
                     limit: int = 12) -> dict:
    """Evidence of one instrument's alarm: its worst checks against the in-service MPE."""
    from metrotrace.server.metrology.mpe import mpe

    inst = metrology_instrument(row, tabs)
    since = row.verified_on or 0
    worst = []
    limits: dict[int, Fraction | None] = {}
    for r in store.records(instrument=row.id, kinds=(wire.CHECK,), limit=MAX_RECORDS):
        if r.tq == wire.TQ_UNSET or r.t < since or r.value is None or r.reference is None:
            continue
        if r.reference not in limits:
            limits[r.reference] = mpe(inst, r.reference, tabs)
        limit_ = limits[r.reference]
        if not limit_:
            continue
        err = r.value - r.reference
        worst.append({"t": r.t, "node": r.node.hex(), "seq": r.seq, "indication": r.value,
                      "reference": r.reference, "error": err, "mpe": float(limit_),
                      "r": round(float(Fraction(err) / limit_), 3),
                      "outside": abs(err) > limit_})
    worst.sort(key=lambda c: (-abs(c["r"]), c["t"]))
    return {"instrument": row.id, "site": row.site, "state": state["state"],
            "reasons": state.get("reasons", []), "first_alarm_ms": state.get("first_alarm_ms"),
            "checks_outside": sum(c["outside"] for c in worst), "worst": worst[:limit]}


def gateways(store: Store, now_ms: int) -> list[dict]:
    """Every gateway with its keys (and each key's state now), nodes and reject counts."""
    reg = store.registry()
    by_gateway: dict[str | None, int] = {}
    reasons: dict[str | None, dict[str, int]] = {}
    for r in store.rejects(limit=1_000_000):
        by_gateway[r.gateway] = by_gateway.get(r.gateway, 0) + 1
        reasons.setdefault(r.gateway, {})
        reasons[r.gateway][r.reason] = reasons[r.gateway].get(r.reason, 0) + 1
    instruments: dict[bytes, list[str]] = {}
    for i in reg["instruments"]:
        if i.node is not None:
            instruments.setdefault(i.node, []).append(i.id)
    out = []
    for g in reg["gateways"]:
        keys = []
        for k in reg["keys"]:
            if k.gateway != g.id:
                continue
            if k.revoked_at is not None and k.revoked_at <= now_ms:
                state = "revoked"
            elif k.valid_from > now_ms:
                state = "not_yet_valid"
            else:
                state = "active"
            keys.append({"kid": k.kid.hex(), "public_key": k.public_key.hex(),
                         "valid_from": k.valid_from, "revoked_at": k.revoked_at,
                         "state": state})
        nodes = [{"id": n.id.hex(), "instruments": instruments.get(n.id, [])}
                 for n in reg["nodes"] if n.gateway == g.id]
        out.append({"id": g.id, "site": g.site, "keys": keys, "nodes": nodes,
                    "rejects": by_gateway.get(g.id, 0), "reject_reasons": reasons.get(g.id, {})})
    return out
