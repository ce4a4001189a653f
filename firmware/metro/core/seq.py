# Sequence numbers that never repeat, even across resets and power loss.
#
# A counter lease (research/iot.md §4.6): storage holds the first number of the next
# block. On boot the node takes the stored value, writes value + BLOCK back, and hands
# out numbers from the block it now owns. A crash wastes at most one block's unused
# numbers; flash is written once per BLOCK records instead of once per record.
#
# storage is any object with read() -> bytes or None and write(bytes) that is durable
# when write() returns (a file written then renamed on a board; a dict in tests).

import struct

from ..wire.crc import crc32

BLOCK = 1000


class SeqCounter:
    def __init__(self, storage, block=BLOCK):
        if block < 1:
            raise ValueError("block must be at least 1")
        self._storage = storage
        self._block = block
        start = _unpack(storage.read())
        self._next = start
        self._limit = start
        self._lease()

    def _lease(self):
        self._limit = self._next + self._block
        self._storage.write(_pack(self._limit))

    def next(self):
        if self._next >= self._limit:
            self._lease()
        n = self._next
        self._next += 1
        return n

    def peek(self):
        return self._next


def _pack(n):
    body = struct.pack(">Q", n)
    return body + struct.pack(">I", crc32(body))


def _unpack(raw):
    # A fresh board has no lease and starts at 1. A damaged lease must never restart
    # the count: numbers already used would be handed out again.
    if raw is None or len(raw) == 0:
        return 1
    if len(raw) != 12 or struct.unpack(">I", raw[8:])[0] != crc32(raw[:8]):
        raise ValueError("sequence lease is damaged; refusing to reuse numbers")
    return struct.unpack(">Q", raw[:8])[0]
