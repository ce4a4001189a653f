"""Record bytes -> RecordRow columns, fast: the server's hot path decodes every record.

Invariant: accepts exactly the records `metro.wire.record.decode` accepts (a property test
pins the two together on generated records), except that byte-level canonical form is
left to the gateway and the node tag: the server keeps and re-verifies the bytes as
received and never re-encodes them. Unsigned values that the store keeps as BIGINT must be
below 2**63. Errors name the field, like the firmware's.

`decode_many` first tries byte templates (`gateway/templates.py`): a record laid out byte
for byte like a good one seen before is read with one `struct` unpack, no CBOR decoder
(about 1.1 instead of 5 us a record). The rest are decoded with one cbor2 decoder over their
concatenation (the cost of a fresh decoder is paid once per batch). Each decoded map goes
through a shape fast path (`_fast`): records with the same kind, keys and value types share
one compiled check (ranges, lengths, version, node, seq, prev, tq, unit) that also builds
the row; a template runs the same checks (`_shape`) less those its layout settles for every
record it reads (`_test`: an integer of 1 to 4 bytes is never above 2**63-1, a byte
string's length is fixed, the version is a constant). Both only ever accept: anything they are
not sure of (a null, a nested map, a uint above 2**63-1, any failed check) goes to `_row`,
which gives the answer or the error. `_fast(raw, ...)` is None or equal to `_row(raw, ...)`,
and decode_many equals `decode` record by record, templates or not
(server/tests/test_columns.py, hypothesis, on valid, mutated and arbitrary input).
"""

from __future__ import annotations

import io
import json
import re
import struct
from collections.abc import Sequence

import cbor2

from metrotrace.firmware.metro.wire import record as wire
from metrotrace.gateway import templates

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
    stream = io.BytesIO(data)
    try:
        raw = cbor2.CBORDecoder(stream).decode()
    except _CBOR_ERRORS:
        raise RecordError("record: not CBOR") from None
    if stream.tell() != len(data):  # as the firmware: one record is one CBOR item
        raise RecordError("record: trailing bytes")
    return _row(raw, data, tag)


def decode_many(pairs: Sequence[tuple[bytes, bytes]]) -> list[RecordRow | RecordError]:
    """Decode a batch's (record, tag) pairs; a bad record yields its RecordError in place.

    A record laid out byte for byte like one seen before (same length, same structural
    bytes under the template's mask: `templates.py`) is read with that template's struct
    and checked by its shape's compiled checks, without a CBOR decoder. The others go to
    `_decode_stream`; each good record among them teaches a template for the next."""
    out: list = []
    append = out.append
    known = _templates
    from_bytes = int.from_bytes
    missed: list[int] = []
    for data, tag in pairs:
        row = None
        candidates = known.get(len(data))
        if candidates is not None:
            x = from_bytes(data, "big")
            for mask, expect, read in candidates:
                if x & mask == expect:
                    row = read(data, tag)
                    break
        if row is None:
            missed.append(len(out))
        append(row)
    if missed:
        rest = _decode_stream([pairs[i] for i in missed])
        for i, row in zip(missed, rest, strict=True):
            out[i] = row
            if row.__class__ is RecordRow:
                _learn(row.record)
    return out


def _decode_stream(pairs: Sequence[tuple[bytes, bytes]]) -> list[RecordRow | RecordError]:
    """decode_many through cbor2: one decoder reads the concatenated records item by item
    (its per-call cost is small; a top-level decode starts with no shared references, so
    nothing leaks between records), and each item must end exactly where its record ends;
    a record that does not is decoded alone, which names its fault."""
    out: list[RecordRow | RecordError] = []
    append = out.append
    stream = io.BytesIO(b"".join([p[0] for p in pairs]))
    tell = stream.tell
    decoder = cbor2.CBORDecoder(stream)
    fast = _fast
    end = 0
    for data, tag in pairs:
        end += len(data)
        try:
            raw = decoder.decode()
            whole = tell() == end
        except _CBOR_ERRORS:
            whole = False
        try:
            if whole:
                row = fast(raw, data, tag) or _row(raw, data, tag)
            else:
                stream.seek(end)
                decoder = cbor2.CBORDecoder(stream)
                row = decode(data, tag)
        except RecordError as e:
            row = e
        append(row)
    return out


_PYTHON_TYPE = {_UINT: int, _INT: int, _TEXT: str, _BYTES: bytes}
_MAX_SHAPES = 4096  # distinct (kind, keys, types) remembered; the rest are rebuilt


def _shape(kind: object, keys: tuple, types: tuple) -> tuple | None:
    """The checks, the row and the extra fields of one (kind, keys, types), or None when
    such maps are not for the fast path. Checks are (op, key, *args): ("eq", k, v),
    ("len", k, lo, hi) on len(value), ("ne0", k), ("lt", k, other), ("le", k, hi),
    ("range", k, lo, hi), ("unit", k), written as Python by `_test`."""
    if kind.__class__ is not int or kind not in _LAYOUT:
        return None
    fields = wire.HEADER + wire.BODY[kind]
    spec = {k: typ for k, _, typ, _ in fields}
    if any(k.__class__ is not int or k not in spec for k in keys):
        return None  # an unknown key (or a bool posing as 0 or 1)
    if any(required and k not in keys for k, _, _, required in fields):
        return None  # a required field missing: the slow path names it
    if any(_PYTHON_TYPE.get(spec[k]) is not t for k, t in zip(keys, types, strict=True)):
        return None  # a wrong type, a null or a map (event detail): the slow path
    checks: list[tuple] = [("eq", 0, wire.VERSION), ("len", 2, 1, 16), ("ne0", 3),
                           ("lt", 7, 3), ("le", 5, 2)]
    for k in keys:
        typ = spec[k]
        if typ == _UINT:  # above 2**63-1 may still be valid (not for BIGINT): slow path
            checks.append(("range", k, 0, _MAX_BIGINT))
        elif typ == _INT:
            checks.append(("range", k, wire.MIN_I64, wire.MAX_I64))
        elif k != 2:
            checks.append(("len", k, 0, wire.MAX_TEXT))
    _, _, column_keys, extra_keys, _ = _LAYOUT[kind]
    if column_keys[5] in keys:
        checks.append(("unit", column_keys[5]))
    extra = [(name, k, spec[k] == _BYTES) for k, name in extra_keys if k in keys]
    row = [k if k in keys else None for k in (2, 3, 1, 4, 5, 6, 7) + column_keys]
    return checks, row, extra


_TEST = {"eq": "f{k} == {0}", "len": "{0} <= len(f{k}) <= {1}", "ne0": "f{k} != 0",
         "lt": "f{k} < f{0}", "le": "f{k} <= {0}", "range": "{0} <= f{k} <= {1}",
         "unit": "f{k} in UNITS"}


def _source(op: str, k: int, args: list) -> str:
    if op == "len" and args[0] == 0:
        return f"len(f{k}) <= {args[1]}"
    return _TEST[op].format(*args, k=k)


def _test(check: tuple, fields: dict) -> str | bool:
    """One check as Python source over f{key}; or, for a template (`fields`: key ->
    templates.Field), True or False where the template's layout settles it for every
    record it reads, or the part of it that it leaves open. An integer of 1 to 4 bytes is
    never above 2**63-1 nor a head byte's integer negative, and a byte string's length is
    fixed: most range checks vanish (0.7 instead of 1.3 us a record)."""
    op, k, *args = check
    f = fields.get(k)
    if f is None or op in ("lt", "unit"):
        return _source(op, k, args)
    if f.how == templates.CONST:  # version and kind: integers the template fixes
        v = f.const
        if op == "eq":
            return v == args[0]
        if op == "ne0":
            return v != 0
        if op in ("le", "range"):
            lo, hi = (None, args[0]) if op == "le" else args
            return (lo is None or lo <= v) and v <= hi
        return False  # never asked of an integer; refusing is the safe side
    if op == "len":
        lo, hi = args
        if f.major == templates.BYTES:
            return lo <= f.width <= hi
        # UTF-8 text of n bytes holds n // 4 (rounded up) to n characters
        return True if lo <= -(-f.width // 4) and f.width <= hi else _source(op, k, args)
    if f.how == templates.HEAD:  # the reader checked the head byte holds it
        low, high = (0, 23) if f.major == templates.UINT else (-24, -1)
    else:
        top = (1 << (8 * f.width)) - 1
        low, high = (0, top) if f.major == templates.UINT else (-1 - top, -1)
    if op == "ne0":
        return True if low > 0 or high < 0 else f"f{k} != 0"
    lo, hi = (None, args[0]) if op == "le" else args
    if (lo is not None and high < lo) or low > hi:
        return False
    tests = ([] if lo is None or low >= lo else [f"f{k} >= {lo}"]) + \
            ([] if high <= hi else [f"f{k} <= {hi}"])
    return " and ".join(tests) or True


def _widths_agree(t: templates.Template) -> bool:
    """Whether each WIDE field's width is what the struct format reads for it (the
    checks `_test` leaves out rest on these widths)."""
    sizes = [int(n or 1) if c == "s" else struct.calcsize(">" + c)
             for n, c in re.findall(r"(\d*)([a-zA-Z?])", t.fmt[1:]) if c != "x"]
    read = [f for f in t.fields if f.how != templates.CONST]
    return len(sizes) == len(read) and all(
        f.how != templates.WIDE or f.width == size for f, size in zip(read, sizes, strict=True))


def _body(kind: object, keys: tuple, types: tuple, fields: dict | None = None) -> str | None:
    """The checks and the row of one (kind, keys, types) as Python source over variables
    f{key}, or None when such maps are not for the fast path (or, with a template's
    `fields`, when its layout fails a check whatever the values).

    Straight-line Python (one chained comparison per field) because the per-record budget
    is a few hundred ns; the text is built only from the schema tables and integer keys,
    never from input bytes."""
    shape = _shape(kind, keys, types)
    if shape is None:
        return None
    checks, row, extra = shape
    tests = [_test(check, fields or {}) for check in checks]
    if False in tests:
        return None
    tests = [test for test in tests if test is not True] or ["True"]
    extra_src = ("json.dumps({" + ", ".join(
        f"{name!r}: f{k}" + (".hex()" if is_bytes else "") for name, k, is_bytes in extra)
        + "}, sort_keys=True)") if extra else "None"
    values = ["None" if k is None else f"f{k}" for k in row]
    return (f"    if not ({' and '.join(tests)}):\n"
            f"        return None\n"
            f"    return new(RecordRow, ({', '.join(values)}, {extra_src}, data, tag))\n")


_code: dict[str, object] = {}  # source -> compiled code: templates of one shape share it


def _define(name: str, src: str, **names: object):
    code = _code.get(src)
    if code is None:
        code = _code[src] = compile(src, name, "exec")
    namespace = {"json": json, "UNITS": frozenset(wire.UNITS), "new": tuple.__new__,
                 "RecordRow": RecordRow, **names}
    exec(code, namespace)  # noqa: S102
    return namespace["f"]


def _compile(kind: object, keys: tuple, types: tuple):
    """A function (values, data, tag) -> RecordRow | None for one (kind, keys, types), or
    None when such maps are not for the fast path."""
    body = _body(kind, keys, types)
    if body is None:
        return None
    return _define(f"<record shape {kind} {keys}>",
                   f"def f(values, data, tag):\n"
                   f"    ({', '.join(f'f{k}' for k in keys)},) = values\n" + body)


_TYPE_OF_MAJOR = {templates.UINT: int, templates.NINT: int, templates.BYTES: bytes,
                  templates.TEXT: str}


def _compile_template(t: templates.Template):
    """A function (data, tag) -> RecordRow | None reading records laid out like `t`: its
    struct yields the values that vary, the head bytes hold the rest; then the checks of
    its shape, as `_compile` makes them. None when the shape is not for the fast path."""
    keys = tuple(f.key for f in t.fields)
    kind = next((f.const for f in t.fields if f.key == 1), None)
    body = _body(kind, keys, tuple(_TYPE_OF_MAJOR[f.major] for f in t.fields),
                 {f.key: f for f in t.fields} if _widths_agree(t) else None)
    if body is None:
        return None
    return _define(f"<record template {kind} {keys}>",
                   "def f(data, tag):\n" + templates.reader(t) + body,
                   unpack=struct.Struct(t.fmt).unpack)


_MAX_TEMPLATES = 1024  # templates kept in all; past it, new layouts take the decoder
_MAX_PER_LENGTH = 8  # templates kept per record length
_MAX_WALKS = 64  # records walked per length in all (a layout no template fits, e.g. an event)
_templates: dict[int, list[tuple[int, int, object]]] = {}
_walks: dict[int, int] = {}
_templates_kept = 0


def _learn(data: bytes) -> None:
    """Keep a template for a good record whose layout none fits (bounded: see above)."""
    global _templates_kept
    n = len(data)
    tried = _walks.get(n, 0)
    kept = _templates.get(n, ())
    if tried >= _MAX_WALKS or len(kept) >= _MAX_PER_LENGTH or _templates_kept >= _MAX_TEMPLATES:
        return
    x = int.from_bytes(data, "big")
    if any(x & mask == expect for mask, expect, _ in kept):
        return  # learnt from an earlier record of the same batch
    _walks[n] = tried + 1
    t = templates.walk(data)
    if t is None:
        return
    read = _compile_template(t)
    if read is not None:
        _templates.setdefault(n, []).append((t.mask, t.expect, read))
        _templates_kept += 1


_shapes: dict[tuple, object] = {}


def _fast(raw: object, data: bytes, tag: bytes) -> RecordRow | None:
    """The row of a record whose shape is known and whose checks all pass, else None."""
    if raw.__class__ is not dict:
        return None
    values = tuple(raw.values())
    key = (raw.get(1), tuple(raw), tuple(map(type, values)))
    try:
        check = _shapes[key]
    except KeyError:
        check = _compile(*key)
        # A refusal is remembered only for exact integer keys: a map keyed by True or 1.0
        # has a key equal to a real shape's and must not turn that shape's fast path off.
        if len(_shapes) < _MAX_SHAPES and (check is not None
                                           or all(k.__class__ is int for k in key[1])):
            _shapes[key] = check
    except TypeError:  # an unhashable kind
        return None
    return None if check is None else check(values, data, tag)


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
