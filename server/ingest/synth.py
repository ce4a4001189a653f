"""Real signed traffic for tests, benchmarks and demos: records made by the firmware's own
encoder, tagged with the node key, batched and sealed by the gateway's own envelope code.

Invariant: nothing here imitates a format; every byte comes from `metro.wire.record.make`,
`metro.wire.tag.hmac_sha256`-equivalent HMAC and `gateway.envelope.seal`.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from metrotrace.firmware.metro.wire import record
from metrotrace.gateway import envelope

from ..store.rows import GatewayKeyRow, GatewayRow, InstrumentRow, NodeRow, SiteRow

T0 = 1763884800000  # 2025-11-23T08:00:00Z


def topic_of(gateway: str) -> str:
    return f"metrotrace/v1/gw/{gateway}/up"


def _seeded_key(seed: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(seed.encode()).digest())


@dataclass
class Site:
    """One site, one gateway with a key, `nodes` nodes each serving one scale."""

    gateway: str = "market-1"
    site: str = "market"
    nodes: int = 4
    key: Ed25519PrivateKey = field(default=None)  # type: ignore[assignment]
    valid_from: int = T0 - 86_400_000

    def __post_init__(self) -> None:
        self.key = self.key or _seeded_key("gw:" + self.gateway)
        self.node_ids = [hashlib.sha256(f"{self.gateway}:n{i}".encode()).digest()[:8]
                         for i in range(self.nodes)]
        self.node_keys = {n: hashlib.sha256(b"key:" + n).digest() for n in self.node_ids}
        self.next_seq = dict.fromkeys(self.node_ids, 1)
        self.batch_seq = 0

    @property
    def topic(self) -> str:
        return topic_of(self.gateway)

    def registry_rows(self) -> list:
        public = envelope.raw_public(self.key.public_key())
        rows: list = [SiteRow(self.site, self.site), GatewayRow(self.gateway, self.site),
                      GatewayKeyRow(envelope.key_id(self.key.public_key()), self.gateway,
                                    public, self.valid_from)]
        for i, node in enumerate(self.node_ids):
            rows.append(NodeRow(node, self.gateway, self.node_keys[node]))
            rows.append(InstrumentRow(self.instrument(i), self.site, node, "NAWI", "III",
                                      15000, 100, 5, "g"))
        return rows

    def instrument(self, i: int) -> str:
        return f"{self.gateway}-scale-{i}"

    def weighing(self, i: int, t: int, net: int) -> tuple[bytes, bytes]:
        """The next weighing record of node i, with its node tag."""
        node = self.node_ids[i]
        seq = self.next_seq[node]
        self.next_seq[node] = seq + 1
        data = record.make(record.WEIGHING, node, seq, seq - 1, t, record.TQ_NTP,
                           inst=self.instrument(i), gross=net, tare=0, net=net, e=5, unit="g",
                           flags=record.F_STABLE, raw=net * 8)
        return data, hmac.new(self.node_keys[node], data, "sha256").digest()

    def check(self, i: int, t: int, indication: int, reference: int) -> tuple[bytes, bytes]:
        node = self.node_ids[i]
        seq = self.next_seq[node]
        self.next_seq[node] = seq + 1
        data = record.make(record.CHECK, node, seq, seq - 1, t, record.TQ_NTP,
                           inst=self.instrument(i), indication=indication, reference=reference,
                           e=5, unit="g", ref_id="TW-10kg")
        return data, hmac.new(self.node_keys[node], data, "sha256").digest()

    def seal(self, records: list[tuple[bytes, bytes]], created: int | None = None,
             key: Ed25519PrivateKey | None = None, backfill: bool = False,
             gateway: str | None = None, topic: str | None = None) -> bytes:
        self.batch_seq += 1
        batch = envelope.Batch(gateway or self.gateway, self.batch_seq,
                               T0 if created is None else created, tuple(records), backfill)
        return envelope.seal(batch, key or self.key, topic or self.topic)

    def stream(self, batches: int, per_batch: int) -> list[bytes]:
        """`batches` sealed envelopes of `per_batch` weighings spread over the nodes."""
        out = []
        t = T0
        for _ in range(batches):
            records = []
            for j in range(per_batch):
                t += 1
                records.append(self.weighing(j % self.nodes, t, 1000 + j % 500 * 5))
            out.append(self.seal(records, created=t))
        return out
