"""Which sequence number the gateway may acknowledge to a node.

An acknowledgement `seq = A` tells the node: every record of yours up to A is stored
durably here, delete them. Sequence numbers have gaps (a node leases them in blocks and
skips the rest of a block after a reset), so the gateway cannot count; instead every
record names its predecessor (`prev`). The mark A moves to a stored record N only when
N's predecessor is at or below A, and then on along the chain of records already
stored. A record lost on the line leaves a hole: A stays below it until the node, which
resends from its oldest unacknowledged record, fills it.

A gateway that has never heard from a node starts the chain at the `prev` of that
node's oldest unacknowledged record; gateway/intake.py holds a new node's records on
probation until it has seen which record that is (docs/protocol.md §5, first contact).

Invariant: A only grows, and only over records this gateway has stored.
"""

from __future__ import annotations


class AckTracker:
    def __init__(self, marks: dict[bytes, int] | None = None) -> None:
        self.marks: dict[bytes, int] = dict(marks or {})
        # node -> {prev: seq} of stored records waiting for a hole to be filled
        self._waiting: dict[bytes, dict[int, int]] = {}

    def stored(self, node: bytes, seq: int, prev: int) -> int:
        """Note that (node, seq) is durably stored (or was already); return the mark."""
        mark = self.marks.setdefault(node, prev)
        if seq <= mark:
            return mark
        waiting = self._waiting.setdefault(node, {})
        if prev > mark:
            waiting[prev] = seq
            return mark
        mark = seq
        while mark in waiting:
            mark = waiting.pop(mark)
        # Entries left behind by records that a reset made obsolete can never be
        # reached again; drop them so a long-lived gateway does not accumulate them.
        for stale in [p for p in waiting if p < mark]:
            del waiting[stale]
        self.marks[node] = mark
        return mark

    def stored_run(self, node: bytes, seqs: list[int], prevs: list[int]) -> int:
        """`stored` for each record of a run, in order; return the mark. A run that
        continues the chain from the mark (each prev the seq before it) and leaves no
        hole behind moves the mark to its last seq at once."""
        mark = self.marks.get(node)
        if (mark is not None and not self._waiting.get(node) and prevs[0] <= mark < seqs[0]
                and prevs[1:] == seqs[:-1]):
            self.marks[node] = seqs[-1]
            return seqs[-1]
        for seq, prev in zip(seqs, prevs, strict=True):
            mark = self.stored(node, seq, prev)
        return mark

    def mark(self, node: bytes) -> int:
        return self.marks.get(node, 0)
