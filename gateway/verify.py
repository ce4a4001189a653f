"""Checks a node's record frame before the gateway takes responsibility for it.

Sans-IO: the verifier is handed decoded frames, node keys and a memory of what it has
seen; it decides and counts, and never touches a port, a file or a socket.

Outcomes of `Verifier.check`:

    Verdict.status == ACCEPTED   new record, tag good: store it, then acknowledge
    Verdict.status == DUPLICATE  same (node, seq) with the same bytes: a harmless resend
    Verdict.status == REJECTED   Verdict.reason says why:
        unknown_node  no key is provisioned for the node id in the record
        bad_tag       the HMAC tag does not match the record bytes
        forgery       (node, seq) already seen with different bytes; raises an alert
        stale         seq at or below the node's acknowledgement mark, and no digest
                      kept for it (pruned, or never stored here): never stored again
"""

from __future__ import annotations

import hashlib
import hmac
from collections import Counter
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


class MemorySeen:
    """SeenRecords in a dict: for tests and the demo; the gateway persists its own."""

    def __init__(self) -> None:
        self._seen: dict[tuple[bytes, int], bytes] = {}

    def digest(self, node: bytes, seq: int) -> bytes | None:
        return self._seen.get((node, seq))

    def remember(self, node: bytes, seq: int, digest: bytes) -> None:
        self._seen[(node, seq)] = digest


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

    def check(self, frame: wire_frame.Frame, floor: int = -1) -> Verdict:
        """Judge one RECORD frame from Decoder.feed (its fields are already decoded).
        `floor`: the node's acknowledgement mark; a new seq at or below it is stale."""
        if frame.type != wire_frame.RECORD or frame.fields is None:
            raise ValueError("check() takes decoded record frames only")
        record, tag = frame.split_tag()
        fields = frame.fields
        node, seq = fields["node"], fields["seq"]

        def verdict(status: str, reason: str | None = None) -> Verdict:
            self.counts[reason or status] += 1
            return Verdict(status, reason, node, seq, record, tag, fields)

        key = self.keys.get(node)
        if key is None:
            return verdict(REJECTED, UNKNOWN_NODE)
        # stdlib hmac (one-shot, in C) for speed; tests pin it to the firmware's HMAC.
        if not hmac.compare_digest(hmac.digest(key, record, "sha256"), tag):
            return verdict(REJECTED, BAD_TAG)
        digest = hashlib.sha256(record).digest()
        previous = self.seen.digest(node, seq)
        if previous is not None:
            return verdict(DUPLICATE) if previous == digest else verdict(REJECTED, FORGERY)
        if seq <= floor:
            return verdict(REJECTED, STALE)
        self.seen.remember(node, seq, digest)
        return verdict(ACCEPTED)
