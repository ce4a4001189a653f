"""Turns pending records into signed batches (COSE_Sign1 envelopes, gateway/envelope.py).

Sans-IO: given the records waiting in the outbox, the time and the signing key, it
says whether a batch is due and seals it; the outbox moves the records into the
envelope in one transaction (Outbox.sealed).

A batch is due when max_records are waiting or the oldest has waited window_ms. Live
and historical records never share a batch: a record is backfill when it reached the
gateway, or was made (by a clock it trusts), more than backfill_after_ms before the
batch is sealed; such batches carry the envelope's backfill flag.

Invariant: a batch holds a prefix of the pending records in arrival order, all live or
all backfill, verbatim with their node tags.
"""

from __future__ import annotations

from dataclasses import dataclass

import cbor2

from metrotrace.firmware.metro.wire import record as wire_record

from .envelope import Batch, seal
from .keys import KeyRing
from .pending import Pending

_TRUSTED = frozenset((wire_record.TQ_NTP, wire_record.TQ_GATEWAY))


@dataclass(frozen=True)
class Sealed:
    seq: int
    envelope: bytes
    records: Pending
    backfill: bool


class Batcher:
    def __init__(self, gateway: str, topic: str, keyring: KeyRing, max_records: int = 500,
                 window_ms: int = 200, backfill_after_ms: int = 300_000) -> None:
        self.gateway = gateway
        self.topic = topic
        self.keyring = keyring
        self.max_records = max_records
        self.window_ms = window_ms
        self.backfill_after_ms = backfill_after_ms

    def due(self, pending: int, oldest_received: int | None, now: int) -> bool:
        if pending >= self.max_records:
            return True
        return pending > 0 and oldest_received is not None and (
            now - oldest_received >= self.window_ms)

    def backfill(self, run: Pending, now: int) -> list[bool]:
        """Per record: does it travel as backfill (module docstring)?"""
        cutoff = now - self.backfill_after_ms
        if min(run.received) >= cutoff and min(run.t) >= cutoff:
            return [False] * len(run)  # all live: the usual case, without a step each
        return [received < cutoff or (tq in _TRUSTED and t < cutoff)
                for received, t, tq in zip(run.received, run.t, run.tq, strict=True)]

    def seal(self, records: Pending, seq: int, now: int) -> Sealed:
        """Seal the leading run of `records` that share one class (live or backfill)."""
        if not records:
            raise ValueError("records: nothing to seal")
        head = records[: self.max_records]
        flags = self.backfill(head, now)
        backfill = flags[0]
        n = flags.index(not backfill) if (not backfill) in flags else len(flags)
        run = head[:n]
        batch = Batch(self.gateway, seq, now, tuple(zip(run.records, run.tags, strict=True)),
                      backfill)
        key = self.keyring.signing(now).key
        return Sealed(seq, seal(batch, key, self.topic), run, backfill)

    def sealed_by_revoked(self, envelope_bytes: bytes) -> bool:
        """True when the envelope was signed by a key revoked since."""
        revoked = self.keyring.revoked()
        if not revoked:
            return False
        protected = cbor2.loads(envelope_bytes).value[0]
        return cbor2.loads(protected)[4] in revoked

    def reseal(self, envelope_bytes: bytes, now: int) -> bytes:
        """The same batch (seq, records, backfill flag), signed by the current key."""
        payload = cbor2.loads(cbor2.loads(envelope_bytes).value[2])
        batch = Batch(payload[1], payload[2], now, tuple((r, t) for r, t in payload[4]),
                      payload[5])
        return seal(batch, self.keyring.signing(now).key, self.topic)
