"""Readings and instrument status exported to a real server speaking the InfluxDB v2 write API
(VictoriaMetrics), from the exporter and from `server run --influx-url`; a stalled InfluxDB
never blocks ingest, and what could not wait is caught up from the store."""

import http.server
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import paho.mqtt.client as mqtt
import pytest

from metrotrace.server.export.influx import InfluxExporter, line, status_line
from metrotrace.server.ingest.columns import decode
from metrotrace.server.ingest.core import Ingest
from metrotrace.server.ingest.synth import T0
from metrotrace.server.store import open_store
from metrotrace.server.store.rows import InstrumentRow


@pytest.fixture
def victoria(tmp_path, port):
    if shutil.which("victoria-metrics") is None:
        pytest.fail("victoria-metrics is not installed: ./dev test installs it (Debian package)")
    with open(tmp_path / "vm.log", "wb") as log:
        proc = subprocess.Popen(["victoria-metrics", f"-httpListenAddr=127.0.0.1:{port}",
                                 f"-storageDataPath={tmp_path / 'vm'}", "-retentionPeriod=100y",
                                 "-search.latencyOffset=0s"], stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url + "/health", timeout=1)
            break
        except OSError:
            time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(10)


def export(url, query):
    urllib.request.urlopen(url + "/internal/force_flush", timeout=5)
    with urllib.request.urlopen(f"{url}/api/v1/export?match[]={query}", timeout=5) as r:
        return [json.loads(x) for x in r.read().decode().splitlines()]


def test_readings_arrive_and_can_be_queried_back(victoria, site):
    rows = [decode(*site.weighing(i % site.nodes, T0 + i * 1000, 1000 + i)) for i in range(30)]
    rows.append(decode(*site.check(1, T0 + 99_000, 10_005, 10_000)))
    exporter = InfluxExporter(victoria, "", "metrotrace", "metrotrace", batch=7)
    exporter.offer(rows)
    exporter.offer_status([InstrumentRow("NAWI-1", "market", None, "NAWI", "III", 15000, 100,
                                         5, "g")], T0)
    exporter.close()
    assert exporter.counts["written"] == 32 and exporter.counts["failed"] == 0
    series = export(victoria, '{__name__="reading_value"}')
    points = sorted((t, v) for s in series for t, v in zip(s["timestamps"], s["values"],
                                                            strict=True))
    assert points == [(T0 + i * 1000, 1000 + i) for i in range(30)]
    assert {s["metric"]["instrument"] for s in series} == {site.instrument(i) for i in range(3)}
    (check,) = export(victoria, '{__name__="check_reference"}')
    assert check["values"] == [10_000]


def test_a_dead_influxdb_never_stalls_the_caller(site, port):
    # Nothing listens on `port`: every write fails; offer() must still return at once.
    exporter = InfluxExporter(f"http://127.0.0.1:{port}", "", "o", "b", max_queued=100,
                              retries=2, backoff_s=0.01, timeout_ms=200)
    rows = [decode(*site.weighing(0, T0 + i, 5)) for i in range(1000)]
    for i in range(0, 1000, 10):  # all offered while the first write is still timing out
        exporter.offer(rows[i:i + 10])
    exporter.close(timeout=10)
    assert exporter.counts["dropped"] > 0  # the bounded queue overflowed and said so
    assert exporter.counts["written"] == 0
    assert exporter.counts["dropped"] + exporter.counts["failed"] + exporter.pending() == 1000


def test_line_protocol_escapes_tags_and_skips_unset_clocks(site):
    row = decode(*site.weighing(0, T0, 1250))
    assert line(row._replace(inst="a b,c=d")).startswith("reading,instrument=a\\ b\\,c\\=d,")
    assert line(row._replace(tq=0)) is None


class StalledInflux:
    """A tiny HTTP server that takes a write and answers only once `release` is set: an
    InfluxDB that accepts connections and then hangs. Keeps each body it answered."""

    def __init__(self):
        self.release = threading.Event()
        self.received, self.answered = 0, 0
        self.bodies = []
        stalled = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                stalled.received += 1
                stalled.release.wait(60)
                stalled.bodies.append(body.decode())
                stalled.answered += 1
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def lines(self):
        return [x for body in self.bodies for x in body.splitlines()]

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def test_a_stalled_influxdb_never_blocks_ingest_and_what_was_dropped_is_caught_up(
        loaded, site, store_url, caplog):
    stalled = StalledInflux()
    exporter = InfluxExporter(stalled.url, "", "o", "b", batch=50, max_queued=100,
                              timeout_ms=60_000, store_url=store_url)
    ingest = Ingest(loaded)
    ingest.listeners.append(exporter.offer)
    try:
        envelopes = site.stream(20, 50)
        ingest.handle(site.topic, envelopes[0], T0 + 10**9)
        deadline = time.monotonic() + 10
        while stalled.received == 0 and time.monotonic() < deadline:
            time.sleep(0.01)  # the first write is now hanging in InfluxDB
        with caplog.at_level(logging.WARNING, logger="metrotrace.server.export"):
            for data in envelopes[1:]:
                assert ingest.handle(site.topic, data, T0 + 10**9).status == "stored"
        # every batch was stored while InfluxDB still held its very first write
        assert loaded.count("records") == 1000 and stalled.answered == 0
        assert exporter.counts["dropped"] >= 800 and exporter.pending() == 100
        assert "lines dropped so far" in caplog.text and "caught up from the store" in caplog.text
        warned = [r for r in caplog.records if r.name == "metrotrace.server.export"]
        assert len(warned) == 1  # logged, not once per dropped line
        assert set(exporter.gaps()) == {site.instrument(i) for i in range(site.nodes)}

        stalled.release.set()  # InfluxDB is back: the queue drains, the drops are re-read
        exporter.close(timeout=30)
    finally:
        stalled.close()
    assert exporter.counts["caught_up"] >= exporter.counts["dropped"] and not exporter.gaps()
    seqs = {(tags.split("node=")[1].split(",")[0], fields.split("seq=")[1].split("i")[0])
            for tags, fields, _ in (x.split(" ") for x in stalled.lines())}
    assert seqs == {(r.node.hex(), str(r.seq)) for r, _ in loaded.stored_records()}


def test_server_run_exports_readings_and_instrument_status(victoria, site, plain_broker,
                                                           tmp_path):
    url = f"sqlite:///{tmp_path / 'metrotrace.sqlite3'}"
    store = open_store(url)
    for row in site.registry_rows():
        store.put(row)
    store.close()
    worker = subprocess.Popen(
        [sys.executable, "-m", "metrotrace.tools.cli", "server", "run", "--db", url,
         "--broker", f"127.0.0.1:{plain_broker}", "--client-id", "exporter",
         "--monitor-every", "0", "--influx-url", victoria, "--influx-status-every", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    online = threading.Event()
    publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="pub",
                            protocol=mqtt.MQTTv5)
    publisher.on_connect = lambda c, u, f, rc, p: c.subscribe("metrotrace/v1/server/status")
    publisher.on_message = lambda c, u, m: m.payload == b'{"state": "online"}' and online.set()
    publisher.connect("127.0.0.1", plain_broker)
    publisher.loop_start()
    try:
        assert online.wait(30), "the worker never came online"
        for data in site.stream(4, 25):
            publisher.publish(site.topic, data, qos=1).wait_for_publish(5)
        deadline = time.monotonic() + 60
        points, status = [], []
        while time.monotonic() < deadline and (len(points) < 100 or len(status) < 3):
            time.sleep(0.5)
            points = [t for s in export(victoria, '{__name__="reading_value"}')
                      for t in s["timestamps"]]
            status = export(victoria, '{__name__="instrument_status_max"}')
        assert len(points) == 100 and sorted(points) == list(range(T0 + 1, T0 + 101))
        assert {s["metric"]["instrument"] for s in status} == {
            site.instrument(i) for i in range(site.nodes)}
        assert {s["values"][-1] for s in status} == {15000}
    finally:
        publisher.disconnect()
        publisher.loop_stop()
        worker.send_signal(signal.SIGTERM)
        out, err = worker.communicate(timeout=30)
    assert worker.returncode == 0, err
    counts = json.loads(out.splitlines()[-1])
    assert counts["influx_written"] >= 103 and counts["records"] == 100
    assert counts.get("influx_dropped", 0) == 0 and counts["influx_status_exports"] >= 1


def test_status_lines_carry_the_registry_and_the_drift_state():
    inst = InstrumentRow("NAWI 1", "market", None, "NAWI", "III", 15000, 100, 5, "g",
                         status="suspended")
    assert status_line(inst, T0, "warning") == (
        'instrument_status,instrument=NAWI\\ 1,site=market status="suspended",max=15000i,'
        f'min=100i,e=5i,drift="warning" {T0}')
    assert 'drift' not in status_line(inst, T0)
