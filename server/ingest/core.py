"""The ingest decision, sans-IO: (topic, payload bytes, receive time) -> stored or rejected.

Order of checks, each failure a reject with its reason (see the package docstring):
topic -> envelope (size, CBOR, alg, kid, Ed25519 signature over the bytes received, with
the topic as external AAD) -> key may sign for this gateway at the batch's time -> every
node tag on the record bytes as received -> store idempotently on (node, seq) -> forged
duplicates rejected and raised as alerts.

Invariant: `handle` never raises on any input bytes or topic; it returns an Outcome, and
every message that is not stored whole leaves a row in the rejects table. The store is
the only thing it talks to (injected); time is a parameter.
"""

from __future__ import annotations

import gc
import hashlib
import hmac
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from metrotrace.gateway import envelope as cose

from ..registry.keys import KeyRing
from ..store.rows import AlertRow, BatchResult, EnvelopeRow, RecordRow, RejectRow, Store
from .columns import decode_many

_PADS: dict[bytes, tuple] = {}  # node key -> its HMAC-SHA256 inner and outer hash states
_MAX_PADS = 1 << 16


def _pads(key: bytes) -> tuple:
    """HMAC-SHA256 (RFC 2104) with the key block already hashed into the inner and outer
    states: a record's tag then costs two state copies, not a new HMAC context (about
    0.9 instead of 2.1 us a record here)."""
    pads = _PADS.get(key)
    if pads is None:
        block = (hashlib.sha256(key).digest() if len(key) > 64 else key).ljust(64, b"\0")
        pads = (hashlib.sha256(bytes(b ^ 0x36 for b in block)),
                hashlib.sha256(bytes(b ^ 0x5C for b in block)))
        if len(_PADS) >= _MAX_PADS:
            _PADS.clear()
        _PADS[key] = pads
    return pads

TOPIC_PREFIX = "metrotrace/v1/gw/"
TOPIC_SUFFIX = "/up"
SHARED_SUBSCRIPTION = "$share/metrotrace/metrotrace/v1/gw/+/up"
MAX_FUTURE_MS = 10 * 60 * 1000  # a live batch stamped further ahead than this is refused
MAX_REJECT_BYTES = 64 * 1024  # what a reject row keeps of an oversize payload

STORED = "stored"
REJECTED = "rejected"


class _Refused(Exception):
    def __init__(self, reason: str, detail: str, gateway: str | None = None) -> None:
        super().__init__(reason)
        self.reason, self.detail, self.gateway = reason, detail, gateway


class _Checked(NamedTuple):
    envelope: EnvelopeRow
    rows: list[RecordRow]
    record_rejects: list[RejectRow]


@dataclass(frozen=True)
class Outcome:
    status: str  # STORED or REJECTED
    reason: str | None = None
    detail: str = ""
    gateway: str | None = None
    inserted: int = 0
    duplicates: int = 0
    record_rejects: tuple[RejectRow, ...] = ()
    alerts: tuple[AlertRow, ...] = ()


def gateway_of(topic: str) -> str | None:
    """`metrotrace/v1/gw/{gateway}/up` -> gateway, else None."""
    if not (topic.startswith(TOPIC_PREFIX) and topic.endswith(TOPIC_SUFFIX)):
        return None
    gateway = topic[len(TOPIC_PREFIX):-len(TOPIC_SUFFIX)]
    return gateway if gateway and "/" not in gateway and "+" not in gateway else None


class Ingest:
    def __init__(self, store: Store, max_future_ms: int = MAX_FUTURE_MS) -> None:
        self.store = store
        self.max_future_ms = max_future_ms
        self.counts: Counter[str] = Counter()
        self._version = store.registry_version()  # read before the registry it dates
        self.keyring = KeyRing(store.registry())
        # Called with the records of each stored batch (e.g. the InfluxDB exporter); a
        # listener must return at once: ingest does not wait for anything downstream.
        self.listeners: list[Callable[[list[RecordRow]], None]] = []

    def reload(self, now: int | None = None) -> None:
        """Re-read the registry from the store (new keys, revocations, nodes)."""
        self._version = self.store.registry_version()
        self.keyring = KeyRing(self.store.registry())

    def _maybe_reload(self, now: int) -> bool:
        """An unknown key or node: re-read the registry if it changed since it was read (one
        cheap counter read), so a gateway registered a moment ago is never refused, and a
        flood of unknown keys costs no reloads."""
        if self.store.registry_version() == self._version:
            return False
        self.reload(now)
        return True

    def handle(self, topic: str, payload: bytes, received: int) -> Outcome:
        return self.handle_many([(topic, payload, received)])[0]

    def handle_many(self, messages: Sequence[tuple[str, bytes, int]]) -> list[Outcome]:
        """`handle` for several (topic, payload, received) messages, their envelopes and
        records stored in one transaction (one commit): a worker acknowledges the lot once
        this returns. Each message is judged as if handled alone, in order (a replay of an
        envelope earlier in the same group is a replay)."""
        # A group makes tens of thousands of short-lived tuples (pairs, rows, parameters),
        # none in a reference cycle: reference counting frees them all. CPython's cyclic
        # collector would still scan the young ones every 700 allocations and, now and
        # then, every object of the process, finding nothing: 12-14% of the ingest time
        # (docs/server.md, Performance). It is paused for the group and resumes after;
        # whatever was allocated meanwhile is examined at its next run. Left alone when
        # someone else has turned it off.
        if not gc.isenabled():
            return self._handle_many(messages)
        gc.disable()
        try:
            return self._handle_many(messages)
        finally:
            gc.enable()

    def _handle_many(self, messages: Sequence[tuple[str, bytes, int]]) -> list[Outcome]:
        outcomes: list[Outcome | None] = []
        ready: list[tuple[int, _Checked]] = []
        for topic, payload, received in messages:
            try:
                ready.append((len(outcomes), self._check(topic, payload, received)))
                outcomes.append(None)
            except _Refused as r:
                outcomes.append(self._refused(r, topic, payload, received))
        results = self.store.store_batches([(c.envelope, c.rows) for _, c in ready])
        for (i, checked), result in zip(ready, results, strict=True):
            try:
                outcomes[i] = self._stored(checked, result)
            except _Refused as r:
                outcomes[i] = self._refused(r, checked.envelope.topic, checked.envelope.data,
                                            checked.envelope.received)
        for outcome in outcomes:
            self.counts[outcome.reason or outcome.status] += 1
        return outcomes

    def _refused(self, r: _Refused, topic: str, payload: bytes, received: int) -> Outcome:
        kept = payload if len(payload) <= MAX_REJECT_BYTES else payload[:MAX_REJECT_BYTES]
        self.store.add_reject(RejectRow(received, r.reason, r.detail, topic, r.gateway,
                                        data=kept))
        return Outcome(REJECTED, r.reason, r.detail, r.gateway)

    def _public_key(self, received: int) -> Callable:
        def lookup(kid: bytes):  # returns Ed25519PublicKey | None, as open_envelope asks
            key = self.keyring.public_key(kid)
            if key is None and self._maybe_reload(received):
                key = self.keyring.public_key(kid)
            return key

        return lookup

    def _check(self, topic: str, payload: bytes, received: int) -> _Checked:
        """Everything up to storing: the envelope, the key, every record and node tag."""
        gateway = gateway_of(topic)
        if gateway is None:
            raise _Refused("bad_topic", f"topic: not {TOPIC_PREFIX}{{gateway}}{TOPIC_SUFFIX}")
        try:
            opened = cose.open_envelope(payload, topic, self._public_key(received))
        except cose.EnvelopeError as e:
            raise _Refused(e.reason, e.detail, gateway) from None
        batch = opened.batch
        if batch.gateway != gateway:
            raise _Refused("gateway_mismatch",
                           f"gateway: batch names {batch.gateway!r}, topic {gateway!r}", gateway)
        refusal = self.keyring.keys[opened.kid].refuses(gateway, batch.created, received)
        if refusal:
            raise _Refused(refusal, f"kid {opened.kid.hex()} at created={batch.created}, "
                           f"received={received}", gateway)
        if not batch.backfill and batch.created > received + self.max_future_ms:
            raise _Refused("future_batch", f"created: {batch.created} is after {received}",
                           gateway)
        rows, record_rejects = self._check_records(batch, topic, received)
        env = EnvelopeRow(hashlib.sha256(payload).digest(), gateway, opened.kid, batch.seq,
                          batch.created, received, topic, batch.backfill, len(batch.records),
                          payload)
        return _Checked(env, rows, record_rejects)

    def _stored(self, checked: _Checked, result: BatchResult) -> Outcome:
        """The outcome of a checked envelope once the store has judged it."""
        env, rows, record_rejects = checked.envelope, checked.rows, checked.record_rejects
        gateway, topic, received = env.gateway, env.topic, env.received
        if result.envelope_id is None:
            raise _Refused("replay", f"envelope {env.digest.hex()[:16]} already stored", gateway)
        for listener in self.listeners:
            listener(rows)
        alerts = []
        by_key = {(r.node, r.seq): r for r in rows} if result.forgeries else {}
        for node, seq in result.forgeries:
            row = by_key[(node, seq)]
            record_rejects.append(RejectRow(received, "forgery",
                                            f"(node {node.hex()}, seq {seq}) stored with other "
                                            "bytes", topic, gateway, node, seq,
                                            row.record + row.tag))
            alert = AlertRow(received, self.keyring.site_of(gateway), "forgery",
                             {"node": node.hex(), "seq": seq, "gateway": gateway,
                              "envelope_id": result.envelope_id}, gateway, node, seq, row.inst)
            alerts.append(AlertRow(**{**alert.__dict__, "id": self.store.add_alert(alert)}))
        for reject in record_rejects:
            self.store.add_reject(reject)
            self.counts[reject.reason] += 1
        return Outcome(STORED, None, "", gateway, result.inserted, result.duplicates,
                       tuple(record_rejects), tuple(alerts))

    def _check_records(self, batch: cose.Batch, topic: str,
                       received: int) -> tuple[list[RecordRow], list[RejectRow]]:
        rows: list[RecordRow] = []
        rejects: list[RejectRow] = []
        nodes = self.keyring.nodes
        gateway = batch.gateway
        macs: list[bytes] = []
        pads = _PADS
        for (data, tag), row in zip(batch.records, decode_many(batch.records), strict=True):
            if row.__class__ is not RecordRow:
                rejects.append(RejectRow(received, "bad_record", str(row), topic, gateway,
                                         data=data + tag))
                continue
            key = nodes.get(row[0])
            if key is None and self._maybe_reload(received):
                nodes = self.keyring.nodes
                key = nodes.get(row[0])
            if key is None:
                rejects.append(RejectRow(received, "unknown_node", f"node {row.node.hex()}",
                                         topic, gateway, row.node, row.seq, data + tag))
                continue
            inner, outer = pads.get(key) or _pads(key)
            inner = inner.copy()
            inner.update(data)
            outer = outer.copy()
            outer.update(inner.digest())
            macs.append(outer.digest())
            rows.append(row)
        # One constant-time comparison over the whole batch; only when it fails (a bad
        # tag somewhere) is each record compared on its own to find which.
        if not hmac.compare_digest(b"".join(macs), b"".join([r[18] for r in rows])):
            good = []
            for mac, row in zip(macs, rows, strict=True):
                if hmac.compare_digest(mac, row.tag):
                    good.append(row)
                else:
                    rejects.append(RejectRow(received, "bad_tag",
                                             f"tag: does not match (node {row.node.hex()}, "
                                             f"seq {row.seq})", topic, gateway, row.node,
                                             row.seq, row.record + row.tag))
            rows = good
        return rows, rejects
