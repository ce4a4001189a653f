"""The Wi-Fi node's MQTT uplink and SNTP clock, under the real MicroPython interpreter.

The host node (link.kind "mqtt", firmware/metro/net) talks to a Mosquitto started here
with persistence on a free port; the real gateway's Wi-Fi ingress
(gateway/ingress_mqtt.py: Intake, SQLite outbox) verifies, stores and acknowledges on
`metrotrace/v1/node/{node_hex}/ack`. The broker is restarted while the node is sending:
every record the node reports on its console must reach the gateway's store exactly
once (no loss, nothing twice), the acknowledgements must empty the node's outbox, and
the Last Will must say "offline" when the node dies.

SNTP: a small server here answers RFC 4330 queries on a free UDP port; its first
answer is a kiss-o'-death, which the node must not believe.
"""

from __future__ import annotations

import getpass
import json
import queue
import socket
import sqlite3
import struct
import subprocess
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from metrotrace.firmware.metro.core.outbox import Outbox as NodeOutbox
from metrotrace.firmware.metro.net import sntp
from metrotrace.gateway import seen
from metrotrace.gateway.counters import Counters
from metrotrace.gateway.ingress_mqtt import WifiIngress
from metrotrace.gateway.intake import Intake
from metrotrace.gateway.outbox import Outbox
from metrotrace.gateway.verify import Verifier
from tests import micropython
from tests.test_firmware_resets import HEAP_DRIVEN, compile_firmware

pytestmark = pytest.mark.micropython

NODE = bytes.fromhex("e6614103e7513a2f")
KEY = bytes(range(32))
SCAN = "]C10109506000134352" + "10LOT42\u001d" + "3103001250"
STATUS = f"metrotrace/v1/node/{NODE.hex()}/status"


def free_port(kind=socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """Our own Mosquitto: persistence on, so a restart keeps sessions and queues."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.log = tmp / "mosquitto.log"
        self.conf = tmp / "mosquitto.conf"
        store = tmp / "mosq"
        store.mkdir()
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {store}/\nautosave_interval 1\n"
            f"max_queued_messages 100000\nlog_dest file {self.log}\nlog_type all\n"
            f"user {getpass.getuser()}\n")  # as root it would drop to `mosquitto`: no access
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(["mosquitto", "-c", str(self.conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start: " + self.log.read_text()[-2000:])

    def stop(self) -> None:
        self.proc.terminate()  # SIGTERM: mosquitto saves its persistence file and exits
        self.proc.wait(10)

    def connects(self, client_id: str) -> int:
        return self.log.read_text(errors="replace").count(f" as {client_id} ")


class NodeRun:
    """The host node, driven on stdin; collects the records it reports."""

    def __init__(self, build: Path, cfg: dict, tmp: Path) -> None:
        path = tmp / "node.json"
        path.write_text(json.dumps(cfg))
        env = {"MICROPYPATH": f".frozen:{build}", "PATH": "/usr/bin:/bin"}
        self.proc = subprocess.Popen(
            [micropython.interpreter(), "-X", f"heapsize={HEAP_DRIVEN}", "-m", "metro.app.host",
             str(path)], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT)
        self.records: dict[int, dict] = {}
        self.lines: list[str] = []
        self.events: queue.Queue = queue.Queue()
        self._pumping = threading.Thread(target=self._pump, daemon=True)
        self._pumping.start()

    def _pump(self) -> None:
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            self.lines.append(line)
            if line.startswith('{"rec"'):
                rec = json.loads(line)["rec"]
                self.records[rec["seq"]] = rec
                if rec["kind"] == "event":
                    self.events.put(rec)

    def send(self, **cmd) -> None:
        self.proc.stdin.write(json.dumps(cmd).encode() + b"\n")
        self.proc.stdin.flush()

    def scans(self, n: int) -> None:
        """n scanner lines at about 200 a second (a burst would only queue in memory)."""
        for _ in range(n):
            self.send(scan=SCAN)
            time.sleep(0.005)

    def wait_event(self, code: str, timeout: float = 10) -> dict:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                rec = self.events.get(timeout=0.1)
            except queue.Empty:
                continue
            if rec["code"] == code:
                return rec
        raise AssertionError(f"no {code} event; console:\n" + "\n".join(self.lines[-30:]))

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self._pumping.join(5)
        self.proc.stdin.close()
        self.proc.stdout.close()


def wait_until(cond, timeout: float, what: str, node: NodeRun | None = None) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.05)
    tail = "\n".join(x for x in node.lines if "\"rec\"" not in x)[-3000:] if node else ""
    raise AssertionError(f"timed out waiting for {what}\n{tail}")


def node_config(tmp: Path, broker_port: int, **extra) -> dict:
    cfg = {"node": NODE.hex(), "key": KEY.hex(), "data_dir": str(tmp / "flash"),
           "status_s": 3600, "wdt_ms": 5000, "health_ms": 2000,
           "link": {"kind": "mqtt", "window": 16, "timeout_ms": 500, "period_ms": 5,
                    "mqtt": {"broker": "127.0.0.1", "port": broker_port, "keepalive_s": 2,
                             "backoff_ms": 100, "max_backoff_ms": 1000}},
           "outbox": {"seg_bytes": 2048, "max_bytes": 262144},
           "scanner": {"inst": "SCAN-1"}, "sim": {"driven": True, "period_ms": 5}}
    cfg.update(extra)
    return cfg


@pytest.fixture(scope="module")
def build(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("mpy")
    compile_firmware(out)
    return out


def stored_seqs(db: Path) -> list[int]:
    with sqlite3.connect(db) as con:
        return seen.seqs(con, NODE)  # the gateway keeps them in blocks (gateway/seen.py)


def test_records_reach_the_gateway_once_across_a_broker_restart(build, tmp_path):
    broker = Broker(tmp_path)
    db = tmp_path / "gateway.db"
    box = Outbox(db, 100_000)
    counters = Counters()
    intake = Intake(Verifier({NODE: KEY}, seen=box), box, counters,
                    lambda: int(time.time() * 1000), lambda alert: None)
    ingress = WifiIngress("127.0.0.1", broker.port, "gw-test-nodes", intake)
    stop = threading.Event()
    gateway = threading.Thread(target=ingress.run, args=(stop,), daemon=True)
    gateway.start()
    watcher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="status-watch")
    states: list[str] = []
    watcher.on_message = lambda c, u, m: states.append(json.loads(m.payload)["state"])
    watcher.on_connect = lambda c, u, f, r, p: c.subscribe(STATUS, 1)
    watcher.reconnect_delay_set(0.1, 1)
    watcher.connect("127.0.0.1", broker.port)
    watcher.loop_start()
    node = NodeRun(build, node_config(tmp_path, broker.port), tmp_path)
    try:
        assert ingress.subscribed.wait(10)
        wait_until(lambda: any('"ready"' in line for line in node.lines), 20, "boot")
        node.scans(150)
        wait_until(lambda: len(stored_seqs(db)) >= 100, 20, "records at the gateway")
        broker.stop()  # records in flight now; the node keeps scanning into its outbox
        node.scans(150)
        wait_until(lambda: len(node.records) >= 301, 20, "scans stored while broker down", node)
        broker.start()
        node.scans(150)
        wait_until(lambda: len(node.records) >= 451, 20, "all scans stored on the node", node)
        wait_until(lambda: set(stored_seqs(db)) >= set(node.records), 40,
                   "every record at the gateway", node)
        time.sleep(3)  # idle longer than 1.5 keepalives: PINGREQ must keep the session
        made = set(node.records)
        assert intake.acks.mark(NODE) == max(made)
        # Acknowledged segments are deleted; the newest stays (it holds `prev`).
        wait_until(lambda: len(NodeOutbox(str(tmp_path / "flash" / "outbox")).segments) == 1,
                   10, "acknowledgements to empty the node's outbox")
        assert states[-1] == "online"
        node.kill()  # no DISCONNECT: the broker publishes the Last Will
        wait_until(lambda: states[-1] == "offline", 10, "the Last Will")
    finally:
        node.kill()
        stop.set()
        gateway.join(10)
        watcher.loop_stop()
        broker.stop()
        box.close()
    stored = stored_seqs(db)
    assert len(stored) == len(set(stored)) and set(stored) == made, "lost or extra records"
    assert sum(1 for r in node.records.values() if r["kind"] == "scan") == 450
    assert counters.snapshot().get("rejected", {}) == {}, counters.snapshot()
    connects = broker.connects(f"metro-{NODE.hex()}")
    assert connects == 2, f"{connects} connections: one before, one after the restart"
    print(f"\n{len(made)} records, {connects} connections, "
          f"{counters.snapshot().get('duplicate', 0)} resends seen as duplicates")


class SntpServer:
    """Answers SNTP queries with UTC = base + elapsed; the first answer a kiss-o'-death."""

    def __init__(self, base_ms: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.base_ms = base_ms
        self.t0 = time.monotonic()
        self.queries = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def now_ms(self) -> int:
        return self.base_ms + int((time.monotonic() - self.t0) * 1000)

    def _serve(self) -> None:
        while True:
            try:
                data, addr = self.sock.recvfrom(512)
            except OSError:
                return
            self.queries += 1
            assert len(data) == 48 and data[0] == 0x23, data  # LI 0, VN 4, client
            stratum, kiss = (0, b"RATE") if self.queries == 1 else (2, b"\x7f\x00\x00\x01")
            now = sntp.from_unix_ms(self.now_ms())
            reply = (bytes([0x24, stratum, 6, 0xEC]) + struct.pack(">II", 0, 0) + kiss
                     + now + data[40:48] + now + sntp.from_unix_ms(self.now_ms()))
            self.sock.sendto(reply, addr)


def test_sntp_sets_the_clock_with_time_quality_1(build, tmp_path):
    broker = Broker(tmp_path)
    server = SntpServer(base_ms=2_000_000_000_000)  # 2033: far from the host's own clock
    cfg = node_config(tmp_path, broker.port,
                      ntp={"host": "127.0.0.1", "port": server.port, "every_s": 60,
                           "retry_s": 1})
    node = NodeRun(build, cfg, tmp_path)
    try:
        err = node.wait_event("driver_error")
        assert err["detail"]["what"] == "ntp" and "kiss code RATE" in err["detail"]["why"]
        assert err["tq"] == 0  # not believed: the clock is still unset
        clock = node.wait_event("clock_set")
        node.send(scan=SCAN)
        wait_until(lambda: any(r["kind"] == "scan" for r in node.records.values()), 10, "a scan")
        truth = server.now_ms()
    finally:
        node.kill()
        broker.stop()
    d = clock["detail"]
    assert (d["old_tq"], d["tq"], clock["tq"]) == (0, 1, 1)
    assert d["old"] < 100_000 and abs(d["new"] - server.base_ms) < 5_000  # uptime -> UTC
    (scan,) = [r for r in node.records.values() if r["kind"] == "scan"]
    assert scan["tq"] == 1 and abs(scan["t"] - truth) < 500, (scan["t"], truth)
