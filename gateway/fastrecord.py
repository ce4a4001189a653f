"""Node records decoded many at a time, in C where it can, identical in effect to the
firmware's `record.decode` (the single source of the record format).

`decode_raws(records)` gives, for each record's bytes, its fields keyed as on the wire
(`{0: v, 1: kind, 2: node, ...}`) when it can vouch that `record.decode` accepts those
bytes with exactly those values, else None (then ask `record.decode`, whose error
names the field). How it vouches, for a whole chunk at once:

1. One `cbor2` decode of the records as one array (a definite head, then the records
   back to back). An object hook notes where each map ends; every top-level item must
   be a map that ends exactly where its record ends. So record i is, byte for byte,
   what cbor2 read as item i.
2. One `cbor2.dumps` of the decoded items must give back the same bytes. cbor2 writes
   shortest heads, definite lengths, keys in dict order (the order read) and no tags;
   CBOR items are prefix-free, and each item starts where its record starts (step 1),
   so equal bytes mean each record is the deterministic encoding of its item: what the
   firmware's strict decoder accepts, decoding to the same values.
3. `record.validate`'s rules, checked per group of records that share a kind and a key
   tuple, column by column (types, 64-bit ranges, text lengths, version, node length,
   seq, prev < seq, tq, unit). Every valid record starts `00 01 01` after its one-byte
   map head (key 0, v = 1, key 1), so a record that does not is refused; this also
   keeps keys False/True, which equal 0/1 in a tuple, out of the groups. A group that
   fails is checked record by record (`_fields`), so one bad record costs only itself.
   Maps as values (an event's detail) and nulls are left to the firmware.

Anything unusual (a decode error, an item that is not a map, a boundary or a byte that
differs) sends the chunk to the record-by-record path (one `CBORDecoder` item at a
time, with the same checks), which finds the records it can still take.

Invariant: decode_raws(records)[i] is None or equals raw_of(record.decode(records[i]));
gateway/tests/test_fastwire.py holds it with hypothesis over valid, nearly valid and
malformed records.
"""

from __future__ import annotations

import io
from itertools import accumulate, chain, compress, repeat
from operator import getitem, itemgetter, lt

import cbor2

from metrotrace.firmware.metro.wire import record as wire_record

_SCHEMA = {kind: {key: (name, typ, required)
                  for key, name, typ, required in wire_record.HEADER + body}
           for kind, body in wire_record.BODY.items()}
_KEY_OF = {kind: {name: key for key, (name, _, _) in fields.items()}
           for kind, fields in _SCHEMA.items()}
_TYPE_OF = {wire_record.INT: int, wire_record.UINT: int, wire_record.TEXT: str,
            wire_record.BYTES: bytes}
_TQ = frozenset((wire_record.TQ_UNSET, wire_record.TQ_NTP, wire_record.TQ_GATEWAY))
_UNITS = frozenset(wire_record.UNITS)
_LEAD, _LEAD_AT = b"\x00\x01\x01", slice(1, 4)  # key 0, v = 1, key 1
_ERRORS = (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError, RecursionError,
           MemoryError, KeyError, IndexError)

# Wire keys of the header fields (record.HEADER): the same for every kind.
V, KIND, NODE, SEQ, T, TQ, INST, PREV = range(8)
BODY_FIELD = 8  # a status record's fw, an event's code
DETAIL = 9  # an event's detail map


def raw_of(fields: dict) -> dict:
    """Named fields (record.decode) -> the same fields keyed as on the wire."""
    keys = _KEY_OF[fields["kind"]]
    return {keys[name]: value for name, value in fields.items()}


def named(raw: dict) -> dict:
    """Wire-keyed fields -> named fields, as record.decode gives them."""
    schema = _SCHEMA[raw[KIND]]
    return {schema[key][0]: value for key, value in raw.items()}


class _Shape:
    """What every record of one (kind, keys) must satisfy, by column."""

    def __init__(self, kind: int, keys: tuple) -> None:
        schema = _SCHEMA[kind]
        wire = [schema[k][1] for k in keys]
        self.types = [_TYPE_OF.get(w) for w in wire]  # None: a map (never taken here)
        self.names = [schema[k][0] for k in keys]
        self.at = {name: i for i, name in enumerate(self.names)}
        self.uints = [i for i, w in enumerate(wire) if w == wire_record.UINT]
        self.ints = [i for i, w in enumerate(wire) if w == wire_record.INT]
        self.sized = [i for i, w in enumerate(wire) if w in (wire_record.TEXT,
                                                             wire_record.BYTES)]


def _shape(kind, keys: tuple) -> _Shape | None:
    schema = _SCHEMA.get(kind) if type(kind) is int else None
    if schema is None or any(type(k) is not int for k in keys):
        return None
    if list(keys) != sorted(set(keys)) or keys[:2] != (0, 1):  # canonical order
        return None
    if any(k not in schema for k in keys):
        return None
    if any(required and k not in keys for k, (_, _, required) in schema.items()):
        return None
    return _Shape(kind, keys)


_shapes: dict[tuple, _Shape | None] = {}


def _shape_of(kind, keys: tuple) -> _Shape | None:
    try:
        return _shapes[kind, keys]
    except KeyError:
        shape = _shapes[kind, keys] = _shape(kind, keys)
        return shape


def _in_range(values: list[int], low: int, high: int) -> bool:
    return not values or (min(values) >= low and max(values) <= high)


def _group_ok(shape: _Shape, group: list[dict]) -> bool:
    """True when every record of the group (same kind and key tuple) is valid."""
    if None in shape.types:
        return False  # a map (an event's detail): the firmware's own path
    # Columns: every record of the group has the same keys in the same order.
    cols = list(zip(*map(dict.values, group), strict=False))
    for col, typ in zip(cols, shape.types, strict=True):
        if set(map(type, col)) != {typ}:
            return False  # a null, a bool, a float, a wrong type: record by record
    uints = list(chain.from_iterable(cols[i] for i in shape.uints))
    ints = list(chain.from_iterable(cols[i] for i in shape.ints))
    if not (_in_range(uints, 0, wire_record.MAX_U64)
            and _in_range(ints, wire_record.MIN_I64, wire_record.MAX_I64)):
        return False
    if shape.sized and max(map(len, chain.from_iterable(cols[i] for i in shape.sized))
                           ) > wire_record.MAX_TEXT:
        return False
    at = shape.at
    nodes = list(map(len, cols[at["node"]]))
    seqs = cols[at["seq"]]
    return (set(cols[at["v"]]) == {wire_record.VERSION} and min(nodes) >= 1
            and max(nodes) <= 16 and 0 not in seqs and all(map(lt, cols[at["prev"]], seqs))
            and set(cols[at["tq"]]) <= _TQ
            and ("unit" not in at or set(cols[at["unit"]]) <= _UNITS))


def _fields(raw) -> dict | None:
    """One decoded record, the slow way: its named fields if valid, else None."""
    if type(raw) is not dict or len(raw) < 2:
        return None
    keys = tuple(raw)
    kind = raw.get(KIND)
    if type(keys[0]) is not int or type(keys[1]) is not int or type(kind) is not int:
        return None  # keys False/True posing as 0/1, or no kind
    shape = _shape_of(kind, keys)
    if shape is None or not _group_ok(shape, [raw]):
        return None
    return dict(zip(shape.names, raw.values(), strict=True))


def _array_head(n: int) -> bytes:
    head = cbor2.dumps(n)  # major type 0 ...
    return bytes([head[0] | 0x80]) + head[1:]  # ... as major type 4: an array of n


def decode_raws(records: list[bytes]) -> list[dict | None]:
    """For each record's bytes, its wire-keyed fields when the fast path can vouch for
    them, else None (the module docstring says how it vouches)."""
    if not records:
        return []
    head = _array_head(len(records))
    data = head + b"".join(records)
    stream = io.BytesIO(data)
    tell = stream.tell
    ends: dict[int, int] = {}

    def hook(decoder, value):
        ends[id(value)] = tell()
        return value
    try:
        items = cbor2.CBORDecoder(stream, object_hook=hook, read_size=1).decode()
        aligned = (type(items) is list and len(items) == len(records)
                   and set(map(type, items)) == {dict}
                   and list(map(ends.get, map(id, items)))
                   == list(accumulate(map(len, records), initial=len(head)))[1:]
                   and cbor2.dumps(items) == data)
    except _ERRORS:
        aligned = False
    if not aligned:
        return _one_by_one(records)
    return _validated(items, records)


def _validated(items: list[dict], records: list[bytes]) -> list[dict | None]:
    """Items that are the exact decoding of their records -> valid ones, else None."""
    if set(map(getitem, records, repeat(_LEAD_AT))) != {_LEAD}:
        return [raw if _lead_ok(rec) and _fields(raw) is not None else None
                for raw, rec in zip(items, records, strict=True)]
    try:  # (kind, keys as bytes): cheap to hash and compare; keys are 0..15 if valid
        sigs = list(zip(map(itemgetter(KIND), items), map(bytes, items), strict=True))
        kinds = set(sigs)
    except (TypeError, ValueError):  # a key beyond 0..255, an unhashable kind
        return [raw if _fields(raw) is not None else None for raw in items]
    ok = {}
    for sig in kinds:
        shape = _shape_of(sig[0], tuple(sig[1]))
        group = list(compress(items, map(sig.__eq__, sigs)))
        if shape is not None and _group_ok(shape, group):
            ok[sig] = True
        else:  # find the bad ones; the others still go
            ok[sig] = False
    if all(ok.values()):
        return items
    return [raw if ok[sig] or _fields(raw) is not None else None
            for raw, sig in zip(items, sigs, strict=True)]


def _lead_ok(rec: bytes) -> bool:
    return rec[1:4] == _LEAD


def _one_by_one(records: list[bytes]) -> list[dict | None]:
    """The same checks, one CBOR item at a time: for chunks the fast path refused."""
    out: list[dict | None] = [None] * len(records)
    stream = io.BytesIO(b"".join(records))
    end = 0
    for i, rec in enumerate(records):
        end += len(rec)
        stream.seek(end - len(rec))
        try:
            raw = cbor2.CBORDecoder(stream, read_size=1).decode()
            ok = (stream.tell() == end and _lead_ok(rec) and _fields(raw) is not None
                  and cbor2.dumps(raw) == rec)
        except _ERRORS:
            ok = False
        if ok:
            out[i] = raw
    return out


def record_fields(rec: bytes) -> dict:
    """One record's named fields, as record.decode gives them (raises its ValueError)."""
    (raw,) = decode_raws([rec])
    return named(raw) if raw is not None else wire_record.decode(rec)
