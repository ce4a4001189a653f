# Outbox segment format: how one record sits in an append-only file on flash.
#
# Entry: A5 | len u16 BE | seq u64 BE | crc32(seq | payload) u32 BE | payload
#
# Invariant: an entry is accepted only whole and with a matching CRC; the first bad
# entry ends the valid part of a segment (a damaged tail left by a reset or power
# loss), and nothing after it is read.
#
# Also here: Segment, what the outbox knows of one file, and Cursor, which reads the
# outbox's records oldest first (outbox.py owns the files; these only read them).

import struct

from ..wire.crc import crc32

MAGIC = 0xA5
HEAD = 15
MAX_PAYLOAD = 1024


def pack(seq, payload):
    entry = struct.pack(">BHQ", MAGIC, len(payload), seq)
    return entry + struct.pack(">I", crc32(entry[3:] + payload)) + payload


def scan_segment(path):
    """(entries as [(seq, offset)], valid_size, damaged) of one segment file."""
    entries = []
    pos = 0
    damaged = False
    with open(path, "rb") as f:
        while True:
            head = f.read(HEAD)
            if not head:
                break
            if len(head) < HEAD or head[0] != MAGIC:
                damaged = True
                break
            n, seq, crc = struct.unpack(">HQI", head[1:])
            body = f.read(n)
            if len(body) < n or n > MAX_PAYLOAD or crc32(head[3:11] + body) != crc:
                damaged = True
                break
            entries.append((seq, pos))
            pos += HEAD + n
    return entries, pos, damaged


def read_entry(path, offset):
    """(seq, payload) at offset of a segment, or None past its valid end."""
    with open(path, "rb") as f:
        f.seek(offset)
        head = f.read(HEAD)
        if len(head) < HEAD or head[0] != MAGIC:
            return None
        n, seq, crc = struct.unpack(">HQI", head[1:])
        body = f.read(n)
    if len(body) < n or crc32(head[3:11] + body) != crc:
        return None
    return seq, body


class Segment:
    def __init__(self, num, first, last, count, size, sealed):
        self.num = num
        self.first = first  # seq of its first record, 0 when empty
        self.last = last
        self.count = count
        self.size = size  # bytes of valid entries
        self.sealed = sealed  # damaged tail: never append here again


class Cursor:
    """Reads records oldest first across segments; survives segment deletion."""

    def __init__(self, box):
        self.box = box
        self.num = box.segments[0].num if box.segments else 1
        self.offset = 0

    def next(self):
        """(seq, payload) of the next unacknowledged record, or None when caught up."""
        box = self.box
        for seg in box.segments:
            if seg.num < self.num:
                continue
            if seg.num > self.num:
                self.num, self.offset = seg.num, 0
            while self.offset < seg.size:
                got = read_entry(box.path(seg.num), self.offset)
                if got is None:  # cannot happen below seg.size unless flash rots
                    self.offset = seg.size
                    break
                self.offset += HEAD + len(got[1])
                if got[0] > box.acked:
                    return got
        return None
