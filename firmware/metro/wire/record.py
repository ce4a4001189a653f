# Node records: the seven kinds of DESIGN.md as CBOR maps with small integer keys.
#
# Invariant: a record is complete on its own (OIML D 31 §6.3.4: value and unit, time,
# instrument, consecutive number); legal values are integers in base units; the byte
# form produced by encode() is the one the HMAC tag covers and the one kept for ever.
# docs/protocol.md is the byte-level specification; keep the two in step.

from . import cbor

VERSION = 1

WEIGHING = 1
DISPENSE = 2
CHECK = 3
ZERO = 4
SCAN = 5
EVENT = 6
STATUS = 7

KIND_NAMES = {
    WEIGHING: "weighing",
    DISPENSE: "dispense",
    CHECK: "check",
    ZERO: "zero",
    SCAN: "scan",
    EVENT: "event",
    STATUS: "status",
}

# Time quality: how far the record's time can be trusted.
TQ_UNSET = 0  # clock never set since power-up: time is ms since boot, not UTC
TQ_NTP = 1  # RTC set by NTP
TQ_GATEWAY = 2  # RTC set by the gateway over the link

# Weighing flags (bit mask).
F_STABLE = 1
F_ZERO = 2  # indication within ±0.25 e of zero (OIML R 76 4.5.5 centre-of-zero)
F_TARE_PRESET = 4
F_OVERLOAD = 8
F_UNDERLOAD = 16

UNITS = ("mg", "g", "kg", "mL", "L")

# Value types of the schema.
INT = 0  # signed 64-bit integer
UINT = 1  # unsigned 64-bit integer
TEXT = 2
BYTES = 3
MAP = 4  # text keys -> int, text or bytes

# Common header keys 0..7; per-kind keys from 8. Each entry: key, name, type, required.
HEADER = (
    (0, "v", UINT, True),
    (1, "kind", UINT, True),
    (2, "node", BYTES, True),
    (3, "seq", UINT, True),
    (4, "t", UINT, True),
    (5, "tq", UINT, True),
    (6, "inst", TEXT, False),
    (7, "prev", UINT, True),  # seq of this node's previous record; 0 for its first
)

BODY = {
    WEIGHING: (
        (8, "gross", INT, True),
        (9, "tare", INT, True),
        (10, "net", INT, True),
        (11, "e", UINT, True),
        (12, "unit", TEXT, True),
        (13, "flags", UINT, True),
        (14, "raw", INT, False),  # converter counts, when the node has them
        (15, "link", UINT, False),  # seq of the scan this weighing belongs to
    ),
    DISPENSE: (
        (8, "volume", INT, True),
        (9, "pulses", UINT, True),
        (10, "kfactor", UINT, True),  # pulses per 1000 L (integer K-factor × 1000)
        (11, "t_start", UINT, True),
        (12, "unit", TEXT, True),
        (13, "d", UINT, True),  # scale interval of the volume indication
        (14, "flags", UINT, False),
        (15, "link", UINT, False),
    ),
    CHECK: (
        (8, "indication", INT, True),
        (9, "reference", INT, True),
        (10, "e", UINT, True),
        (11, "unit", TEXT, True),
        (12, "raw", INT, False),
        (13, "ref_id", TEXT, False),  # test weight or proving measure certificate id
    ),
    ZERO: (
        (8, "indication", INT, True),
        (9, "e", UINT, True),
        (10, "unit", TEXT, True),
        (11, "raw", INT, False),
    ),
    SCAN: (
        (8, "code", BYTES, True),  # raw scanner text, GS (0x1D) kept
        (9, "symbology", TEXT, True),  # AIM identifier such as "]C1"
        (10, "link", UINT, False),
    ),
    EVENT: (
        (8, "code", TEXT, True),
        (9, "detail", MAP, False),
    ),
    STATUS: (
        (8, "fw", TEXT, True),
        (9, "uptime_s", UINT, True),
        (10, "mem_free", UINT, True),
        (11, "backlog", UINT, True),
        (12, "signal", INT, False),
    ),
}

MAX_TEXT = 512
MAX_U64 = 0xFFFFFFFFFFFFFFFF
MIN_I64 = -0x8000000000000000
MAX_I64 = 0x7FFFFFFFFFFFFFFF


def _check(name, typ, value):
    # Returns an error text, or None when value fits typ.
    if typ in (INT, UINT):
        if not isinstance(value, int) or isinstance(value, bool):
            return name + ": expected integer"
        if typ == UINT and not 0 <= value <= MAX_U64:
            return name + ": out of unsigned 64-bit range"
        if typ == INT and not MIN_I64 <= value <= MAX_I64:
            return name + ": out of signed 64-bit range"
    elif typ == TEXT:
        if not isinstance(value, str):
            return name + ": expected text"
        if len(value) > MAX_TEXT:
            return name + ": text too long"
    elif typ == BYTES:
        if not isinstance(value, bytes):
            return name + ": expected bytes"
        if len(value) > MAX_TEXT:
            return name + ": bytes too long"
    elif typ == MAP:
        if not isinstance(value, dict):
            return name + ": expected map"
        for k in value:
            v = value[k]
            if not isinstance(k, str) or isinstance(v, (list, dict, bool)):
                return name + ": map holds text keys and scalar values"
    return None


def _fields(kind):
    if not isinstance(kind, int) or isinstance(kind, bool):
        return None  # also keeps an unhashable kind (a list, a map) out of the lookup
    body = BODY.get(kind)
    if body is None:
        return None
    return HEADER + body


def validate(rec):
    """Return None if the named-field dict rec is a valid record, else the error text."""
    kind = rec.get("kind")
    fields = _fields(kind)
    if fields is None:
        return "kind: unknown record kind " + repr(kind)
    if rec.get("v") != VERSION:
        return "v: unsupported version " + repr(rec.get("v"))
    known = set()
    for _, name, typ, required in fields:
        known.add(name)
        if name not in rec or rec[name] is None:
            if required:
                return name + ": missing"
            continue
        err = _check(name, typ, rec[name])
        if err:
            return err
    for name in rec:
        if name not in known:
            return name + ": not a field of " + KIND_NAMES[kind]
    node = rec["node"]
    if not 1 <= len(node) <= 16:
        return "node: id must be 1 to 16 bytes"
    if rec["seq"] == 0:
        return "seq: 0 is reserved (prev of a node's first record)"
    if rec["prev"] >= rec["seq"]:
        return "prev: must be below seq"
    if rec["tq"] not in (TQ_UNSET, TQ_NTP, TQ_GATEWAY):
        return "tq: unknown time quality"
    unit = rec.get("unit")
    if unit is not None and unit not in UNITS:
        return "unit: not a base unit: " + unit
    return None


def encode(rec):
    """Named-field dict -> the record's canonical bytes. Raises ValueError if invalid."""
    err = validate(rec)
    if err:
        raise ValueError(err)
    out = {}
    for key, name, _, _ in _fields(rec["kind"]):
        value = rec.get(name)
        if value is not None:
            out[key] = value
    return cbor.encode(out)


def make(kind, node, seq, prev, t, tq, inst=None, **body):
    """Build and encode a record in one call (the node's hot path)."""
    rec = {"v": VERSION, "kind": kind, "node": node, "seq": seq, "prev": prev, "t": t,
           "tq": tq}
    if inst is not None:
        rec["inst"] = inst
    for name in body:
        rec[name] = body[name]
    return encode(rec)


def decode(data):
    """Record bytes -> named-field dict. Raises ValueError with the field at fault."""
    raw = cbor.decode(data)
    if not isinstance(raw, dict):
        raise ValueError("record: expected a map")
    fields = _fields(raw.get(1))
    if fields is None:
        raise ValueError("kind: unknown record kind " + repr(raw.get(1)))
    by_key = {}
    for key, name, _, _ in fields:
        by_key[key] = name
    rec = {}
    for key in raw:
        if not isinstance(key, int) or key not in by_key:
            raise ValueError("record: unknown key " + repr(key))
        rec[by_key[key]] = raw[key]
    err = validate(rec)
    if err:
        raise ValueError(err)
    return rec
