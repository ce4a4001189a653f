# Outbox segment format: how one record sits in an append-only file on flash.
#
# Entry: A5 | len u16 BE | seq u64 BE | crc32(seq | payload) u32 BE | payload
#
# Invariant: an entry is accepted only whole and with a matching CRC; the first bad
# entry ends the valid part of a segment (a damaged tail left by a reset or power
# loss), and nothing after it is read.

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
