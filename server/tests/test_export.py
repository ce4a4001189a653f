"""Readings exported to a real server speaking the InfluxDB v2 write API (VictoriaMetrics)."""

import json
import shutil
import subprocess
import time
import urllib.request

import pytest

from metrotrace.server.export.influx import InfluxExporter, line
from metrotrace.server.ingest.columns import decode
from metrotrace.server.ingest.synth import T0
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
