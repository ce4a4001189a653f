"""Deleted records and batches: each node's `prev` chain and each gateway's batch seqs.

Invariant: a node's stored records form one chain (docs/protocol.md §5). Every record
names its predecessor in `prev`; the predecessor must be stored unless the record is the
node's lowest stored seq (its first record ever, prev 0, or where a gateway on first
contact began: the node's oldest unacknowledged record). Any other record whose prev is
absent is a gap: the record `prev` names was deleted (or never stored). A deleted tail (the
node's newest records) leaves no successor to name it; the store check finds those when
their envelope is still there (`missing_from_store`), the batch check when it is not.

Batch seqs (one counter per gateway, kept in the gateway's outbox) are checked for holes
between the lowest and highest stored seq of each gateway. A hole is a *warning*, not a
problem: a batch refused whole at ingest (future_batch, revoked_key, ...) leaves a reject
row, not an envelope, so holes have legitimate causes the store cannot tell apart.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any


class ChainWalk:
    """Feed (node, seq, prev) in (node, seq) order with `add`, or in any order through
    `walk_unsorted`; collects one problem per gap."""

    def __init__(self) -> None:
        self.problems: list[dict[str, Any]] = []
        self._node: bytes | None = None
        self._seqs: set[int] = set()

    def add(self, node: bytes, seq: int, prev: int) -> None:
        if node != self._node:  # lowest stored seq of this node: a legitimate chain start
            self._node, self._seqs = node, {seq}
            return
        if prev != 0 and prev not in self._seqs:
            self.problems.append({"reason": "chain_gap", "node": node.hex(), "missing_seq": prev,
                                  "named_by_seq": seq})
        self._seqs.add(seq)


def walk_unsorted(records: Iterable[tuple[bytes, int, int]]) -> list[dict[str, Any]]:
    """Chain problems of records in any order (an archive's envelopes); the last copy of
    a (node, seq) wins, as both copies carry the same prev when their tags verify."""
    chains: dict[bytes, dict[int, int]] = {}
    for node, seq, prev in records:
        chains.setdefault(node, {})[seq] = prev
    walk = ChainWalk()
    for node in sorted(chains):
        for seq, prev in sorted(chains[node].items()):
            walk.add(node, seq, prev)
    return walk.problems


def batch_gaps(seqs: dict[str, set[int]]) -> Iterator[dict[str, Any]]:
    """gateway -> stored batch seqs: one warning per hole (first and last missing seq)."""
    for gateway in sorted(seqs):
        ordered = sorted(seqs[gateway])
        for before, after in zip(ordered, ordered[1:], strict=False):
            if after > before + 1:
                yield {"reason": "batch_seq_gap", "gateway": gateway,
                       "missing_from": before + 1, "missing_to": after - 1}
