"""Load for the server's ingest workers: signed batches published at a set rate.

`metrotrace node loadgen --server` plays a fleet of gateways in front of the workers
that `metrotrace server run` starts: it registers a fresh gateway (a new Ed25519 key),
its nodes (their HMAC keys) and their scales in the store the workers use, then
publishes COSE_Sign1 envelopes on `metrotrace/v1/gw/{gateway}/up` at QoS 1, paced to
`rate` records per second. Every byte is the real thing: records from the firmware's
encoder tagged with the node keys, sealed by the gateway's own envelope code
(server/ingest/synth.py). Figures: records and envelopes the broker acknowledged per
second, and, watching the store, records the workers stored per second and how long
after the last publish the last one was stored.

The workers must be subscribed before the load starts (a broker drops what no session
subscribes to): start `metrotrace server run` first.

Invariant: a run is a new gateway with new node ids, so a second run is new traffic,
never replays of the first; what it registers stays in the store, named `load-...`.
"""

from __future__ import annotations

import os
import threading
import time

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from metrotrace.server.ingest.synth import Site
from metrotrace.server.store import open_store
from metrotrace.server.store.rows import GatewayKeyRow

SITE = "loadgen"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Publisher:
    """A paho client that counts the broker's acknowledgements (PUBACK)."""

    def __init__(self, host: str, port: int, window: int) -> None:
        self.acked = 0
        self._cond = threading.Condition()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=f"metrotrace-loadgen-{os.getpid()}")
        self.client.max_inflight_messages_set(window)
        self.client.max_queued_messages_set(window)  # publish() waits when it is full
        self.client.on_publish = self._on_publish
        connected = threading.Event()
        self.client.on_connect = lambda *a: connected.set()
        self.client.connect(host, port, 30)
        self.client.loop_start()
        if not connected.wait(10):
            raise ConnectionError(f"broker {host}:{port}: no CONNACK within 10 s")

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self._cond:
            self.acked += 1
            self._cond.notify_all()

    def publish(self, topic: str, payload: bytes) -> None:
        while True:
            info = self.client.publish(topic, payload, qos=1)
            if info.rc != mqtt.MQTT_ERR_QUEUE_SIZE:
                return
            with self._cond:  # the window is full: wait for an acknowledgement
                self._cond.wait(0.05)

    def wait_acked(self, n: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.acked < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def register(store_url: str, nodes: int) -> Site:
    """A new gateway with `nodes` nodes, registered in the store."""
    gateway = f"load-{os.urandom(4).hex()}"
    site = Site(gateway=gateway, site=SITE, nodes=nodes, key=Ed25519PrivateKey.generate(),
                valid_from=now_ms() - 60_000)
    store = open_store(store_url)
    try:  # the key last: a worker that sees it also sees the nodes it signs for
        for row in sorted(site.registry_rows(), key=lambda r: isinstance(r, GatewayKeyRow)):
            store.put(row)
    finally:
        store.close()
    # A worker that meets the new key re-reads the registry (its version changed), so
    # the first batch may follow at once.
    return site


def run(store_url: str, host: str, port: int, rate: float, seconds: float, nodes: int,
        batch: int, window: int = 64, wait_s: float = 60.0) -> dict:
    """Publish for `seconds` at `rate` records/s in envelopes of `batch`; figures."""
    if rate <= 0 or batch <= 0 or nodes <= 0 or seconds <= 0:
        raise ValueError("rate, batch, nodes and seconds: must be positive")
    site = register(store_url, nodes)
    store = open_store(store_url)
    try:
        before = store.count("records")
        pub = Publisher(host, port, window)
        try:
            sent, envelopes, start = 0, 0, time.monotonic()
            while True:
                due = start + sent / rate  # when this envelope's first record is due
                if due >= start + seconds:
                    break
                pause = due - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                t = now_ms()
                records = [site.weighing(j % nodes, t, 1000 + 5 * (j % 400))
                           for j in range(sent, sent + batch)]
                pub.publish(site.topic, site.seal(records, created=t))
                sent += batch
                envelopes += 1
            published_s = time.monotonic() - start
            all_acked = pub.wait_acked(envelopes, wait_s)
            acked_s = time.monotonic() - start
        finally:
            pub.close()
        stored, stored_s = _watch_store(store, before, sent, start, wait_s)
    finally:
        store.close()
    return {
        "gateway": site.gateway, "nodes": nodes, "batch": batch, "rate_asked": rate,
        "envelopes": envelopes, "records_published": sent, "broker_acked": all_acked,
        "published_per_s": round(sent / published_s, 1) if published_s else 0.0,
        "broker_acked_per_s": round(sent / acked_s, 1) if acked_s else 0.0,
        "records_stored": stored,
        "stored_per_s": round(stored / stored_s, 1) if stored_s else 0.0,
        "store_lag_s": round(max(0.0, stored_s - published_s), 3),
    }


def _watch_store(store, before: int, want: int, start: float,
                 wait_s: float) -> tuple[int, float]:
    """Records the store gained (assumes no other traffic meanwhile) and when the last
    of them arrived, in seconds from `start`."""
    deadline = time.monotonic() + wait_s
    last, at = 0, time.monotonic() - start
    while time.monotonic() < deadline:
        got = store.count("records") - before
        if got != last:
            last, at = got, time.monotonic() - start
        if got >= want:
            break
        time.sleep(0.1)
    return last, at
