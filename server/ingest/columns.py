"""Record bytes -> RecordRow columns, fast: the server's hot path decodes every record.

Invariant: accepts exactly the records `metro.wire.record.decode` accepts (a property test
pins the two together on generated records), except that byte-level canonical form is
left to the gateway and the node tag: the server keeps and re-verifies the bytes as
received and never re-encodes them. Unsigned values that the store keeps as BIGINT must be
below 2**63. Errors name the field, like the firmware's.

`decode_many` decodes a batch's records with one cbor2 call (the records are complete CBOR
items, so their concatenation behind an array head is one CBOR array): the per-call cost
of cbor2 is paid once per batch, not once per record.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence

import cbor2

from metrotrace.firmware.metro.wire import record as wire

from ..store.rows import RecordRow
from . import RecordError

_MAX_BIGINT = (1 << 63) - 1
_INT, _UINT, _TEXT, _BYTES, _MAP = wire.INT, wire.UINT, wire.TEXT, wire.BYTES, wire.MAP
_CBOR_ERRORS = (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError, RecursionError)


def _layout(kind: int) -> tuple:
    spec = wire.HEADER + wire.BODY[kind]
    key = {name: k for k, name, _, _ in spec}
    value = {wire.WEIGHING: "net", wire.DISPENSE: "volume", wire.CHECK: "indication",
             wire.ZERO: "indication"}.get(kind)
    columns = (value, "gross", "tare", "reference", "e" if "e" in key else "d", "unit", "raw",
               "flags", "link")
    extra = tuple((k, name) for k, name, _, _ in wire.BODY[kind] if name not in columns)
    bigint = tuple(key[n] for n in ("seq", "t", "prev", "e", "d", "flags", "link") if n in key)
    return (tuple((k, name, typ, req) for k, name, typ, req in spec), frozenset(key.values()),
            tuple(key.get(c, -1) for c in columns), extra, bigint)


_LAYOUT = {kind: _layout(kind) for kind in wire.BODY}
_NAMES = {kind: {k: name for k, name, _, _ in wire.HEADER + wire.BODY[kind]} for kind in wire.BODY}


def decode(data: bytes, tag: bytes) -> RecordRow:
    """Decode and check one record; raise RecordError naming the field at fault."""
    try:
        raw = cbor2.loads(data)
    except _CBOR_ERRORS:
        raise RecordError("record: not CBOR") from None
    return _row(raw, data, tag)


def decode_many(pairs: Sequence[tuple[bytes, bytes]]) -> list[RecordRow | RecordError]:
    """Decode a batch's (record, tag) pairs; a bad record yields its RecordError in place."""
    n = len(pairs)
    head = bytes([0x80 + n]) if n < 24 else (
        b"\x98" + bytes([n]) if n < 256 else b"\x99" + struct.pack(">H", n))
    try:
        raws = cbor2.loads(head + b"".join(p[0] for p in pairs))
        if len(raws) != n:  # a record holding several items would shift the rest
            raise ValueError("count")
    except _CBOR_ERRORS:
        raws = None
    out: list[RecordRow | RecordError] = []
    for i, (data, tag) in enumerate(pairs):
        try:
            out.append(decode(data, tag) if raws is None else _row(raws[i], data, tag))
        except RecordError as e:
            out.append(e)
    return out


def _row(raw: object, data: bytes, tag: bytes) -> RecordRow:
    if raw.__class__ is not dict:
        raise RecordError("record: expected a map")
    kind = raw.get(1)
    layout = _LAYOUT.get(kind) if kind.__class__ is int else None
    if layout is None:
        raise RecordError(f"kind: unknown record kind {kind!r}")
    spec, allowed, column_keys, extra_keys, bigint_keys = layout
    if raw.get(0) != wire.VERSION:
        raise RecordError(f"v: unsupported version {raw.get(0)!r}")
    if not raw.keys() <= allowed:
        bad = next(k for k in raw if k not in allowed)
        raise RecordError(f"record: unknown key {bad!r}")
    _check_fields(raw, spec)
    return _columns(raw, kind, data, tag, column_keys, extra_keys, bigint_keys)


def _check_fields(raw: dict, spec: tuple) -> None:
    """Check every field's type and range; the first bad field is named in the error."""
    for key, name, typ, required in spec:
        v = raw.get(key)
        if v is None:  # the firmware reads a null field as an absent one
            if required:
                raise RecordError(f"{name}: missing")
            continue
        cls = v.__class__
        if typ == _UINT:
            if cls is not int:
                raise RecordError(f"{name}: expected integer")
            if not 0 <= v <= wire.MAX_U64:
                raise RecordError(f"{name}: out of unsigned 64-bit range")
        elif typ == _INT:
            if cls is not int:
                raise RecordError(f"{name}: expected integer")
            if not wire.MIN_I64 <= v <= wire.MAX_I64:
                raise RecordError(f"{name}: out of signed 64-bit range")
        elif typ == _TEXT:
            if cls is not str:
                raise RecordError(f"{name}: expected text")
            if len(v) > wire.MAX_TEXT:
                raise RecordError(f"{name}: text too long")
        elif typ == _BYTES:
            if cls is not bytes:
                raise RecordError(f"{name}: expected bytes")
            if len(v) > wire.MAX_TEXT:
                raise RecordError(f"{name}: bytes too long")
        elif cls is not dict or not all(k.__class__ is str and v2.__class__ in _SCALARS
                                        for k, v2 in v.items()):
            raise RecordError(f"{name}: map holds text keys and scalar values")


def _columns(raw: dict, kind: int, data: bytes, tag: bytes, column_keys: tuple,
             extra_keys: tuple, bigint_keys: tuple) -> RecordRow:
    node, seq = raw[2], raw[3]
    if not 1 <= len(node) <= 16:
        raise RecordError("node: id must be 1 to 16 bytes")
    if seq == 0:
        raise RecordError("seq: 0 is reserved (prev of a node's first record)")
    if raw[7] >= seq:
        raise RecordError("prev: must be below seq")
    if raw[5] not in (wire.TQ_UNSET, wire.TQ_NTP, wire.TQ_GATEWAY):
        raise RecordError("tq: unknown time quality")
    g = raw.get
    vk, gk, tk, rk, ek, uk, rawk, fk, lk = column_keys
    unit = g(uk)
    if unit is not None and unit not in wire.UNITS:
        raise RecordError(f"unit: not a base unit: {unit}")
    for key in bigint_keys:
        if (g(key) or 0) > _MAX_BIGINT:
            raise RecordError(f"{_NAMES[kind][key]}: beyond the store's signed 64-bit range")
    extra = None
    if extra_keys:
        extra = {name: _jsonable(raw[k]) for k, name in extra_keys if g(k) is not None}
        extra = json.dumps(extra, sort_keys=True) if extra else None
    return RecordRow(node, seq, kind, raw[4], raw[5], g(6), raw[7], g(vk), g(gk), g(tk),
                     g(rk), g(ek), unit, g(rawk), g(fk), g(lk), extra, data, tag)


_SCALARS = (int, str, bytes, type(None))


def _jsonable(value: object) -> object:
    if value.__class__ is bytes:
        return value.hex()
    if value.__class__ is dict:
        return {k: _jsonable(v) for k, v in value.items()}
    return value
