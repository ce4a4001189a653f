"""The drift monitor in the ingest worker: one worker per store runs it (store lease), and
its alerts reach `metrotrace/v1/alerts/{site}` through a real Mosquitto."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter

import paho.mqtt.client as mqtt

from metrotrace.firmware.metro.wire import record
from metrotrace.server.ingest.columns import decode
from metrotrace.server.ingest.monitoring import LEASE, MonitorLoop
from metrotrace.server.store import open_store
from metrotrace.server.store.rows import EnvelopeRow, InstrumentRow, SiteRow

DAY = 86_400_000


def _now():
    return time.time_ns() // 1_000_000


def fill_broken_scale(store):
    """A scale whose check on day 8 is 3e over its reference: out of tolerance."""
    t0 = _now() - 20 * DAY
    store.put(SiteRow("market", "Central market"))
    store.put(InstrumentRow("broken-scale", "market", None, "NAWI", "III", 15000, 100, 5, "g",
                            t0, t0 + 400 * DAY))
    node, data = hashlib.sha256(b"broken").digest()[:8], []
    for d in range(10):
        load = (2000, 10000)[d % 2]
        data.append(record.make(record.CHECK, node, d + 1, d, t0 + d * DAY, record.TQ_NTP,
                                inst="broken-scale", indication=load + (15 if d == 8 else 0),
                                reference=load, e=5, unit="g"))
    rows = [decode(b, b"\0" * 32) for b in data]
    blob = b"".join(data)
    store.store_batch(EnvelopeRow(hashlib.sha256(blob).digest(), "gw", b"k" * 16, 1, t0, t0,
                                  "metrotrace/v1/gw/gw/up", False, len(rows), blob), rows)


def test_the_lease_has_one_holder_at_a_time(store_url):
    a, b = open_store(store_url), open_store(store_url)
    try:
        assert a.try_lease(LEASE) and a.try_lease(LEASE)  # held: asking again is harmless
        assert not b.try_lease(LEASE)
        a.close()
        assert b.try_lease(LEASE)
    finally:
        a.close()  # closing twice is harmless
        b.close()


def test_only_the_lease_holder_runs_the_monitor(store_url):
    store = open_store(store_url)
    fill_broken_scale(store)
    sent, states = [], []
    loops = [MonitorLoop(store_url, 1, lambda t, p: sent.append((t, p)), _now, Counter(),
                         states.append) for _ in range(2)]
    try:
        assert [loops[0].tick(), loops[1].tick()] == [1, 0]
        assert [t for t, _ in sent] == ["metrotrace/v1/alerts/market"]
        assert states == [{"broken-scale": "out_of_tolerance"}]  # for instrument_status
        assert loops[0].tick() == 0  # no state change, no second alert
        loops[0]._close()  # the holder goes away: the other takes over, without repeating
        assert loops[1].tick() == 0 and loops[1].counts["monitor_runs"] == 1
    finally:
        for loop in loops:
            loop._close()
        store.close()


def test_a_worker_with_monitor_every_1_publishes_the_alert(store_url, plain_broker):
    store = open_store(store_url)
    fill_broken_scale(store)
    store.close()
    got, ready = [], threading.Event()
    watcher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="watch-alerts",
                          protocol=mqtt.MQTTv5)
    watcher.on_connect = lambda c, u, f, rc, p: c.subscribe("metrotrace/v1/alerts/#", qos=1)
    watcher.on_subscribe = lambda *a: ready.set()
    watcher.on_message = lambda c, u, m: got.append((m.topic, m.qos, json.loads(m.payload)))
    watcher.connect("127.0.0.1", plain_broker)
    watcher.loop_start()
    assert ready.wait(10)
    worker = subprocess.Popen(
        [sys.executable, "-m", "metrotrace.tools.cli", "server", "run", "--db", store_url,
         "--broker", f"127.0.0.1:{plain_broker}", "--client-id", "monitor-worker",
         "--monitor-every", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 60
        while not got and time.monotonic() < deadline and worker.poll() is None:
            time.sleep(0.1)
        assert got, worker.stderr.read() if worker.poll() is not None else "no alert in 60 s"
        topic, qos, alert = got[0]
        assert (topic, qos) == ("metrotrace/v1/alerts/market", 1)
        assert (alert["instrument"], alert["kind"]) == ("broken-scale", "out_of_tolerance")
        assert alert["detail"]["source"] == "metrology" and alert["id"] is not None
    finally:
        worker.send_signal(signal.SIGTERM)
        out, err = worker.communicate(timeout=30)
        watcher.disconnect()
        watcher.loop_stop()
    assert worker.returncode == 0, err
    assert json.loads(out.splitlines()[-1])["monitor_alerts"] == 1
    check = open_store(store_url)
    try:
        assert [a.kind for a in check.alerts()] == ["out_of_tolerance"]  # stored once
    finally:
        check.close()


def test_the_monitor_computes_with_the_stores_drift_settings(store_url):
    from metrotrace.server.metrology import kernels
    from metrotrace.server.metrology.settings import Settings

    store = open_store(store_url)
    fill_broken_scale(store)
    store.close()
    s = Settings(kernels.Params(baseline=7), {"broken-scale": 1.5})
    loop = MonitorLoop(store_url, 1, lambda t, p: None, _now, Counter(), settings=s)
    try:
        assert loop.tick() == 1
        assert loop._monitor.params.baseline == 7
        assert loop._monitor.sigma == {"broken-scale": 1.5}
    finally:
        loop._close()
