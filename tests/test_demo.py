"""`metrotrace demo`, run as a user runs it: a short market day, then the summary it wrote.

The demo starts its own Mosquitto, two gateways, six MicroPython nodes, an ingest worker,
the API and the server's jobs; these tests read the summary.json it leaves and look for
any process still running from its data directory. Also `metrotrace wire decode`.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import micropython

pytestmark = [pytest.mark.micropython, pytest.mark.slow]

BIN = Path(sys.executable).parent


def processes_using(path: Path) -> list[str]:
    """Command lines of live processes that mention `path` (the demo's data directory)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if str(path) in cmd and state != "Z" and int(pid) != os.getpid():
            found.append(f"{pid}: {cmd}")
    return found


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def demo(data: Path, *args: str, **popen) -> subprocess.Popen:
    return subprocess.Popen([BIN / "metrotrace", "demo", "--no-browser", "--data-dir", str(data),
                             "--port", str(free_port()), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **popen)


def test_a_short_demo_flags_the_drifting_and_tampered_scales_and_traces_the_recall(tmp_path):
    data = tmp_path / "demo"
    proc = demo(data, "--duration", "30")
    out, _ = proc.communicate(timeout=150)
    assert proc.returncode == 0, out[-3000:]
    summary = json.loads((data / "summary.json").read_text())

    # Every record the nodes made reached the server through a gateway, verified, once.
    assert summary["records_stored"] > 200
    assert summary["records_missing"] == 0, summary["nodes"]  # no seq lost below the top
    assert summary["records_made"] - summary["records_stored"] <= 12  # last status records
    assert summary["rejects"] == {}
    for gw in ("market-1", "station-1"):
        counters = summary["gateways"][gw]
        # What was not yet forwarded at the stop is still in the gateway's outbox.
        assert counters["accepted"] == counters["forwarded"] + counters["queued"], counters
        assert counters["forwarded"] > 0 and counters["queued"] <= 6, counters
    kinds = summary["stored_by_kind"]
    assert kinds["weighing"] > 20 and kinds["dispense"] > 3 and kinds["check"] > 20
    assert len(summary["nodes"]) == 6

    # The drift engine found both bad scales, and why: the inspector's checks are what
    # show a calibration error, so the firmware must take the console's check command.
    assert summary["day"]["checks_refused"] is None, summary["day"]["checks_refused"]
    flagged = {f["instrument"]: f for f in summary["flagged"]}
    assert flagged["MKT1-S3"]["state"] == "out_of_tolerance"
    assert any("cal_change" in why for why in flagged["MKT1-S3"]["why"])
    assert flagged["MKT1-S2"]["state"] in ("drifting", "warning", "out_of_tolerance")
    assert "MKT1-S1" not in flagged or flagged["MKT1-S1"]["state"] != "out_of_tolerance"

    # The recalled lot reaches the market's stalls: every sale names its scale.
    recall = summary["recall"]
    assert "urn:epc:id:sgln:4012345.MKT1.0" in recall["holders"]
    sold_on = {sale["instrument"] for sale in recall["sales"]}
    assert {"MKT1-S1", "MKT1-S2", "MKT1-S3"} & sold_on
    assert all(sale["record"].startswith("urn:metrotrace:record:") for sale in recall["sales"]
               if sale["instrument"].startswith("MKT1-"))

    assert summary["processes"]["left"] == [] and summary["processes"]["killed"] == []
    assert processes_using(data) == []
    assert "instruments flagged by the drift engine" in out


def test_ctrl_c_ends_the_demo_early_with_a_summary_and_no_process_left(tmp_path):
    data = tmp_path / "demo"
    proc = demo(data, "--duration", "600")
    lines = []
    deadline = time.monotonic() + 90
    for line in proc.stdout:  # until the market day has started
        lines.append(line)
        if "market day starts" in line or time.monotonic() > deadline:
            break
    assert any("market day starts" in line for line in lines), "".join(lines)[-3000:]
    time.sleep(3)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out[-3000:]
    summary = json.loads((data / "summary.json").read_text())
    assert summary["day"]["interrupted"] is True and summary["day"]["elapsed"] < 60
    assert summary["records_stored"] > 0 and summary["records_missing"] == 0
    assert summary["processes"]["left"] == []
    assert processes_using(data) == []


def test_without_mosquitto_the_embedded_broker_carries_mqtt5_shared_subscriptions(tmp_path):
    import threading

    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from metrotrace.tools.demo_procs import Procs, start_broker

    procs = Procs(tmp_path / "logs")
    try:
        port, kind = start_broker(procs, tmp_path / "broker", prefer="embedded")
        assert "rumqttd" in kind
        got, subscribed = [], threading.Event()
        session = Properties(PacketTypes.CONNECT)
        session.SessionExpiryInterval = 3600
        worker = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="w1",
                             protocol=mqtt.MQTTv5)
        worker.on_message = lambda c, u, m: got.append((m.topic, len(m.payload)))
        worker.on_subscribe = lambda *_: subscribed.set()
        worker.connect("127.0.0.1", port, clean_start=False, properties=session)
        worker.loop_start()
        worker.subscribe("$share/metrotrace/metrotrace/v1/gw/+/up", qos=1)
        assert subscribed.wait(5)
        gateway = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="gw",
                              protocol=mqtt.MQTTv5)
        gateway.connect("127.0.0.1", port, clean_start=False, properties=session)
        gateway.loop_start()
        for _ in range(3):  # batches of 500 records are tens of kB
            gateway.publish("metrotrace/v1/gw/market-1/up", b"x" * 60_000, qos=1) \
                .wait_for_publish(5)
        deadline = time.monotonic() + 5
        while len(got) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        for client in (gateway, worker):
            client.loop_stop()
            client.disconnect()
        assert got == [("metrotrace/v1/gw/market-1/up", 60_000)] * 3
    finally:
        assert procs.stop() == []
    assert procs.leftovers() == []


def test_a_second_run_reuses_its_data_directory_but_refuses_someone_elses(tmp_path):
    from metrotrace.tools import demo as demo_module

    mine = demo_module.prepare(tmp_path / "d")
    (mine / "old.sqlite3").write_text("x")
    assert demo_module.prepare(mine) == mine and not (mine / "old.sqlite3").exists()
    other = tmp_path / "other"
    other.mkdir()
    (other / "precious.txt").write_text("keep")
    with pytest.raises(demo_module.DemoError, match="not empty"):
        demo_module.prepare(other)
    assert (other / "precious.txt").read_text() == "keep"


def test_simulated_node_is_byte_identical_on_micropython_and_cpython():
    simnode = micropython.REPO / "tools" / "simnode.py"
    args = [str(simnode), "e6614103e7513a2f", "6d" * 32, "200", "1763884800000", "7"]
    mp = micropython.run(args)
    env = dict(os.environ, PYTHONPATH="")
    cp = subprocess.run([sys.executable, *args], capture_output=True, env=env, timeout=60)
    assert mp.returncode == 0 and cp.returncode == 0, mp.stderr + cp.stderr
    assert mp.stdout == cp.stdout and len(mp.stdout) > 10_000


def test_wire_decode_prints_records_and_counts_rejects(tmp_path):
    vectors = json.loads((micropython.FIRMWARE / "tests" / "vectors.json").read_text())
    stream = b"".join(bytes.fromhex(v["frame"]) for v in vectors["records"])
    capture = tmp_path / "uart.bin"
    capture.write_bytes(b"\x00junk" + stream)
    done = subprocess.run([BIN / "metrotrace", "wire", "decode", str(capture)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert lines[0] == {"reject": "cobs", "detail": lines[0]["detail"]}
    assert [line["seq"] for line in lines[1:]] == list(range(1001, 1008))
    assert json.loads(done.stderr) == {"rejects": {"cobs": 1}}
