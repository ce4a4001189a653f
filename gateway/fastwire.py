"""A fast path for decoding node frames, identical in effect to the firmware's
`metro.wire.frame.Decoder` (the single source of the wire format).

The firmware decoder is pure Python so that it runs on a board; on the gateway it
costs ~50 µs a record. This one does the same work a chunk at a time, in C where it
can, and defers to the firmware for everything it is not sure of:

- frames: split on 0x00 with bytes methods; when every frame of the chunk is an
  in-size record frame (the usual case), COBS, CRC and type are checked for all of them
  with a few C calls: `cobs.decode` (C) of each, `cobs.encode` of each body must give
  back the exact bytes received (the firmware's own COBS decodes that canonical form to
  the same body; a hypothesis test pins the two encoders together), every body's
  CRC-32 over body and CRC together must be the CRC-32 residue 0x2144DF1C (which holds
  exactly when the last four bytes are the little-endian CRC of the rest), and every
  type byte must be 'R'. Otherwise frame by frame, as the firmware does.
- records: gateway/fastrecord.py: a record laid out byte for byte like one vouched for
  before is read by that record's byte template (one `struct.unpack` and compiled
  checks); the others by cbor2, one at a time.

Whatever the fast path does not take it hands, frame by frame, to a firmware Decoder:
so rejects carry the firmware's own reason and detail, and what the fast path takes
equals what the firmware would have produced.

`feed` gives what frame.Decoder.feed gives (frames with named fields, rejects);
`feed_chunk` gives the same decisions as a Chunk (record columns for Intake, the
rest as items), without building a Frame per record.

Invariant: FastDecoder().feed over any chunking returns the same frames (type,
payload, fields) and the same rejects (reason, detail), in the same order, with the
same counts, as frame.Decoder().feed; feed_chunk's records, tags and fields are those
frames' (gateway/tests/test_fastwire.py, hypothesis, any byte stream and chunking).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from itertools import repeat
from operator import getitem

from cobs import cobs as c_cobs

from metrotrace.firmware.metro.wire import frame as wire_frame
from metrotrace.firmware.metro.wire.tag import TAG_LEN

from .fastrecord import decode_raws, named, raw_of

_MAX_ENCODED = wire_frame.MAX_FRAME + wire_frame.MAX_FRAME // 254 + 2  # as frame.py
_TYPES = frozenset(wire_frame.TYPES)
_OVERSIZE_DETAIL = f"frame longer than {wire_frame.MAX_FRAME} bytes"  # as frame.py
_RESIDUE = 0x2144DF1C  # CRC-32 of any message followed by its own CRC, little-endian
_MIN_RECORD_BODY = 1 + TAG_LEN + 1 + 4  # type, a record byte at least, tag, CRC
_RECORD_AT, _TAG_AT = slice(1, -TAG_LEN - 4), slice(-TAG_LEN - 4, -4)


class Chunk:
    """One feed, as Intake takes it: the record frames the decoders accepted, as
    columns in stream order (record bytes, tag, wire-keyed fields), and every other
    item (rejects, A/T frames) in order."""

    __slots__ = ("records", "tags", "raws", "others")

    def __init__(self, records: list[bytes], tags: list[bytes], raws: list[dict],
                 others: list) -> None:
        self.records, self.tags, self.raws, self.others = records, tags, raws, others

    def __len__(self) -> int:
        return len(self.records)

    @classmethod
    def of(cls, items) -> Chunk:
        """From frame.Decoder-style items (record frames carry named fields)."""
        records, tags, raws, others = [], [], [], []
        for item in items:
            if isinstance(item, wire_frame.Frame) and item.type == wire_frame.RECORD:
                if item.fields is None:
                    raise ValueError("record frames must carry decoded fields")
                record, tag = item.split_tag()
                records.append(record)
                tags.append(tag)
                raws.append(raw_of(item.fields))
            else:
                others.append(item)
        return cls(records, tags, raws, others)


class FastDecoder:
    """Drop-in for frame.Decoder: bytes in (any chunking), frames and rejects out."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self._buf = b""
        self._dropping = False
        self._slow = wire_frame.Decoder()  # the firmware decides what we do not take

    def feed(self, data: bytes) -> list:
        out, records, tags, raws, where = self._decode(data)
        for i, record, tag, raw in zip(where, records, tags, raws, strict=True):
            if out[i] is None:
                item = out[i] = wire_frame.Frame(wire_frame.RECORD, record + tag)
                item.fields = named(raw)
        return out

    def feed_chunk(self, data: bytes) -> Chunk:
        out, records, tags, raws, where = self._decode(data)
        if len(records) == len(out):
            return Chunk(records, tags, raws, [])
        taken = set(where)
        return Chunk(records, tags, raws, [x for i, x in enumerate(out) if i not in taken])

    # -- frames ------------------------------------------------------------------------
    def _reject(self, out: list, reason: str, detail: str = "") -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1
        out.append(wire_frame.Reject(reason, detail))

    def _defer(self, encoded: bytes):
        (item,) = self._slow.feed(b"\x00" + encoded + b"\x00")
        if isinstance(item, wire_frame.Reject):
            self.counts[item.reason] = self.counts.get(item.reason, 0) + 1
        return item

    def _split(self, data: bytes) -> tuple[list, list[tuple[int, bytes]]]:
        """Frames as the firmware delimits them: (items so far, [(slot, encoded)])."""
        parts = bytes(data).split(b"\x00")
        out: list = []
        encoded_frames: list[tuple[int, bytes]] = []
        last = len(parts) - 1
        for n, part in enumerate(parts):
            if n == last:  # no delimiter after it (yet): keep it for the next feed
                if not self._dropping:
                    self._buf += part
                    if len(self._buf) > _MAX_ENCODED:
                        self._buf = b""
                        self._dropping = True
                        self._reject(out, wire_frame.OVERSIZE, _OVERSIZE_DETAIL)
                break
            if self._dropping:
                self._dropping = False
                continue
            encoded = self._buf + part if self._buf else part
            self._buf = b""
            if len(encoded) > _MAX_ENCODED:
                self._reject(out, wire_frame.OVERSIZE, _OVERSIZE_DETAIL)
            elif encoded:
                encoded_frames.append((len(out), encoded))
                out.append(None)
        return out, encoded_frames

    def _split_fast(self, data: bytes) -> list[bytes] | None:
        """All frames of `data` when none of them (nor the tail kept) is oversize and no
        frame is being dropped: the usual case, without a step per frame. Else None."""
        if self._dropping:
            return None
        parts = bytes(data).split(b"\x00")
        if len(parts) < 2:
            return None
        tail = parts.pop()
        parts[0] = self._buf + parts[0]
        encoded = list(filter(None, parts))  # empty: two delimiters in a row
        if len(tail) > _MAX_ENCODED or (encoded and max(map(len, encoded)) > _MAX_ENCODED):
            return None
        self._buf = tail
        return encoded

    def _decode(self, data: bytes):
        """(items with None where a fast record goes, records, tags, raws, their slots)"""
        encoded = self._split_fast(data)
        if encoded is not None:
            bodies = _record_bodies(encoded)
            if bodies is not None:  # every frame a good record frame: the usual chunk
                return self._records([None] * len(encoded), range(len(encoded)), encoded,
                                     bodies)
            encoded_frames = list(enumerate(encoded))
            out = [None] * len(encoded)
        else:
            out, encoded_frames = self._split(data)
        return self._frames(out, encoded_frames)

    def _frames(self, out: list, encoded_frames: list[tuple[int, bytes]]):
        """Frame by frame: record frames the fast checks pass go on to _records."""
        where: list[int] = []
        frames: list[bytes] = []
        bodies: list[bytes] = []
        for index, encoded in encoded_frames:
            try:
                body = c_cobs.decode(encoded)
            except c_cobs.DecodeError:
                body = None
            if (body is None or len(body) < 5 or c_cobs.encode(body) != encoded
                    or zlib.crc32(body[:-4]) != int.from_bytes(body[-4:], "little")
                    or body[0] not in _TYPES):
                out[index] = self._defer(encoded)
            elif body[0] != wire_frame.RECORD:
                out[index] = wire_frame.Frame(body[0], body[1:-4])
            elif len(body) < _MIN_RECORD_BODY:
                out[index] = self._defer(encoded)
            else:
                where.append(index)
                frames.append(encoded)
                bodies.append(body)
        return self._records(out, where, frames, bodies)

    def _records(self, out: list, where: Sequence[int], frames: list[bytes],
                 bodies: list[bytes]):
        """Record frames (slots in `out`, encoded, decoded bodies) -> the _decode tuple."""
        records = list(map(getitem, bodies, repeat(_RECORD_AT)))
        tags = list(map(getitem, bodies, repeat(_TAG_AT)))
        raws = decode_raws(records)
        if None not in raws:
            return out, records, tags, raws, where
        # Some the fast path would not vouch for: the firmware decides those.
        taken: tuple[list, list, list, list] = ([], [], [], [])
        for index, encoded, record, tag, raw in zip(where, frames, records, tags, raws,
                                                    strict=True):
            if raw is None:
                item = out[index] = self._defer(encoded)
                if isinstance(item, wire_frame.Reject):
                    continue
                raw = raw_of(item.fields)
                out[index] = None
            for column, value in zip(taken, (record, tag, raw, index), strict=True):
                column.append(value)
        return (out, *taken)


def _record_bodies(encoded: list[bytes]) -> list[bytes] | None:
    """The bodies of these frames when every one is a good record frame, else None."""
    if not encoded:
        return None
    try:
        bodies = list(map(c_cobs.decode, encoded))
    except c_cobs.DecodeError:
        return None
    if (min(map(len, bodies)) < _MIN_RECORD_BODY
            or list(map(c_cobs.encode, bodies)) != encoded
            or list(map(zlib.crc32, bodies)).count(_RESIDUE) != len(bodies)
            or bytes(map(getitem, bodies, repeat(0))).count(wire_frame.RECORD) != len(bodies)):
        return None
    return bodies
