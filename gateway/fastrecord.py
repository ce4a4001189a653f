"""Node records decoded at C speed where it can, identical in effect to the firmware's
`record.decode` (the single source of the record format).

`decode_raws(records)` gives, for each record's bytes, its fields keyed as on the wire
(`{0: v, 1: kind, 2: node, ...}`) when it can vouch that `record.decode` accepts those
bytes with exactly those values, else None (then ask `record.decode`, whose error names
the field). Two ways to vouch, both ending in the same compiled checks of
`record.validate`'s rules (`_checks`: version, kind, keys known and required, value
types, 64-bit ranges, text and node lengths, seq, prev < seq, tq, unit):

1. Byte templates (`templates.py`, shared with the server), the usual way: a record of
   the same length as one vouched for before and with the same structural bytes under
   its template's mask has, item for item, that record's structure (same map head, the
   same keys in the same order, same major types, argument widths and string lengths).
   One `struct.unpack` reads its values; the compiled reader then checks what the mask
   cannot: a value held in a head byte is below 24, text is strict UTF-8, and every
   wide integer needs its width (`shortest`: the deterministic form the firmware's
   decoder insists on; the map head, keys and string heads are the vouched record's
   own, already shortest and in canonical order). About 12,500 instructions a record
   (callgrind), the dict it returns included.
2. Otherwise `cbor2.loads` of the record alone, the checks, and `cbor2.dumps` of what it
   read must give back the same bytes: cbor2 writes shortest heads, definite lengths,
   keys in dict order (the order read; the checks demand ascending integer keys, which
   for keys 0..15 is the bytewise order) and no tags, so equal bytes mean the record is
   the deterministic encoding of its values: what the firmware's strict decoder
   accepts, decoding to the same values (a bignum re-encodes as it came, so the range
   checks keep it out). A record vouched for this way teaches its template. About
   107,000 instructions a record, paid by the first record of each layout and by
   layouts beyond the bounds below.

Maps as values (an event's detail), nulls, bools and anything unusual never pass the
checks: the firmware's own decoder takes those.

Templates are bounded (`Templates`): at most 256 in all, the oldest forgotten first, 8 per
record length, and at most 16 records walked per call, so a stream of ever new layouts
costs a bounded walk-and-compile per chunk. A layout forgotten is learnt again.

Invariant: decode_raws(records)[i] is None or equals raw_of(record.decode(records[i])),
whatever templates were learnt before; gateway/tests/test_fastwire.py and
test_templates.py hold it with hypothesis over valid, nearly valid, mutated and
malformed records.
"""

from __future__ import annotations

import math
import struct
import threading
from collections import deque
from collections.abc import Callable

import cbor2

from metrotrace.firmware.metro.wire import record as wire_record

from . import templates

_SCHEMA = {kind: {key: (name, typ, required)
                  for key, name, typ, required in wire_record.HEADER + body}
           for kind, body in wire_record.BODY.items()}
_KEY_OF = {kind: {name: key for key, (name, _, _) in fields.items()}
           for kind, fields in _SCHEMA.items()}
_TYPE_OF = {wire_record.INT: int, wire_record.UINT: int, wire_record.TEXT: str,
            wire_record.BYTES: bytes}  # a map (an event's detail): never the fast path
_TYPE_OF_MAJOR = {templates.UINT: int, templates.NINT: int, templates.BYTES: bytes,
                  templates.TEXT: str}
_UNITS = frozenset(wire_record.UNITS)
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


# -- record.validate's rules, compiled per shape -----------------------------------------

# Each type's legal values (of text and bytes: lengths), as record._check has them.
_RANGE = {wire_record.UINT: (0, wire_record.MAX_U64),
          wire_record.INT: (wire_record.MIN_I64, wire_record.MAX_I64),
          wire_record.TEXT: (0, wire_record.MAX_TEXT),
          wire_record.BYTES: (0, wire_record.MAX_TEXT)}


def _checks(kind: object, keys: tuple, types: tuple,
            known: dict[int, tuple[int, int]] | None = None) -> str | None:
    """record.validate's rules for maps of this kind, keys (in this order) and value types,
    as one Python expression over variables f{key}; None when such maps are not for the
    fast path, or (by `known`: key -> the least and greatest value, of a string its
    length, that the caller's reader lets through) are never valid. A rule `known` already
    guarantees is left out. Built from the schema tables and integer keys only."""
    schema = _SCHEMA.get(kind) if kind.__class__ is int else None
    if schema is None or any(k.__class__ is not int or k not in schema for k in keys):
        return None  # an unknown kind or key, or a bool or float posing as 0 or 1
    if list(keys) != sorted(set(keys)):
        return None  # not the canonical order (keys 0..15: numeric order is byte order)
    if any(required and k not in keys for k, (_, _, required) in schema.items()):
        return None  # a required field missing: the firmware names it
    type_of = dict(zip(keys, types, strict=True))
    if any(_TYPE_OF.get(schema[k][1]) is not t for k, t in type_of.items()):
        return None  # a wrong type, a null, a bool, a map: the firmware's own path
    want = {k: _RANGE[schema[k][1]] for k in keys}  # value range, or length range
    want.update({V: (wire_record.VERSION, wire_record.VERSION), NODE: (1, 16),
                 SEQ: (1, wire_record.MAX_U64), TQ: (0, wire_record.TQ_GATEWAY)})
    checks = []
    for k, (low, high) in want.items():
        value = f"f{k}" if type_of[k] is int else f"len(f{k})"
        least, most = (known or {}).get(k, (-math.inf if type_of[k] is int else 0, math.inf))
        if most < low or least > high:
            return None
        if least < low and most > high:
            checks.append(f"{low} <= {value} <= {high}")
        elif least < low:
            checks.append(f"{low} <= {value}")
        elif most > high:
            checks.append(f"{value} <= {high}")
    checks.append(f"f{PREV} < f{SEQ}")
    unit = _KEY_OF[kind].get("unit")
    if unit in keys:
        checks.append(f"f{unit} in UNITS")
    return " and ".join(checks)


_MAX_CODE = 1024  # compiled sources kept (templates of one shape share theirs)
_code: dict[str, object] = {}


def _define(name: str, src: str, **names: object) -> Callable:
    code = _code.get(src)
    if code is None:
        if len(_code) >= _MAX_CODE:
            _code.clear()
        code = _code[src] = compile(src, name, "exec")
    namespace = {"UNITS": _UNITS, **names}
    exec(code, namespace)  # noqa: S102 - source built from the schema, never from input
    return namespace["f"]


_MAX_SHAPES = 4096  # (kind, keys, types) remembered for the cbor2 path; the rest rebuilt
_shapes: dict[tuple, Callable | None] = {}


def _shape_check(kind: object, keys: tuple, types: tuple) -> Callable | None:
    """values -> bool for maps of this shape (the cbor2 path), or None. Keys must be
    exact ints: (0, True) equals (0, 1) as a cache key."""
    key = (kind, keys, types)
    try:
        return _shapes[key]
    except KeyError:
        pass
    expr = _checks(kind, keys, types)
    check = None if expr is None else _define(
        f"<record shape {kind} {keys}>",
        f"def f(values):\n    ({', '.join(f'f{k}' for k in keys)},) = values\n"
        f"    return {expr}\n")
    if len(_shapes) < _MAX_SHAPES:
        _shapes[key] = check
    return check


def _template_reader(t: templates.Template) -> Callable | None:
    """data -> wire-keyed fields | None for records laid out like `t`, or None when its
    shape is not for the fast path."""
    keys = tuple(f.key for f in t.fields)
    kind = next((f.const for f in t.fields if f.key == KIND), None)
    expr = _checks(kind, keys, tuple(_TYPE_OF_MAJOR[f.major] for f in t.fields),
                   {f.key: templates.value_range(f, shortest=True) for f in t.fields})
    if expr is None:
        return None
    fields = ", ".join(f"{k}: f{k}" for k in keys)
    return _define(f"<record template {kind} {keys}>",
                   "def f(data):\n" + templates.reader(t, shortest=True)
                   + f"    if not ({expr}):\n        return None\n"
                   f"    return {{{fields}}}\n",
                   unpack=struct.Struct(t.fmt).unpack)


# -- templates learnt ----------------------------------------------------------------------

class Templates:
    """Byte templates of records vouched for, bounded: `limit` in all (the oldest forgotten
    first), `per_length` per record length, `walks` records walked per decode call."""

    def __init__(self, limit: int = 256, per_length: int = 8, walks: int = 16) -> None:
        for name, value, least in (("limit", limit, 1), ("per_length", per_length, 1),
                                   ("walks", walks, 0)):
            if value < least:
                raise ValueError(f"{name}: must be at least {least}, not {value}")
        self.limit, self.per_length, self.walks = limit, per_length, walks
        # length -> ((mask, expect, read), ...), newest first; replaced, never mutated,
        # so decoding threads read it without the lock
        self.by_length: dict[int, tuple] = {}
        self._order: deque[tuple[int, tuple]] = deque()  # (length, entry), oldest first
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._order)

    def learn(self, rec: bytes) -> None:
        """Keep the template of a record decode_raws vouched for, if it is plain."""
        t = templates.walk(rec)
        read = None if t is None else _template_reader(t)
        if read is None:
            return  # an event with a detail map, say: no template
        n, entry = len(rec), (t.mask, t.expect, read)
        with self._lock:
            kept = self.by_length.get(n, ())
            if any(m == t.mask and e == t.expect for m, e, _ in kept):
                return  # learnt meanwhile (another thread, or earlier in the call)
            if len(kept) >= self.per_length:
                self._forget(n, kept[-1])
            if len(self._order) >= self.limit:
                self._forget(*self._order[0])
            self.by_length[n] = (entry, *self.by_length.get(n, ()))
            self._order.append((n, entry))

    def _forget(self, n: int, entry: tuple) -> None:
        self._order.remove((n, entry))
        kept = tuple(e for e in self.by_length[n] if e is not entry)
        if kept:
            self.by_length[n] = kept
        else:
            del self.by_length[n]


TEMPLATES = Templates()  # shared by every decoder of the process (ports, Wi-Fi)


def decode_raws(records: list[bytes], known: Templates | None = None) -> list[dict | None]:
    """For each record's bytes, its wire-keyed fields when the fast path can vouch for
    them, else None (the module docstring says how it vouches)."""
    known = TEMPLATES if known is None else known
    by_length = known.by_length
    from_bytes = int.from_bytes
    walks = known.walks
    out: list[dict | None] = []
    append = out.append
    for rec in records:
        raw = None
        candidates = by_length.get(len(rec))
        if candidates is not None:
            x = from_bytes(rec, "big")
            for mask, expect, read in candidates:
                if x & mask == expect:
                    raw = read(rec)
                    if raw is not None:
                        break
        if raw is None:
            raw = _decoded(rec)
            if raw is not None and walks:
                walks -= 1
                known.learn(rec)
        append(raw)
    return out


def _decoded(rec: bytes) -> dict | None:
    """One record through cbor2 (way 2 of the module docstring)."""
    try:
        raw = cbor2.loads(rec)
    except _ERRORS:
        return None
    if raw.__class__ is not dict:
        return None
    keys = tuple(raw)
    if not all(k.__class__ is int for k in keys):
        return None
    values = tuple(raw.values())
    try:
        check = _shape_check(raw.get(KIND), keys, tuple(map(type, values)))
    except TypeError:  # an unhashable kind
        return None
    if check is None or not check(values):
        return None
    try:
        return raw if cbor2.dumps(raw) == rec else None
    except _ERRORS:
        return None


def record_fields(rec: bytes) -> dict:
    """One record's named fields, as record.decode gives them (raises its ValueError)."""
    (raw,) = decode_raws([rec])
    return named(raw) if raw is not None else wire_record.decode(rec)
