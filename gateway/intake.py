"""From decoded frames to durably stored records and the acknowledgements they earn.

Sans-IO: the serial adapter hands in a FastDecoder chunk (record columns and the
other items), the Wi-Fi adapter frame.Decoder-style items built from MQTT payloads;
`receive` verifies each record,
stores the accepted ones and commits once for the whole chunk, and only then returns
the marks to acknowledge, so an acknowledgement never runs ahead of the disk (group
commit: one fsync per chunk, not per record).

First contact. docs/protocol.md §5 lets a gateway that has never heard from a node
start the node's chain at the `prev` of the first record it receives. That first
record need not be the node's oldest: pyserial flushes the input on open, and a port
opened while the node is sending drops its first frames. Acknowledging from there
would make the node delete records the gateway never saw. So a node without a mark is
on probation: its records are stored but not acknowledged until a record with
prev = 0 (the node's first ever) arrives, or the lowest seq seen so far arrives again:
a node without acknowledgements goes back to its oldest unacknowledged record and
resends from there, so a resend of the lowest seq marks the node's oldest. The chain
then starts at the prev of that record. (No timer: one would guess.)

Stale records. A seq at or below the node's mark that the gateway has no digest for
(pruned: outbox.py) is refused as `stale`, never stored; the node gets the mark again,
which lets it drop the record.

Runs. A chunk from one port is usually one node's records, all new, all good. Such a
run is taken whole (`_run`): one comparison of all tags (verify.accept_run), one
staged inbox row, the mark moved along the chain at once (acks.stored_run). It
decides exactly what record-by-record handling would, and is used only where that is
plain: the node has a mark, the outbox has room for the whole chunk, every seq is
above anything seen; otherwise the records go one by one, in stream order (`_one`).

Invariants: a record is acknowledged only after the transaction that stored it has
committed; a refused record (outbox full) is neither remembered nor acknowledged, so
the node keeps it and sends it again later.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import compress
from operator import itemgetter

from metrotrace.firmware.metro.wire import frame as wire_frame
from metrotrace.firmware.metro.wire import record as wire_record

from .acks import AckTracker
from .counters import Counters
from .fastrecord import BODY_FIELD, DETAIL, KIND, NODE, PREV, SEQ, TQ, T
from .fastwire import Chunk
from .outbox import Outbox
from .pending import Pending
from .verify import ACCEPTED, DUPLICATE, FORGERY, STALE, Verifier

OUTBOX_FULL = "outbox_full"
# A node whose clock was never set (tq 0) gets the gateway's time with its next ack; one
# set by the gateway (tq 2) is set again after this long, so its drift stays bounded.
# Nodes with NTP (tq 1) keep their own time. docs/protocol.md §3, frame T.
TIME_EVERY_MS = 3_600_000
NOT_A_RECORD = "not_a_record"  # an A or T frame arriving at the gateway
_COLUMNS = {name: itemgetter(key) for name, key in
            (("node", NODE), ("seq", SEQ), ("prev", PREV), ("t", T), ("tq", TQ),
             ("kind", KIND))}
_INVENTORY_KINDS = frozenset((wire_record.STATUS, wire_record.EVENT))


@dataclass(frozen=True)
class Ack:
    node: bytes
    seq: int
    key: bytes
    time: int | None = None  # UTC ms to set the node's clock to (a T frame), if due


@dataclass(frozen=True)
class Alert:
    kind: str
    node: bytes
    seq: int
    detail: str


class Intake:
    def __init__(self, verifier: Verifier, outbox: Outbox, counters: Counters,
                 clock: Callable[[], int], alert: Callable[[Alert], None],
                 firmware_seen: Callable[[bytes, str], None] = lambda node, fw: None) -> None:
        self.verifier = verifier
        self.outbox = outbox
        self.counters = counters
        self.clock = clock
        self.alert = alert
        self.firmware_seen = firmware_seen
        self.acks = AckTracker(outbox.marks())
        self._probation: dict[bytes, dict[int, int]] = {}  # node -> {seq: prev} seen
        self._full_alerted = False
        self._time_sent: dict[bytes, int] = {}  # node -> when its clock was last set
        self._time_due: set[bytes] = set()

    def receive(self, items: Chunk | Iterable[wire_frame.Frame | wire_frame.Reject]
                ) -> list[Ack]:
        """Verify, store and commit a chunk (FastDecoder.feed_chunk, or decoded items);
        return the acknowledgements its commit earned."""
        chunk = items if isinstance(items, Chunk) else Chunk.of(items)
        now = self.clock()
        touched: dict[bytes, bool] = {}
        alerts: list[Alert] = []
        firmware: dict[bytes, str] = {}
        tally: Counter[str] = Counter()
        rejected: Counter[str] = Counter()
        for item in chunk.others:
            rejected[item.reason if isinstance(item, wire_frame.Reject) else NOT_A_RECORD] += 1
        with self.outbox.transaction():
            if len(chunk):
                self._records(chunk, now, touched, alerts, firmware, tally, rejected)
            marks = {node: self.acks.mark(node) for node in touched}
            self.outbox.save_marks(marks)
            for node, fw in firmware.items():
                self.outbox.set_firmware(node, fw)
        tally["received"] = len(chunk)
        self.counters.add_many(tally, rejected)
        self.counters.queued = self.outbox.depth
        for alert in alerts:
            self.alert(alert)
        for node, fw in firmware.items():
            self.firmware_seen(node, fw)
        acks = []
        for node, mark in marks.items():
            time = None
            if node in self._time_due:
                self._time_due.discard(node)
                self._time_sent[node] = time = self.clock()
            acks.append(Ack(node, mark, self.verifier.keys[node], time))
        return acks

    def _records(self, chunk: Chunk, now: int, touched: dict, alerts: list,
                 firmware: dict, tally: Counter, rejected: Counter) -> None:
        raws = chunk.raws
        n = len(raws)
        if self.outbox.room() < n:  # filling up: record by record, in stream order
            self._one_by_one(range(n), chunk, now, touched, alerts, firmware, tally,
                             rejected)
            return
        self._full_alerted = False
        nodes = list(map(_COLUMNS["node"], raws))
        if nodes.count(nodes[0]) == n:  # one board per port: the usual chunk
            groups = {nodes[0]: None}
        else:
            groups = {}
            for i, node in enumerate(nodes):
                groups.setdefault(node, []).append(i)
        for node, where in groups.items():
            if not self._run(node, where, chunk, now, touched, firmware, tally):
                self._one_by_one(where or range(n), chunk, now, touched, alerts, firmware,
                                 tally, rejected)

    def _run(self, node: bytes, where: list[int] | None, chunk: Chunk, now: int,
             touched: dict, firmware: dict, tally: Counter) -> bool:
        """All of one node's records of the chunk at once, when every one is new with a
        good tag and the node has a mark (the usual case); False: nothing done."""
        if node not in self.acks.marks:
            return False  # first contact: record by record (probation)
        pick = (lambda column: column) if where is None else (
            lambda column: [column[i] for i in where])
        raws, records, tags = pick(chunk.raws), pick(chunk.records), pick(chunk.tags)
        seqs = list(map(_COLUMNS["seq"], raws))
        if not self.verifier.accept_run(node, seqs, records, tags, self.acks.marks[node]):
            return False
        tqs = list(map(_COLUMNS["tq"], raws))
        self.outbox.add_run(Pending(records, tags, list(map(_COLUMNS["t"], raws)), tqs,
                                    [now] * len(raws)))
        tally["accepted"] += len(raws)
        kinds = list(map(_COLUMNS["kind"], raws))
        if not _INVENTORY_KINDS.isdisjoint(kinds):
            for raw in compress(raws, map(_INVENTORY_KINDS.__contains__, kinds)):
                fw = _firmware(raw)
                if fw is not None:
                    firmware[node] = fw
        for tq in set(tqs):  # per record it would decide the same, in any order
            self._note_clock(node, tq, now)
        self.acks.stored_run(node, seqs, list(map(_COLUMNS["prev"], raws)))
        touched[node] = True
        return True

    def _one_by_one(self, where: Iterable[int], chunk: Chunk, now: int, touched: dict,
                    alerts: list, firmware: dict, tally: Counter, rejected: Counter) -> None:
        where = list(where)
        raws = chunk.raws
        self.outbox.prefetch((raws[i][NODE], raws[i][SEQ]) for i in where)
        for i in where:
            self._one(raws[i], chunk.records[i], chunk.tags[i], now, touched, alerts,
                      firmware, tally, rejected)

    def _one(self, raw: dict, record: bytes, tag: bytes, now: int, touched: dict,
             alerts: list, firmware: dict, tally: Counter, rejected: Counter) -> None:
        node, seq = raw[NODE], raw[SEQ]
        if self.outbox.room() == 0:
            # Full: a resend of something stored is still acknowledged; anything new is
            # refused, so the node keeps it (back-pressure), and an alert goes out once.
            if self.outbox.digest(node, seq) not in (tag, _legacy_digest(record)):
                rejected[OUTBOX_FULL] += 1
                if not self._full_alerted:
                    self._full_alerted = True
                    alerts.append(Alert(OUTBOX_FULL, node, seq,
                                        f"outbox holds {self.outbox.depth} records"))
                return
        else:
            self._full_alerted = False
        marked = node in self.acks.marks
        status, reason = self.verifier.judge(node, seq, record, tag,
                                             self.acks.marks[node] if marked else -1)
        if status == ACCEPTED:
            self.outbox.add(node, seq, record, tag, now, raw[T], raw[TQ])
            tally["accepted"] += 1
            if raw[KIND] in _INVENTORY_KINDS:
                fw = _firmware(raw)
                if fw is not None:
                    firmware[node] = fw
        elif status == DUPLICATE:
            tally["duplicate"] += 1
        else:
            rejected[reason or "rejected"] += 1
            if reason == FORGERY:
                alerts.append(Alert(FORGERY, node, seq,
                                    "same (node, seq) as a stored record, different bytes"))
            if reason == STALE:
                touched[node] = True  # answer with the mark: the node may drop it
            return
        self._note_clock(node, raw[TQ], now)
        if marked:
            self.acks.stored(node, seq, raw[PREV])
            touched[node] = True
            return
        seen = self._probation.setdefault(node, {})
        resent_lowest = status == DUPLICATE and seen and seq == min(seen)
        seen[seq] = raw[PREV]
        if raw[PREV] == 0 or resent_lowest:
            del self._probation[node]
            for s, prev in sorted(seen.items()):
                self.acks.stored(node, s, prev)
            touched[node] = True

    def _note_clock(self, node: bytes, tq: int, now: int) -> None:
        """Decide whether the node's next ack carries the gateway's time."""
        if tq == wire_record.TQ_NTP:
            return
        last = self._time_sent.get(node)
        if last is not None and now - last < 1000:
            return  # just sent: the node has not stamped a record with it yet
        if tq == wire_record.TQ_UNSET or last is None or now - last >= TIME_EVERY_MS:
            self._time_due.add(node)


def _legacy_digest(record: bytes) -> bytes:
    """The digest outboxes kept before they kept the tag (verify.py)."""
    return hashlib.sha256(record).digest()


def _firmware(raw: dict) -> str | None:
    """The firmware id a record reports: status records, and power_up events."""
    if raw[KIND] == wire_record.STATUS:
        return raw[BODY_FIELD]
    if raw[KIND] == wire_record.EVENT and raw[BODY_FIELD] == "power_up":
        fw = (raw.get(DETAIL) or {}).get("fw")
        return fw if isinstance(fw, str) else None
    return None
