"""Accepted records not yet sealed into a batch, as columns: a run in arrival order.

The outbox keeps them in its `inbox` table as one row per commit whose body is this
run's columns, each packed whole (a CBOR array of byte strings: the records joined,
their lengths, the tags joined, t, tq, received), and keeps the rows it has in memory
so that sealing need not read back what was just written (gateway/outbox.py).

Invariant: the five columns have the same length; slicing keeps them aligned.
"""

from __future__ import annotations

from itertools import accumulate

import cbor2

from .seen import DIGEST, pack, unpack


class Pending:
    __slots__ = ("records", "tags", "t", "tq", "received")

    def __init__(self, records: list[bytes], tags: list[bytes], t: list[int], tq: list[int],
                 received: list[int]) -> None:
        if not len(records) == len(tags) == len(t) == len(tq) == len(received):
            raise ValueError("records, tags, t, tq, received: lengths differ")
        self.records, self.tags, self.t, self.tq, self.received = (
            records, tags, t, tq, received)

    @classmethod
    def empty(cls) -> Pending:
        return cls([], [], [], [], [])

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, part: slice) -> Pending:
        if not isinstance(part, slice):
            raise TypeError("a Pending run is sliced, not indexed")
        return Pending(self.records[part], self.tags[part], self.t[part], self.tq[part],
                       self.received[part])

    def extend(self, other: Pending) -> None:
        self.records += other.records
        self.tags += other.tags
        self.t += other.t
        self.tq += other.tq
        self.received += other.received

    def append(self, record: bytes, tag: bytes, t: int, tq: int, received: int) -> None:
        self.records.append(record)
        self.tags.append(tag)
        self.t.append(t)
        self.tq.append(tq)
        self.received.append(received)

    def encode(self) -> bytes:
        return cbor2.dumps([b"".join(self.records), pack(map(len, self.records), "H"),
                            b"".join(self.tags), pack(self.t), bytes(self.tq),
                            pack(self.received)])

    @classmethod
    def decode(cls, body: bytes) -> Pending:
        joined, lengths, tags, t, tq, received = cbor2.loads(body)
        ends = list(accumulate(unpack(lengths, "H"), initial=0))
        return cls([joined[a:b] for a, b in zip(ends, ends[1:], strict=False)],
                   [tags[i:i + DIGEST] for i in range(0, len(tags), DIGEST)],
                   list(unpack(t)), list(tq), list(unpack(received)))
