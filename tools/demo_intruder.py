"""An intruder on the market's network, once during the demo: it sends the server a batch
the market's gateway already delivered (a replay), and a copy of it in which one sale
weighs 100 g more (a forgery). The server must refuse both and keep them, with their
bytes, as rejects (reasons `replay` and `bad_signature`), which the summary and the
dashboard's Rejects page show.

Invariant: the intruder has only what anyone on the network has: a broker it can publish
to and a batch it captured (here read back from the store: the very bytes the gateway
published). It holds no key, so the forged copy carries the gateway's signature over the
original bytes. The weight is changed in place (the new value has as many CBOR bytes as
the old), so the forged batch differs from the real one in those bytes only.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from metrotrace.firmware.metro.wire import record as wire

EXTRA_G = 100  # what the forger adds to one sale


@dataclass(frozen=True)
class Captured:
    topic: str
    envelope: bytes  # the batch as the gateway published it
    record: bytes  # one weighing inside it, as the node made it
    seq: int


def capture(db: Path, gateway: str) -> Captured | None:
    """The newest stored batch of `gateway` holding a sale whose weight keeps its CBOR
    length when EXTRA_G is added (256..65535 g: two bytes); None when there is none yet."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        rows = conn.execute(
            "SELECT e.topic, e.data, r.record, r.seq FROM envelopes e"
            " JOIN records r ON r.envelope_id = e.id"
            " WHERE e.gateway = ? AND r.kind = ? ORDER BY e.id DESC LIMIT 50",
            (gateway, wire.WEIGHING)).fetchall()
    finally:
        conn.close()
    for topic, data, rec, seq in rows:
        fields = wire.decode(bytes(rec))
        sale = fields.get("link") is not None  # linked to the crate's scan (not a test weight)
        if sale and fields["net"] >= 256 and fields["gross"] + EXTRA_G < 65536 \
                and fields["tare"] == 0:
            return Captured(topic, bytes(data), bytes(rec), seq)
    return None


def forge(captured: Captured) -> bytes:
    """The captured batch with the sale EXTRA_G heavier (gross and net), nothing else."""
    fields = wire.decode(captured.record)
    fields.update(gross=fields["gross"] + EXTRA_G, net=fields["net"] + EXTRA_G)
    heavier = wire.encode(fields)
    at = captured.envelope.find(captured.record)
    if at < 0 or len(heavier) != len(captured.record):
        raise ValueError("record: not found verbatim in its batch, or its length changed")
    return captured.envelope[:at] + heavier + captured.envelope[at + len(heavier):]


def attack(db: Path, broker_port: int, gateway: str = "market-1") -> dict | None:
    """Publish the replay and the forgery (QoS 1); what was sent, or None when the store
    holds no batch to capture yet."""
    import paho.mqtt.client as mqtt

    captured = capture(db, gateway)
    if captured is None:
        return None
    forged = forge(captured)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="demo-intruder")
    client.connect("127.0.0.1", broker_port)
    client.loop_start()
    try:
        for payload in (captured.envelope, forged):
            client.publish(captured.topic, payload, qos=1).wait_for_publish(10)
    finally:
        client.loop_stop()
        client.disconnect()
    return {"gateway": gateway, "topic": captured.topic, "record_seq": captured.seq,
            "sent": ["replay", f"forged: sale +{EXTRA_G} g"], "bytes": len(forged)}
