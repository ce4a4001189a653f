"""From decoded frames to durably stored records and the acknowledgements they earn.

Sans-IO: the serial and Wi-Fi adapters hand in what frame.Decoder produced (or, for
Wi-Fi, a record frame built from an MQTT payload); `receive` verifies each record,
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

Invariants: a record is acknowledged only after the transaction that stored it has
committed; a refused record (outbox full) is neither remembered nor acknowledged, so
the node keeps it and sends it again later.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from metrotrace.firmware.metro.wire import frame as wire_frame
from metrotrace.firmware.metro.wire import record as wire_record

from .acks import AckTracker
from .counters import Counters
from .outbox import Outbox
from .verify import ACCEPTED, DUPLICATE, FORGERY, STALE, Verifier

OUTBOX_FULL = "outbox_full"
# A node whose clock was never set (tq 0) gets the gateway's time with its next ack; one
# set by the gateway (tq 2) is set again after this long, so its drift stays bounded.
# Nodes with NTP (tq 1) keep their own time. docs/protocol.md §3, frame T.
TIME_EVERY_MS = 3_600_000
NOT_A_RECORD = "not_a_record"  # an A or T frame arriving at the gateway


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

    def receive(self, items: Iterable[wire_frame.Frame | wire_frame.Reject]) -> list[Ack]:
        now = self.clock()
        items = list(items)
        touched: dict[bytes, bool] = {}
        alerts: list[Alert] = []
        firmware: dict[bytes, str] = {}
        tally: Counter[str] = Counter()
        rejected: Counter[str] = Counter()
        with self.outbox.transaction():
            records = []
            for item in items:
                if isinstance(item, wire_frame.Reject):
                    rejected[item.reason] += 1
                elif item.type != wire_frame.RECORD:
                    rejected[NOT_A_RECORD] += 1
                else:
                    records.append(item)
            self.outbox.prefetch((f["node"], f["seq"]) for f in (r.fields for r in records))
            for item in records:
                self._one(item, now, touched, alerts, firmware, tally, rejected)
            marks = {node: self.acks.mark(node) for node in touched}
            self.outbox.save_marks(marks)
            for node, fw in firmware.items():
                self.outbox.set_firmware(node, fw)
        tally["received"] = len(records)
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

    def _one(self, item: wire_frame.Frame, now: int, touched: dict, alerts: list,
             firmware: dict, tally: Counter, rejected: Counter) -> None:
        fields = item.fields
        node, seq = fields["node"], fields["seq"]
        if self.outbox.room() == 0:
            # Full: a resend of something stored is still acknowledged; anything new is
            # refused, so the node keeps it (back-pressure), and an alert goes out once.
            record, _ = item.split_tag()
            known = self.outbox.digest(node, seq)
            if known is None or known != hashlib.sha256(record).digest():
                rejected[OUTBOX_FULL] += 1
                if not self._full_alerted:
                    self._full_alerted = True
                    alerts.append(Alert(OUTBOX_FULL, node, seq,
                                        f"outbox holds {self.outbox.depth} records"))
                return
        else:
            self._full_alerted = False
        marked = node in self.acks.marks
        verdict = self.verifier.check(item, self.acks.marks[node] if marked else -1)
        status = verdict.status
        if status == ACCEPTED:
            self.outbox.add(node, seq, verdict.record, verdict.tag, now, fields["t"],
                            fields["tq"])
            tally["accepted"] += 1
            kind = fields["kind"]
            if kind == wire_record.STATUS or kind == wire_record.EVENT:
                fw = _firmware(fields)
                if fw is not None:
                    firmware[node] = fw
        elif status == DUPLICATE:
            tally["duplicate"] += 1
        else:
            rejected[verdict.reason or "rejected"] += 1
            if verdict.reason == FORGERY:
                alerts.append(Alert(FORGERY, node, seq,
                                    "same (node, seq) as a stored record, different bytes"))
            if verdict.reason == STALE:
                touched[node] = True  # answer with the mark: the node may drop it
            return
        self._note_clock(node, fields["tq"], now)
        if marked:
            self.acks.stored(node, seq, fields["prev"])
            touched[node] = True
            return
        seen = self._probation.setdefault(node, {})
        resent_lowest = status == DUPLICATE and seen and seq == min(seen)
        seen[seq] = fields["prev"]
        if fields["prev"] == 0 or resent_lowest:
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


def _firmware(fields: dict) -> str | None:
    """The firmware id a record reports: status records, and power_up events."""
    if fields["kind"] == wire_record.STATUS:
        return fields["fw"]
    if fields["kind"] == wire_record.EVENT and fields["code"] == "power_up":
        fw = (fields.get("detail") or {}).get("fw")
        return fw if isinstance(fw, str) else None
    return None
