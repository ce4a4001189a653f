"""The digests of accepted records, by (node, seq), in the outbox's SQLite: what tells a
harmless resend from a forgery (gateway/verify.py). The digest is the record's node tag.

One row per node per commit (a block), not one per record: `seqs` (8-byte unsigned,
little-endian) and `digests` (32 bytes each, in the same order), with the block's
lowest and highest seq, its size and when it arrived. Writing a chunk's digests is one
insert per node; a lookup reads the blocks whose [low, high] holds the seq (resends
only: a seq above the node's highest is new without a lookup).

Pruning works on whole blocks and stays on the safe side of the policy in
gateway/outbox.py: a block goes only when its highest seq is at or below the node's
mark, it arrived before the cutoff, and every seq in it is below every seq of the
newest blocks that together hold `keep_per_node` digests.

Invariant: inside a transaction, `digest` sees everything `remember`ed or
`remember_run` in it, and everything committed before; `flush` writes what was
remembered, in the caller's transaction.
"""

from __future__ import annotations

import sqlite3
import sys
from array import array
from collections.abc import Iterable

SCHEMA = """
CREATE TABLE IF NOT EXISTS seen (id INTEGER PRIMARY KEY, node BLOB NOT NULL,
    low INTEGER NOT NULL, high INTEGER NOT NULL, n INTEGER NOT NULL, at INTEGER NOT NULL,
    seqs BLOB NOT NULL, digests BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS seen_by_node ON seen (node, high);
"""
DIGEST = 32
_SWAP = sys.byteorder != "little"


def pack(values: Iterable[int], typecode: str = "Q") -> bytes:
    """Unsigned integers as little-endian bytes (8 each for "Q", 2 for "H")."""
    packed = array(typecode, values)
    if _SWAP:
        packed.byteswap()
    return packed.tobytes()


def unpack(blob: bytes, typecode: str = "Q") -> array:
    values = array(typecode)
    values.frombytes(blob)
    if _SWAP:
        values.byteswap()
    return values


class Seen:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        # Highest seq remembered per node: a seq above it cannot be in `seen`, which
        # spares a lookup for every new record (a stale, too-high value only costs one).
        self._top: dict[bytes, int] = dict(
            db.execute("SELECT node, max(high) FROM seen GROUP BY node"))
        self._staged: dict[bytes, tuple[list[int], list[bytes]]] = {}
        self._one: dict[tuple[bytes, int], bytes] = {}  # staged by remember()
        self._read: dict[tuple[bytes, int], bytes] = {}  # read by prefetch()
        self._spans: dict[bytes, tuple[int, int]] = {}  # node -> seq range prefetched

    def reset(self) -> None:
        """The transaction ended: forget what it staged and read."""
        self._staged.clear()
        self._one.clear()
        self._read.clear()
        self._spans.clear()

    def highest(self, node: bytes) -> int:
        return self._top.get(node, -1)

    def _stage(self, node: bytes) -> tuple[list[int], list[bytes]]:
        staged = self._staged.get(node)
        if staged is None:
            staged = self._staged[node] = ([], [])
        return staged

    def remember(self, node: bytes, seq: int, digest: bytes) -> None:
        seqs, digests = self._stage(node)
        seqs.append(seq)
        digests.append(digest)
        self._one[(node, seq)] = digest
        if seq > self._top.get(node, -1):
            self._top[node] = seq

    def remember_run(self, node: bytes, seqs: list[int], digests: list[bytes]) -> None:
        staged = self._stage(node)
        staged[0].extend(seqs)
        staged[1].extend(digests)
        top = max(seqs)
        if top > self._top.get(node, -1):
            self._top[node] = top

    def digest(self, node: bytes, seq: int) -> bytes | None:
        key = (node, seq)
        found = self._one.get(key) or self._read.get(key)
        if found is not None or seq > self._top.get(node, -1):
            return found
        staged = self._staged.get(node)
        if staged is not None and seq in staged[0]:  # remembered by a run just now
            return staged[1][staged[0].index(seq)]
        span = self._spans.get(node)
        if span is not None and span[0] <= seq <= span[1]:
            return None  # prefetched: not there
        return self._blocks(node, seq, seq).get(seq)

    def _blocks(self, node: bytes, low: int, high: int) -> dict[int, bytes]:
        """Committed digests of `node` with seq in [low, high]."""
        found = {}
        for seqs, digests in self._db.execute(
                "SELECT seqs, digests FROM seen WHERE node=? AND high>=? AND low<=?",
                (node, low, high)):
            for i, seq in enumerate(unpack(seqs)):
                if low <= seq <= high:
                    found[seq] = digests[i * DIGEST:(i + 1) * DIGEST]
        return found

    def prefetch(self, wanted: Iterable[tuple[bytes, int]]) -> None:
        """Read the digests of these (node, seq) in one query per node: a go-back-N
        resend of a thousand records costs one read."""
        spans: dict[bytes, list[int]] = {}
        for node, seq in wanted:
            if seq <= self._top.get(node, -1):
                span = spans.setdefault(node, [seq, seq])
                span[0], span[1] = min(span[0], seq), max(span[1], seq)
        for node, (low, high) in spans.items():
            for seq, digest in self._blocks(node, low, high).items():
                self._read[(node, seq)] = digest
            self._spans[node] = (low, high)

    def flush(self, now: int) -> None:
        """Write the staged digests: one block per node."""
        if self._staged:
            self._db.executemany(
                "INSERT INTO seen (node, low, high, n, at, seqs, digests) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(node, min(seqs), max(seqs), len(seqs), now, pack(seqs), b"".join(digests))
                 for node, (seqs, digests) in self._staged.items() if seqs])

    def prune(self, marks: dict[bytes, int], keep_per_node: int, cutoff: int) -> int:
        """Forget blocks (policy in the module docstring); returns how many digests."""
        removed = 0
        for node, mark in marks.items():
            (bound,) = self._db.execute(
                "SELECT min(low) FROM (SELECT low, n, sum(n) OVER (ORDER BY high DESC, id DESC) "
                "AS c FROM seen WHERE node=?) WHERE c - n < ?", (node, keep_per_node)).fetchone()
            if bound is None:
                continue
            removed += sum(n for (n,) in self._db.execute(
                "DELETE FROM seen WHERE node=? AND high<? AND high<=? AND at<? RETURNING n",
                (node, bound, mark, cutoff)).fetchall())
        return removed


def seqs(db: sqlite3.Connection, node: bytes) -> list[int]:
    """Every seq remembered for `node`, in arrival order (for tools and tests that read an
    outbox file; the gateway itself asks `Seen`)."""
    out: list[int] = []
    for (blob,) in db.execute("SELECT seqs FROM seen WHERE node=? ORDER BY id", (node,)):
        out.extend(unpack(blob))
    return out


def create(db: sqlite3.Connection) -> None:
    """The `seen` table, inside the caller's transaction; one of one row per record
    (outboxes before blocks) becomes blocks of up to 1000. Its digests are SHA-256 of
    the record (gateway/verify.py recognises those too)."""
    old = "seq" in {row[1] for row in db.execute("PRAGMA table_info(seen)")}
    if old:
        db.execute("ALTER TABLE seen RENAME TO seen_v1")
    for statement in SCHEMA.split(";"):
        if statement.strip():
            db.execute(statement)
    if not old:
        return
    rows = db.execute("SELECT node, seq, digest, at FROM seen_v1 ORDER BY node, seq").fetchall()
    blocks = []
    for start in range(0, len(rows), 1000):
        part = rows[start:start + 1000]
        for node in dict.fromkeys(r[0] for r in part):
            mine = [r for r in part if r[0] == node]
            seqs = [r[1] for r in mine]
            blocks.append((node, min(seqs), max(seqs), len(seqs), max(r[3] for r in mine),
                           pack(seqs), b"".join(r[2] for r in mine)))
    db.executemany("INSERT INTO seen (node, low, high, n, at, seqs, digests) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?)", blocks)
    db.execute("DROP TABLE seen_v1")
