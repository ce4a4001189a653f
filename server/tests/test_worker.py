"""Ingest workers against a real Mosquitto: shared subscription, no loss, no duplicates."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import paho.mqtt.client as mqtt
import pytest

from metrotrace.server.store import open_store

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
        self.client.disconnect()
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
