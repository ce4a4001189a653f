"""A fast path for decoding node frames and records, identical in effect to the
firmware's `metro.wire.frame.Decoder` (the single source of the wire format).

The firmware decoder is pure Python so that it runs on a board; on the gateway it
costs ~50 µs a record. This one does the same work in C where it can and defers to the
firmware for everything it is not sure of:

- frames: split on 0x00 with bytes methods, COBS by the `cobs` C extension, CRC by
  zlib. A frame is taken only if `cobs.encode(body)` gives back the exact bytes received
  (the firmware's own COBS decodes that canonical form to the same body; a hypothesis
  test pins the two encoders together) and CRC, length and type are good.
- records: one `cbor2` (C) decode for all records of a chunk, then a check that each
  record is in the firmware's accepted form: one `cbor2.dumps` of the decoded maps must
  give back the concatenated bytes, each item spanning exactly its record (so every
  record is the deterministic encoding of what was decoded: shortest heads, definite
  lengths, keys in order, no tags), and the shape check below, which holds each record
  to what `record.validate` demands (kind, known keys, required fields, types, ranges,
  version, node length, seq, prev, tq, unit). Records with a nested map (event detail)
  or a null are not taken here.

Whatever the fast path does not take, it hands, frame by frame, to a firmware Decoder:
so rejects carry the firmware's own reason and detail, and what the fast path takes
equals what the firmware would have produced (tests/test_fastwire.py, hypothesis,
any byte stream and any chunking).

Invariant: FastDecoder().feed over any chunking returns the same frames (type,
payload, fields) and the same rejects (reason, detail), in the same order, with the
same counts, as frame.Decoder().feed.
"""

from __future__ import annotations

import io
import zlib
from operator import itemgetter

import cbor2
from cobs import cobs as c_cobs

from metrotrace.firmware.metro.wire import frame as wire_frame
from metrotrace.firmware.metro.wire import record as wire_record
from metrotrace.firmware.metro.wire.tag import TAG_LEN

_MAX_ENCODED = wire_frame.MAX_FRAME + wire_frame.MAX_FRAME // 254 + 2  # as frame.py
_TYPES = frozenset(wire_frame.TYPES)
_OVERSIZE_DETAIL = f"frame longer than {wire_frame.MAX_FRAME} bytes"  # as frame.py
_NAMES = {kind: {key: (name, typ, required)
                 for key, name, typ, required in wire_record.HEADER + body}
          for kind, body in wire_record.BODY.items()}
_TQ = (wire_record.TQ_UNSET, wire_record.TQ_NTP, wire_record.TQ_GATEWAY)
_LIMITS = {wire_record.UINT: (0, wire_record.MAX_U64),
           wire_record.INT: (wire_record.MIN_I64, wire_record.MAX_I64)}
_TYPE_OF = {wire_record.INT: int, wire_record.UINT: int, wire_record.TEXT: str,
            wire_record.BYTES: bytes}


def _getter(indices: list[int]):
    """A function values -> tuple of values at indices (itemgetter, always a tuple)."""
    if not indices:
        return lambda values: ()
    if len(indices) == 1:
        i = indices[0]
        return lambda values: (values[i],)
    return itemgetter(*indices)


class _Shape:
    """What must still be checked of records with one key/type signature."""

    def __init__(self, names: tuple[str, ...], groups: dict[int, list[int]],
                 sized: list[int], unit: int | None) -> None:
        self.names = names
        self.uints = _getter(groups[wire_record.UINT])
        self.ints = _getter(groups[wire_record.INT])
        self.sized = _getter(sized)
        self.unit = unit


def _shape(kind: int, keys: tuple, value_types: tuple) -> _Shape | None:
    """The shape of records with these keys and value types, or None: not for us."""
    schema = _NAMES.get(kind)
    if schema is None or any(type(k) is not int for k in keys):
        return None
    if list(keys) != sorted(set(keys)) or keys[:2] != (0, 1):  # canonical order
        return None
    names, groups, sized, unit = [], {wire_record.UINT: [], wire_record.INT: []}, [], None
    for i, (key, vtype) in enumerate(zip(keys, value_types, strict=True)):
        entry = schema.get(key)
        if entry is None:
            return None
        name, typ, _ = entry
        if _TYPE_OF.get(typ) is not vtype:  # also refuses maps and nulls: the slow path
            return None
        if typ in groups:
            groups[typ].append(i)
        else:
            sized.append(i)
        if name == "unit":
            unit = i
        names.append(name)
    if any(required and key not in keys for key, (_, _, required) in schema.items()):
        return None
    return _Shape(tuple(names), groups, sized, unit)


_shapes: dict[tuple, _Shape | None] = {}


def _fields(raw) -> dict | None:
    """The named fields of a decoded record if it passes record.validate, else None."""
    if type(raw) is not dict or len(raw) < 2:
        return None
    keys = tuple(raw)
    # Only keys 0 and 1 could be False/True posing as ints in a tuple comparison; every
    # record has both, first (the shape checks order), so these two types settle it.
    if type(keys[0]) is not int or type(keys[1]) is not int:
        return None
    values = tuple(raw.values())
    kind = values[1]
    if type(kind) is not int:
        return None
    signature = (kind, keys, tuple(map(type, values)))
    try:
        shape = _shapes[signature]
    except KeyError:
        shape = _shapes[signature] = _shape(kind, keys, signature[2])
    if shape is None:
        return None
    uints, ints, sized = shape.uints(values), shape.ints(values), shape.sized(values)
    if uints and (min(uints) < 0 or max(uints) > wire_record.MAX_U64):
        return None
    if ints and (min(ints) < wire_record.MIN_I64 or max(ints) > wire_record.MAX_I64):
        return None
    if sized and max(map(len, sized)) > wire_record.MAX_TEXT:
        return None
    fields = dict(zip(shape.names, values, strict=True))
    if (fields["v"] != wire_record.VERSION or not 1 <= len(fields["node"]) <= 16
            or fields["seq"] == 0 or fields["prev"] >= fields["seq"]
            or fields["tq"] not in _TQ
            or (shape.unit is not None and values[shape.unit] not in wire_record.UNITS)):
        return None
    return fields


def decode_records(records: list[bytes]) -> list[dict | None]:
    """For each record's bytes, its fields when the fast path can vouch for them, else
    None (then ask `record.decode`, which gives the firmware's answer)."""
    out: list[dict | None] = [None] * len(records)
    if not records:
        return out
    stream = io.BytesIO(b"".join(records))
    decoder = cbor2.CBORDecoder(stream)
    taken: list[int] = []
    raws: list = []
    end = 0
    for i, rec in enumerate(records):
        end += len(rec)
        try:
            raw = decoder.decode()
        except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError,
                RecursionError, MemoryError):
            raw = None
            stream.seek(0)  # a decoder that failed starts afresh (no state carried over)
        if stream.tell() != end:  # the item ran short of, or into, the next record
            stream.seek(end)
            decoder = cbor2.CBORDecoder(stream)
            continue
        fields = _fields(raw)
        if fields is not None:
            out[i] = fields
            taken.append(i)
            raws.append(raw)
    if taken and not _canonical(raws, [records[i] for i in taken]):
        # Some record is not in deterministic form: find which, one by one (rare).
        for i, raw in zip(taken, raws, strict=True):
            if not _canonical([raw], [records[i]]):
                out[i] = None
    return out


def _canonical(raws: list, records: list[bytes]) -> bool:
    # cbor2.dumps writes shortest heads, definite lengths and dict order (checked sorted
    # in _shape); the decode above found each item spanning exactly its record, so
    # equal concatenations mean every record equals its deterministic encoding.
    try:
        encoded = cbor2.dumps(raws)
    except (cbor2.CBOREncodeError, ValueError, TypeError, OverflowError):
        return False
    head = len(encoded) - sum(map(len, records))
    return head > 0 and encoded[head:] == b"".join(records)


class FastDecoder:
    """Drop-in for frame.Decoder: bytes in (any chunking), frames and rejects out."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self._buf = b""
        self._dropping = False
        self._slow = wire_frame.Decoder()  # the firmware decides what we do not take

    def _reject(self, out: list, reason: str, detail: str = "") -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1
        out.append(wire_frame.Reject(reason, detail))

    def _defer(self, encoded: bytes):
        (item,) = self._slow.feed(b"\x00" + encoded + b"\x00")
        if isinstance(item, wire_frame.Reject):
            self.counts[item.reason] = self.counts.get(item.reason, 0) + 1
        return item

    def feed(self, data: bytes) -> list:
        parts = bytes(data).split(b"\x00")
        out: list = []
        encoded_frames: list[tuple[int, bytes]] = []  # (index in out, encoded bytes)
        last = len(parts) - 1
        for n, part in enumerate(parts):
            if n == last:  # no delimiter after it (yet): keep it for the next feed
                if not self._dropping:
                    self._buf += part
                    if len(self._buf) > _MAX_ENCODED:
                        self._buf = b""
                        self._dropping = True
                        self._reject(out, wire_frame.OVERSIZE,
                                     _OVERSIZE_DETAIL)
                break
            if self._dropping:
                self._dropping = False
                continue
            encoded = self._buf + part if self._buf else part
            self._buf = b""
            if len(encoded) > _MAX_ENCODED:
                self._reject(out, wire_frame.OVERSIZE,
                             _OVERSIZE_DETAIL)
            elif encoded:
                encoded_frames.append((len(out), encoded))
                out.append(None)
        self._frames(encoded_frames, out)
        return out

    def _frames(self, encoded_frames: list[tuple[int, bytes]], out: list) -> None:
        records: list[tuple[int, bytes, wire_frame.Frame]] = []
        for index, encoded in encoded_frames:
            try:
                body = c_cobs.decode(encoded)
            except c_cobs.DecodeError:
                body = None
            if (body is None or len(body) < 5 or c_cobs.encode(body) != encoded
                    or zlib.crc32(body[:-4]) != int.from_bytes(body[-4:], "little")
                    or body[0] not in _TYPES):
                out[index] = self._defer(encoded)
                continue
            item = wire_frame.Frame(body[0], body[1:-4])
            out[index] = item
            if item.type == wire_frame.RECORD:
                if len(item.payload) <= TAG_LEN:
                    out[index] = self._defer(encoded)
                else:
                    records.append((index, encoded, item))
        decoded = decode_records([item.payload[:-TAG_LEN] for _, _, item in records])
        for (index, encoded, item), fields in zip(records, decoded, strict=True):
            if fields is None:
                out[index] = self._defer(encoded)
            else:
                item.fields = fields


def record_fields(rec: bytes) -> dict:
    """One record's fields, as record.decode gives them (raises its ValueError)."""
    (fields,) = decode_records([rec])
    return fields if fields is not None else wire_record.decode(rec)
