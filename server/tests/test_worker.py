"""Ingest workers against a real Mosquitto: shared subscription, no loss, no duplicates;
revocations reach a running worker; hostile payloads never stop it."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import cbor2
import paho.mqtt.client as mqtt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from metrotrace.gateway import envelope
from metrotrace.server.registry.keys import REVOCATION_GRACE_MS
from metrotrace.server.registry.watch import CHECK_EVERY_MS
from metrotrace.server.store import open_store
from metrotrace.server.store.rows import GatewayKeyRow

STATUS = "metrotrace/v1/server/status"


def start_worker(store_url, port, client_id):
    return subprocess.Popen(
        [sys.executable, "-m", "metrotrace.tools.cli", "server", "run", "--db", store_url,
         "--broker", f"127.0.0.1:{port}", "--client-id", client_id],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})


class Watcher:
    """A plain MQTT client that publishes and records what arrives on its subscriptions."""

    def __init__(self, port, topics):
        self.messages = []
        self.ready = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"watch-{port}",
                                  protocol=mqtt.MQTTv5)
        self.client.on_connect = lambda c, u, f, rc, p: [c.subscribe(t, qos=1) for t in topics]
        self.client.on_subscribe = lambda *a: self.ready.set()
        self.client.on_message = lambda c, u, m: self.messages.append((m.topic, m.payload))
        self.gone = threading.Event()
        self.client.on_disconnect = lambda *a: self.gone.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.ready.wait(10)

    def wait_for(self, predicate, timeout=60.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.05)
        return False

    def close(self):
        # paho closes the socket right after on_disconnect, on its own thread: stopping
        # that thread sooner leaks the socket (a ResourceWarning, an error here)
        self.client.disconnect()
        self.gone.wait(5)
        self.client.loop_stop()


def load_registry(url, site):
    store = open_store(url)
    for row in site.registry_rows():
        store.put(row)
    store.close()


def test_two_workers_share_one_stream_with_no_loss_and_no_duplicates(store_url, site,
                                                                     plain_broker):
    load_registry(store_url, site)
    watcher = Watcher(plain_broker, [STATUS, "metrotrace/v1/alerts/#"])
    workers = [start_worker(store_url, plain_broker, f"w{i}") for i in range(2)]
    try:
        assert watcher.wait_for(lambda: sum(p == b'{"state": "online"}'
                                            for _, p in watcher.messages) >= 2, 30)
        envelopes = site.stream(200, 50)
        for i, data in enumerate(envelopes):
            watcher.client.publish(site.topic, data, qos=1)
            if i % 50 == 0:  # garbage in the stream: rejected, and ingest goes on
                watcher.client.publish(site.topic, b"\xff not cbor", qos=1)
        watcher.client.publish(site.topic, envelopes[7], qos=1)  # a replay
        site.next_seq = dict.fromkeys(site.node_ids, 1)  # seq 1 again, other bytes: forgery
        watcher.client.publish(site.topic, site.seal([site.weighing(0, 1, 77)]), qos=1)

        store = open_store(store_url)
        assert watcher.wait_for(lambda: store.count("rejects") >= 6, 90), store.count("records")
        assert store.count("records") == 10_000
        assert store.count("envelopes") == 201
        assert sorted(r.reason for r in store.rejects()) == ["forgery"] + ["malformed"] * 4 + [
            "replay"]
        assert watcher.wait_for(lambda: any(t == "metrotrace/v1/alerts/market"
                                            for t, _ in watcher.messages), 10)
        alert = json.loads(next(p for t, p in watcher.messages if "alerts" in t))
        assert alert["kind"] == "forgery" and alert["seq"] == 1
        store.close()
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
        outputs = [w.communicate(timeout=30) for w in workers]
        watcher.close()
    counts = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    assert all(w.returncode == 0 for w in workers), outputs
    assert sum(c.get("records", 0) for c in counts) == 10_000
    assert all(c.get("stored", 0) > 0 for c in counts), counts  # both took a share


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_worker_last_will_says_offline_when_it_dies(store_url, site, plain_broker):
    load_registry(store_url, site)
    watcher = Watcher(plain_broker, [STATUS])
    worker = start_worker(store_url, plain_broker, "lonely")
    try:
        assert watcher.wait_for(lambda: (STATUS, b'{"state": "online"}') in watcher.messages,
                                30)
        worker.kill()
        worker.wait(10)
        assert watcher.wait_for(lambda: watcher.messages[-1] == (STATUS,
                                                                 b'{"state": "offline"}'), 10)
    finally:
        worker.kill()
        worker.communicate()
        watcher.close()


def _stop(worker):
    worker.send_signal(signal.SIGTERM)
    out, err = worker.communicate(timeout=30)
    assert worker.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def _online(watcher):
    return watcher.wait_for(lambda: (STATUS, b'{"state": "online"}') in watcher.messages, 30)


def test_a_key_revoked_while_the_worker_runs_is_refused_even_when_backdated(store_url, site,
                                                                           plain_broker):
    load_registry(store_url, site)
    watcher = Watcher(plain_broker, [STATUS])
    worker = start_worker(store_url, plain_broker, "revoker")
    store = open_store(store_url)
    try:
        assert _online(watcher)
        now = int(time.time() * 1000)
        watcher.client.publish(site.topic, site.seal([site.weighing(0, now, 10)], created=now),
                               qos=1)
        assert watcher.wait_for(lambda: store.count("records") == 1, 30)

        # Compromise found: the key is revoked from 11 minutes ago (beyond the grace), while
        # the worker runs, through the store as `registry load` and the API do it.
        (key,) = store.registry()["keys"]
        revoked_at = now - REVOCATION_GRACE_MS - 60_000
        store.put(GatewayKeyRow(key.kid, key.gateway, key.public_key, key.valid_from,
                                revoked_at))
        time.sleep(2 * CHECK_EVERY_MS / 1000)
        now = int(time.time() * 1000)
        live = site.seal([site.weighing(1, now, 20)], created=now)
        # the thief's way round `created`: a backdated backfill batch
        backdated = site.seal([site.weighing(2, revoked_at - 5000, 30)],
                              created=revoked_at - 5000, backfill=True)
        for data in (live, backdated):
            watcher.client.publish(site.topic, data, qos=1)
        assert watcher.wait_for(lambda: store.count("rejects") == 2, 30)
        rejects = store.rejects()
        assert [r.reason for r in rejects] == ["revoked_key", "revoked_key"]
        assert f"created={revoked_at - 5000}" in rejects[1].detail
        assert store.count("records") == 1

        # the gateway's replacement key, registered meanwhile, is accepted
        new = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
        store.put(GatewayKeyRow(envelope.key_id(new.public_key()), site.gateway,
                                envelope.raw_public(new.public_key()), now - 1000))
        time.sleep(2 * CHECK_EVERY_MS / 1000)
        watcher.client.publish(site.topic, site.seal([site.weighing(1, now, 21)], created=now,
                                                     key=new), qos=1)
        assert watcher.wait_for(lambda: store.count("records") == 2, 30), store.rejects()
    finally:
        store.close()
        counts = _stop(worker)
        watcher.close()
    assert counts["revoked_key"] == 2 and counts["stored"] == 2, counts
    assert counts["registry_reloads"] >= 1


def test_the_worker_survives_oversize_and_malformed_payloads_over_mqtt(store_url, site,
                                                                      plain_broker):
    load_registry(store_url, site)
    watcher = Watcher(plain_broker, [STATUS])
    worker = start_worker(store_url, plain_broker, "hardy")
    store = open_store(store_url)
    good = site.seal([site.weighing(0, 1_763_884_800_000, 10)])
    tampered = bytearray(site.seal([site.weighing(1, 1_763_884_800_000, 10)]))
    tampered[-70] ^= 1  # inside the signed payload
    hostile = [b"\x00" * (envelope.MAX_ENVELOPE + 1), b"\xff not cbor", b"",
               b'{"gateway": "market-1", "records": []}', bytes(tampered),
               cbor2.dumps(cbor2.CBORTag(18, [b"", {}, b"", b""]))]
    try:
        assert _online(watcher)
        for data in hostile:
            watcher.client.publish(site.topic, data, qos=1)
        watcher.client.publish(site.topic, good, qos=1)
        assert watcher.wait_for(lambda: store.count("records") == 1
                                and store.count("rejects") == len(hostile), 30)
        assert sorted(r.reason for r in store.rejects()) == [
            "bad_signature", "malformed", "malformed", "malformed", "malformed", "oversize"]
        assert worker.poll() is None
    finally:
        store.close()
        counts = _stop(worker)
        watcher.close()
    assert counts["oversize"] == 1 and counts["malformed"] == 4 and counts["stored"] == 1
