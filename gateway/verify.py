"""Checks a node's record frame before the gateway takes responsibility for it.

Sans-IO: the verifier is handed decoded frames, node keys and a memory of what it has
seen; it decides and counts, and never touches a port, a file or a socket.

Outcomes of `Verifier.check` (and `judge`, the same on plain values):

    Verdict.status == ACCEPTED   new record, tag good: store it, then acknowledge
    Verdict.status == DUPLICATE  same (node, seq) with the same bytes: a harmless resend
                                 (a replay of a record already stored is exactly this)
    Verdict.status == REJECTED   Verdict.reason says why:
        unknown_node  no key is provisioned for the node id in the record
        bad_tag       the HMAC tag does not match the record bytes
        forgery       (node, seq) already seen with different bytes; raises an alert
        stale         seq at or below the node's acknowledgement mark, and no digest
                      kept for it (pruned, or never stored here): never stored again

The digest remembered for a record is its node tag. A tag is made once, when the node
makes the record, and travels with it (the node stores record and tag together and
resends both), so a resend carries the same tag; the tag is an HMAC under the node's
key, checked before it is compared, so other bytes with the same (node, seq) cannot
carry the same tag. Equal tags therefore mean equal bytes, as SHA-256 digests did,
without hashing again. (Outboxes written before this hold SHA-256 digests: a
duplicate is recognised by either.)

`accept_run` is the common case in one step: a run of records from one node, all with
good tags and all newer than anything seen; it accepts all of them or decides nothing.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import Counter
from operator import lt
from typing import NamedTuple, Protocol

from metrotrace.firmware.metro.wire import frame as wire_frame

ACCEPTED = "accepted"
DUPLICATE = "duplicate"
REJECTED = "rejected"

UNKNOWN_NODE = "unknown_node"
BAD_TAG = "bad_tag"
FORGERY = "forgery"
STALE = "stale"


class SeenRecords(Protocol):
    """Remembers the digest of every record accepted, keyed by (node, seq)."""

    def digest(self, node: bytes, seq: int) -> bytes | None: ...

    def remember(self, node: bytes, seq: int, digest: bytes) -> None: ...

    def highest(self, node: bytes) -> int:
        """A seq at or above the node's highest remembered (-1: none): anything above
        it is new."""
        ...

    def remember_run(self, node: bytes, seqs: list[int], digests: list[bytes]) -> None: ...


class MemorySeen:
    """SeenRecords in a dict: for tests and the demo; the gateway persists its own."""

    def __init__(self) -> None:
        self._seen: dict[tuple[bytes, int], bytes] = {}
        self._top: dict[bytes, int] = {}

    def digest(self, node: bytes, seq: int) -> bytes | None:
        return self._seen.get((node, seq))

    def remember(self, node: bytes, seq: int, digest: bytes) -> None:
        self._seen[(node, seq)] = digest
        self._top[node] = max(seq, self._top.get(node, -1))

    def highest(self, node: bytes) -> int:
        return self._top.get(node, -1)

    def remember_run(self, node: bytes, seqs: list[int], digests: list[bytes]) -> None:
        for seq, digest in zip(seqs, digests, strict=True):
            self.remember(node, seq, digest)


class Tagger:
    """HMAC-SHA256 under one key (RFC 2104) with the key's inner and outer pads hashed
    once: about twice as fast per record as hmac.digest, which sets the key up for each
    message. Tests pin it to hmac.digest and to the firmware's HMAC."""

    def __init__(self, key: bytes) -> None:
        if len(key) > 64:  # SHA-256 block size
            key = hashlib.sha256(key).digest()
        key = key.ljust(64, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))

    def tag(self, message: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()

    def tags(self, messages: list[bytes]) -> list[bytes]:
        inner_copy, outer_copy = self._inner.copy, self._outer.copy
        out = []
        for message in messages:
            inner = inner_copy()
            inner.update(message)
            outer = outer_copy()
            outer.update(inner.digest())
            out.append(outer.digest())
        return out


class Verdict(NamedTuple):  # a tuple: made once per record, so cheap to make
    status: str
    reason: str | None
    node: bytes
    seq: int
    record: bytes
    tag: bytes
    fields: dict

    @property
    def ok(self) -> bool:
        return self.status != REJECTED


class Verifier:
    def __init__(self, keys: dict[bytes, bytes], seen: SeenRecords | None = None) -> None:
        self.keys = keys
        self.seen = seen if seen is not None else MemorySeen()
        self.counts: Counter[str] = Counter()
        self._taggers: dict[bytes, Tagger] = {}

    def _tagger(self, node: bytes) -> Tagger | None:
        tagger = self._taggers.get(node)
        if tagger is None:
            key = self.keys.get(node)
            if key is None:
                return None
            tagger = self._taggers[node] = Tagger(key)
        return tagger

    def judge(self, node: bytes, seq: int, record: bytes, tag: bytes,
              floor: int = -1) -> tuple[str, str | None]:
        """(status, reason) of one record; an accepted one is remembered."""
        tagger = self._tagger(node)
        if tagger is None:
            status, reason = REJECTED, UNKNOWN_NODE
        elif not hmac.compare_digest(tagger.tag(record), tag):
            status, reason = REJECTED, BAD_TAG
        else:
            previous = self.seen.digest(node, seq)
            if previous is not None:
                same = previous == tag or previous == hashlib.sha256(record).digest()
                status, reason = (DUPLICATE, None) if same else (REJECTED, FORGERY)
            elif seq <= floor:
                status, reason = REJECTED, STALE
            else:
                self.seen.remember(node, seq, tag)
                status, reason = ACCEPTED, None
        self.counts[reason or status] += 1
        return status, reason

    def accept_run(self, node: bytes, seqs: list[int], records: list[bytes],
                   tags: list[bytes], floor: int = -1) -> bool:
        """Accept and remember all of these records of `node` if every tag is good and
        every seq is new (strictly rising, above the floor and anything seen); else
        decide nothing and return False (then judge them one by one)."""
        tagger = self._tagger(node)
        if (tagger is None or seqs[0] <= max(floor, self.seen.highest(node))
                or not all(map(lt, seqs, seqs[1:]))):
            return False
        # One constant-time comparison for the run; a bad tag anywhere sends the run
        # to `judge`, which finds it.
        if not hmac.compare_digest(b"".join(tagger.tags(records)), b"".join(tags)):
            return False
        self.seen.remember_run(node, seqs, tags)
        self.counts[ACCEPTED] += len(seqs)
        return True

    def check(self, frame: wire_frame.Frame, floor: int = -1) -> Verdict:
        """Judge one RECORD frame from Decoder.feed (its fields are already decoded).
        `floor`: the node's acknowledgement mark; a new seq at or below it is stale."""
        if frame.type != wire_frame.RECORD or frame.fields is None:
            raise ValueError("check() takes decoded record frames only")
        record, tag = frame.split_tag()
        fields = frame.fields
        node, seq = fields["node"], fields["seq"]
        status, reason = self.judge(node, seq, record, tag, floor)
        return Verdict(status, reason, node, seq, record, tag, fields)
