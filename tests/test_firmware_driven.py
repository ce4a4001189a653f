"""The host node driven by a test: commands on stdin, records expected on stdout.

The node runs under the real MicroPython interpreter with `"sim": {"driven": true}`
(docs/firmware.md, "Driven host runs"): the simulated load cell, pulser and scanner do
exactly what the commands say. Its records also go over TCP to a reader here that checks
their tags, so what the console shows is what the gateway gets.
"""

from __future__ import annotations

import json
import queue
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from metrotrace.firmware.metro.wire import frame
from metrotrace.gateway.verify import ACCEPTED, Verifier
from tests import micropython
from tests.test_firmware_resets import HEAP_DRIVEN, compile_firmware

pytestmark = pytest.mark.micropython

NODE = bytes.fromhex("e6614103e7513a2f")
KEY = bytes(range(32))
GTIN_LINE = "]C10109506000134352" + "10LOT42\u001d" + "3103001250"


class Reader:
    """Gateway side of the TCP link: decodes frames, checks tags, never acknowledges."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.verifier = Verifier({NODE: KEY})
        self.records: dict[int, dict] = {}
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        decoder = frame.Decoder()
        with conn:
            while data := conn.recv(65536):
                for item in decoder.feed(data):
                    if self.verifier.check(item).status == ACCEPTED:
                        self.records[item.fields["seq"]] = item.fields


class Node:
    """One run of the host node; `expect` waits for a console line, as a HIL dut does."""

    def __init__(self, build: Path, cfg: Path) -> None:
        env = {"MICROPYPATH": f".frozen:{build}", "PATH": "/usr/bin:/bin"}
        self.proc = subprocess.Popen(
            [micropython.interpreter(), "-X", f"heapsize={HEAP_DRIVEN}", "-m", "metro.app.host",
             str(cfg)], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT)
        self.lines: queue.Queue = queue.Queue()
        self.seen: list[str] = []
        self.unread: list[str] = []
        self._pumping = threading.Thread(target=self._pump, daemon=True)
        self._pumping.start()
        self.expect(lambda m: m.get("ready"))
        self.unread = [line for line in self.seen if '"ready"' not in line]  # boot lines

    def _pump(self) -> None:
        for raw in self.proc.stdout:
            self.lines.put(raw.decode(errors="replace").rstrip("\n"))
        self.lines.put(None)

    def send(self, **cmd) -> None:
        self.proc.stdin.write(json.dumps(cmd).encode() + b"\n")
        self.proc.stdin.flush()

    def _next(self, timeout: float) -> str | None:
        if self.unread:
            return self.unread.pop(0)
        line = self.lines.get(timeout=timeout)
        if line is not None:
            self.seen.append(line)
        return line

    def expect(self, match, timeout: float = 10.0) -> dict:
        """Consume console lines up to the first JSON line that `match` accepts."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._next(left)
            except queue.Empty:
                break
            if line is None:
                break
            if line.startswith("{"):
                msg = json.loads(line)
                if match(msg):
                    return msg
        raise AssertionError("no matching line; last lines:\n" + "\n".join(self.seen[-15:]))

    def expect_rec(self, kind: str, timeout: float = 10.0, **fields) -> dict:
        def match(msg):
            rec = msg.get("rec")
            return rec and rec["kind"] == kind and all(
                rec.get(k) == v for k, v in fields.items())
        return self.expect(match, timeout)["rec"]

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.stdin.close()
        rc = self.proc.wait(timeout=10)
        self._pumping.join(timeout=5)
        self.proc.stdout.close()
        return rc


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    dest = tmp_path_factory.mktemp("fw")
    compile_firmware(dest)
    return dest


@pytest.fixture
def node_cfg(tmp_path):
    reader = Reader()
    cfg = {
        "node": NODE.hex(), "key": KEY.hex(), "data_dir": str(tmp_path / "flash"),
        "status_s": 3600, "wdt_ms": 600, "health_ms": 200,
        "link": {"kind": "tcp", "window": 16, "timeout_ms": 300, "period_ms": 5},
        "gateway": {"host": "127.0.0.1", "port": reader.port},
        "scale": {"inst": "NAWI-0042", "e": 5, "max": 15000, "window": 3,
                  "cal": {"zero_raw": 8400, "span_raw": 420000, "span_load": 10000}},
        "dispenser": {"inst": "PUMP-3-N2", "kfactor": 100000000, "d": 10, "max_hz": 2000},
        "scanner": {"inst": "SCAN-1"},
        "sim": {"driven": True},
    }
    path = tmp_path / "node.json"
    path.write_text(json.dumps(cfg))
    yield path, reader
    reader.server.close()


def test_known_load_weighs_and_known_pulses_dispense_exactly(build, node_cfg):
    cfg, reader = node_cfg
    node = Node(build, cfg)
    try:
        node.expect_rec("zero")  # power-up zero of the empty pan
        node.send(load=1250)
        w = node.expect_rec("weighing")
        assert (w["net"], w["gross"], w["tare"], w["flags"] & 1) == (1250, 1250, 0, 1)
        node.send(load=0)
        node.expect_rec("zero")
        node.send(scan=GTIN_LINE)
        scan = node.expect_rec("scan")
        assert scan["code"] == GTIN_LINE and scan["symbology"] == "]C1"
        node.send(nozzle="up")
        node.send(pulses=4321, hz=2000)  # the highest rated flow of this meter
        node.send(nozzle="down")
        d = node.expect_rec("dispense")
        assert d["pulses"] == 4321 and d["link"] == scan["seq"] and "flags" not in d
        assert d["volume"] == 40  # 4321 pulses at 100000 per litre, d = 10 mL
        node.send(pulses=500, hz=50000)  # far above max_hz: flagged, every pulse kept
        node.send(nozzle="down")
        node.expect_rec("event", code="pulse_rate")
        assert node.expect_rec("dispense")["pulses"] == 500
        node.send(scan="]E04006381333932")
        rej = node.expect_rec("event", code="scan_rejected")
        assert rej["detail"]["why"] == "code: bad check digit"
        node.send(bogus=1)
        assert "bogus" in node.expect(lambda m: "error" in m)["error"]
        time.sleep(0.3)
        assert reader.records[d["seq"]]["pulses"] == 4321  # the gateway got the same
        assert bytes(reader.records[scan["seq"]]["code"]) == GTIN_LINE.encode()
    finally:
        node.stop()


def test_calibration_change_is_audited_and_survives_a_reset(build, node_cfg):
    cfg, _ = node_cfg
    node = Node(build, cfg)
    try:
        node.send(param={"name": "scale.cal.span_raw", "value": 400000, "by": "officer 7"})
        ev = node.expect_rec("event", code="cal_change")
        assert ev["detail"] == {"param": "scale.cal.span_raw", "old": 420000, "new": 400000,
                                "by": "officer 7", "n": 1}
        node.send(param={"name": "dispenser.kfactor", "value": 0})
        assert "dispenser.kfactor" in node.expect(lambda m: "error" in m)["error"]
        node.send(seal="open")
        assert node.expect_rec("event", code="seal")["detail"]["state"] == "open"
    finally:
        node.stop()
    node = Node(build, cfg)
    try:
        assert node.expect_rec("event", code="power_up")["detail"]["n"] == 1
        node.expect_rec("zero")
        node.send(load=1000)  # the cell is unchanged; the node now divides by 400000
        assert node.expect_rec("weighing")["net"] == 1050
        node.send(param={"name": "scale.cal.span_raw", "value": 420000})
        ev = node.expect_rec("event", code="cal_change")
        assert (ev["detail"]["old"], ev["detail"]["n"]) == (400000, 2)
    finally:
        node.stop()


def test_a_hung_loop_starves_the_watchdog_and_the_next_boot_says_so(build, node_cfg):
    cfg, _ = node_cfg
    node = Node(build, cfg)
    try:
        first = node.expect_rec("event", code="power_up", timeout=1)
        assert first["detail"]["reset"] == "HOST"
        time.sleep(1.0)  # healthy: fed, no reset
        assert node.proc.poll() is None
        node.send(hang=True)
        node.expect(lambda m: m.get("wdt") == "expired", timeout=5)
        assert node.proc.wait(timeout=5) == 3
    finally:
        node.stop()
    node = Node(build, cfg)
    try:
        assert node.expect_rec("event", code="power_up")["detail"]["reset"] == "WDT"
    finally:
        node.stop()
