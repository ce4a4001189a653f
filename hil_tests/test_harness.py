"""The harness itself: a DUT over a pty and over a socket:// URL behaves the same; the
bridge carries every byte unchanged; failed expects say what came instead; rig files
are checked and give the bench its capabilities (pytest-embedded tests its harness
with a loopback; so do we)."""

from __future__ import annotations

import ast
import socket
import time
from pathlib import Path

import pytest

from hil_tests.harness.bench import CAPABILITIES, from_options
from hil_tests.harness.console import Console, ExpectTimeout
from hil_tests.harness.dut import KEY, NODE, UnixDut
from hil_tests.harness.link import Link
from hil_tests.harness.rig import Rig, RigError
from metrotrace.firmware.metro.wire import frame, record
from metrotrace.tools.bridge import Bridge

RIGS = Path(__file__).parent / "rigs"
NOT_COMPARED = ("t", "raw", "t_start")  # time and converter noise differ run to run


def _script(dut: UnixDut) -> list[dict]:
    dut.stim.scan("]E04006381333931")
    dut.stim.load(1250)
    dut.link.expect_record("weighing", timeout=10)
    dut.stim.pulses(700, 1000)
    dut.stim.nozzle("down")
    dut.link.expect_record("dispense", timeout=10)
    dut.console.send({"param": {"name": "dispenser.d", "value": 5, "by": "hil"}})
    dut.link.expect_event("param_change", timeout=10)
    dut.power_cut()
    dut.link.expect_event("power_up", timeout=10)
    dut.link.settle(quiet=0.3)
    return [{k: v for k, v in r.items() if k not in NOT_COMPARED} for r in dut.link.records]


@pytest.mark.skipif("config.getoption('--board')", reason="tests the unix bench's transports")
def test_a_dut_over_a_pty_and_over_a_socket_url_gives_the_same_records(firmware_build,
                                                                       tmp_path):
    runs = {}
    for transport in ("pty", "socket"):
        (tmp_path / transport).mkdir()
        dut = UnixDut(firmware_build, tmp_path / transport, transport)
        try:
            dut.boot()
            assert dut.link.url.startswith("/dev/" if transport == "pty" else "socket://")
            runs[transport] = _script(dut)
        finally:
            dut.close()
    assert runs["pty"] == runs["socket"]
    kinds = [r["kind"] for r in runs["pty"]]
    assert kinds.count("event") == 3  # two power-ups and the parameter change
    assert {"zero", "scan", "weighing", "dispense"} <= set(kinds)


@pytest.mark.parametrize("kind", Bridge.KINDS)
def test_the_bridge_carries_every_byte_value_both_ways_and_survives_a_reconnect(kind):
    every_byte = bytes(range(256)) * 8  # 0x00, 0x03, 0x0d, 0x11 included: raw, no tty rules
    with Bridge(kind) as bridge:
        port = __import__("serial").serial_for_url(bridge.url, timeout=0.05)
        try:
            for _ in range(2):  # the node resets: a second connection on the same port
                with socket.create_connection(("127.0.0.1", bridge.device_port)) as node:
                    node.sendall(every_byte)
                    got = _read(port, len(every_byte))
                    assert got == every_byte
                    port.write(every_byte[::-1])
                    node.settimeout(2)
                    back = b""
                    while len(back) < len(every_byte):
                        back += node.recv(65536)
                    assert back == every_byte[::-1]
                time.sleep(0.2)
            assert bridge.connections == 2
        finally:
            port.close()


def test_the_socket_url_serves_one_client_at_a_time_and_the_next_after_a_hang_up():
    """As a serial port that a test and then a gateway open in turn (ser2net's habit):
    the link outlives its client, and a client waiting meanwhile gets it next."""
    serial = __import__("serial")

    def exchange(port, node, n: int) -> None:
        _wait_for(lambda: bridge.clients == n)
        node.sendall(b"to client %d\n" % n)
        assert _read(port, 12) == b"to client %d\n" % n
        port.write(b"from %d" % n)
        assert node.recv(64) == b"from %d" % n

    with Bridge("socket") as bridge, \
            socket.create_connection(("127.0.0.1", bridge.device_port)) as node:
        node.settimeout(3)
        first = serial.serial_for_url(bridge.url, timeout=0.05)  # the test's link
        exchange(first, node, 1)
        second = serial.serial_for_url(bridge.url, timeout=0.05)  # the gateway, early
        time.sleep(0.2)
        node.sendall(b"to client 1\n")
        assert _read(first, 12) == b"to client 1\n" and second.read(64) == b""
        assert bridge.clients == 1, "two clients on one serial line"
        first.close()  # the test releases the link: the gateway gets it
        exchange(second, node, 2)
        second.close()
        third = serial.serial_for_url(bridge.url, timeout=0.05)
        exchange(third, node, 3)
        third.close()
        assert bridge.connections == 1, "the node's connection did not outlive its clients"


def _wait_for(predicate, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _read(port, n: int, timeout: float = 3.0) -> bytes:
    out, deadline = b"", time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        out += port.read(n - len(out))
    return out


def test_the_link_checks_tags_counts_damage_and_reports_what_came_on_a_failed_expect():
    good = record.make(record.WEIGHING, NODE, 5, 0, 1000, 0, "NAWI-0042", gross=1250,
                       tare=0, net=1250, e=5, unit="g", flags=1)
    forged = record.make(record.SCAN, NODE, 6, 5, 1001, 0, None, code=b"]E0X",
                         symbology="]E0")
    with Bridge("pty") as bridge:
        link = Link(bridge.url, NODE, KEY)
        try:
            with socket.create_connection(("127.0.0.1", bridge.device_port)) as node:
                node.sendall(frame.record_frame(forged, bytes(32))  # wrong key
                             + b"\x00\x07garbage\x00"  # line noise
                             + frame.record_frame(good, KEY))
                assert link.expect_record("weighing", net=1250)["seq"] == 5
                with pytest.raises(ExpectTimeout) as failed:
                    link.expect_record("dispense", timeout=0.3)
                assert "('weighing', 5, None)" in str(failed.value)
                assert "bad tags: 1" in str(failed.value)
                assert link.decoder.counts == {"cobs": 1}
                ack = _read_frames(node)
                assert frame.parse_control(ack, NODE, KEY) == 5  # acknowledged like a gateway
        finally:
            link.close()


def _read_frames(node: socket.socket) -> frame.Frame:
    node.settimeout(3)
    decoder = frame.Decoder()
    while True:
        for item in decoder.feed(node.recv(4096)):
            if isinstance(item, frame.Frame):
                return item


def test_a_reset_cuts_the_line_in_progress_so_the_next_boot_starts_a_line_of_its_own():
    console = Console("board console")
    console.feed(b'{"rec": {"kind": "sc')  # the power went mid-line (or a REPL prompt)
    console.break_line()
    console.feed(b'{"ready": true}\r\n')
    assert console.expect_json(key="ready", timeout=0.5) == {"ready": True}
    console.break_line()  # nothing in progress: no empty line is made
    assert bytes(console.log).endswith(b'{"ready": true}\r\n')


def test_a_failed_console_expect_quotes_the_unmatched_output():
    console = Console("node console")
    console.feed(b'metro host node\n{"rec": {"kind": "zero"}}\npartial')
    assert console.expect_json(key="rec")["rec"]["kind"] == "zero"
    with pytest.raises(ExpectTimeout, match="partial"):
        console.expect(r"ready", timeout=0.1)


def test_the_example_rig_is_consistent_and_wires_every_capability_but_wifi():
    rig = Rig.load(RIGS / "example.yaml")
    assert rig.capabilities == {"load_cell", "pulse_input", "scanner", "power_cut"}
    setup = rig.stimulus_setup()
    assert setup["pulses"] == {"pin": 2} and setup["reset"] == {"pin": 22}
    assert setup["load_cell"] == {"dout": 4, "sck": 5, "zero_raw": 8400, "counts_per_unit": 42}
    assert setup["scanner"] == {"tx": 8, "uart": 1, "baud": 9600}
    bench = from_options("/dev/ttyUSB0", None, str(RIGS / "example.yaml"))
    assert bench.kind == "board" and bench.link_url == rig.link
    assert "bench lacks wifi" in bench.lacks("wifi") and "rig: wifi" in bench.lacks("wifi")
    assert bench.lacks("pulse_input") is None
    with_wifi = Rig.parse({"board": "esp32", "wifi": {"ssid": "bench", "broker": "10.0.0.2"}})
    assert with_wifi.capabilities == {"wifi"}


def test_an_indicator_line_gives_the_load_cell_capability(tmp_path, monkeypatch):
    """A DUT reading a weight indicator on a UART (a board config with scale.source):
    the stimulus board prints the commanded load on that line."""
    import json

    from hil_tests.harness import rig as rig_mod

    board = json.loads((rig_mod.BOARDS / "esp32" / "config.json").read_text())
    board["scale"] = {**board["scale"], "source": "sics",
                      "uart": {"id": 1, "baud": 9600, "tx": 4, "rx": 5}}
    del board["scanner"]  # its UART now reads the indicator
    (tmp_path / "esp32-sics").mkdir()
    (tmp_path / "esp32-sics" / "config.json").write_text(json.dumps(board))
    monkeypatch.setattr(rig_mod, "BOARDS", tmp_path)
    rig = Rig.parse({"board": "esp32-sics", "stimulus": {"port": "/dev/ttyACM0"},
                     "wiring": {"indicator": {"stimulus_tx": 8, "uart": 1, "baud": 9600,
                                              "dut_rx": 5, "protocol": "sics"}}})
    assert rig.capabilities == {"load_cell"}
    assert rig.stimulus_setup() == {"indicator": {"tx": 8, "uart": 1, "baud": 9600,
                                                  "protocol": "sics"}}


@pytest.mark.parametrize(("change", "message"), [
    ({"wiring": {"pulses": {"stimulus": 2, "dut": 34}, "nozzle": {"stimulus": 2, "dut": 35}}},
     "wiring.nozzle.stimulus: stimulus pin 2 is already wired by wiring.pulses.stimulus"),
    ({"wiring": {"pulses": {"stimulus": 2, "dut": 33}}},
     "wiring.pulses.dut: DUT pin 33 but boards/esp32/config.json has dispenser.pins.pulse"),
    ({"wiring": {"pulses": {"dut": 34}}}, "wiring.pulses.stimulus: missing"),
    ({"wiring": {"laser": {}}}, "wiring.laser: unknown"),
    ({"board": "pdp11"}, "board: expected one of"),
    ({"wifi": {"ssid": "bench"}}, "wifi.broker: missing"),
    ({"wifi": {"ssid": "bench", "broker": "10.0.0.2", "port": "x"}}, "wifi.port: an integer"),
])
def test_an_inconsistent_rig_is_refused_naming_the_field(change, message):
    data = {"board": "esp32", "link": "/dev/ttyUSB1", "stimulus": {"port": "/dev/ttyACM0"}}
    data.update(change)
    with pytest.raises(RigError, match=message.replace(".", r"\.")):
        Rig.parse(data)


def test_the_unix_bench_has_every_capability_and_says_why_when_mosquitto_is_missing(
        monkeypatch):
    bench = from_options(None, None, None)
    assert bench.kind == "unix" and bench.lacks("load_cell") is None
    assert bench.lacks("wifi") is None  # its node's MQTT uplink reaches a local Mosquitto
    monkeypatch.setenv("PATH", "/nonexistent")
    bare = from_options(None, None, None)
    assert bare.lacks("wifi").startswith("bench lacks wifi: the unix bench")
    assert "install mosquitto" in bare.lacks("wifi")
    with pytest.raises(ValueError, match="--link"):
        from_options(None, "socket://x:1", None)
    with pytest.raises(ValueError, match="--rig"):
        from_options("/dev/ttyUSB0", None, None)


# What a test may only do on a bench that has the capability: `dut.power_cut()` needs a
# reset wire, `stim.load()` a load cell, and so on.
NEEDS = {"power_cut": "power_cut", "load": "load_cell", "pulses": "pulse_input",
         "nozzle": "pulse_input", "scan": "scanner"}


def _calls(node: ast.AST, helpers: dict) -> set[str]:
    """Methods called on the DUT or the stimulus in `node`, through module helpers too."""
    out = set()
    for call in ast.walk(node):
        if not isinstance(call, ast.Call):
            continue
        f = call.func
        if isinstance(f, ast.Attribute) and f.attr in NEEDS:
            out.add(f.attr)
        elif isinstance(f, ast.Name) and f.id in helpers:
            out |= _calls(helpers.pop(f.id), helpers)
    return out


def _marks(decorators: list[ast.expr]) -> set[str]:
    return {d.attr for d in ast.walk(ast.Module(body=[ast.Expr(x) for x in decorators],
                                                type_ignores=[]))
            if isinstance(d, ast.Attribute) and d.attr in CAPABILITIES}


@pytest.mark.parametrize("module", sorted(p.name for p in Path(__file__).parent.glob("test_*.py")))
def test_every_hil_test_asks_for_the_capabilities_it_uses(module):
    tree = ast.parse((Path(__file__).parent / module).read_text())
    module_marks: set[str] = set()
    helpers = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and any(getattr(t, "id", "") == "pytestmark"
                                                for t in stmt.targets):
            module_marks = _marks([stmt.value])
        elif isinstance(stmt, ast.FunctionDef) and not stmt.name.startswith("test_"):
            helpers[stmt.name] = stmt
    missing = []
    for stmt in tree.body:
        if not isinstance(stmt, ast.FunctionDef) or not stmt.name.startswith("test_"):
            continue
        if not {"dut", "stim"} & {a.arg for a in stmt.args.args}:
            continue  # builds its own unix DUT (the harness's own tests)
        have = module_marks | _marks(stmt.decorator_list)
        need = {NEEDS[c] for c in _calls(stmt, dict(helpers))}
        missing += [f"{stmt.name}: @pytest.mark.{cap}" for cap in sorted(need - have)]
    assert not missing, f"a rig without the capability would fail, not skip: {missing}"


def test_a_rig_without_a_reset_wire_skips_power_cuts_and_says_what_to_wire(tmp_path):
    text = (RIGS / "example.yaml").read_text()
    cut = text[:text.index("  reset:")] + text[text.index("# wifi:"):]
    (tmp_path / "no-reset.yaml").write_text(cut)
    bench = from_options("/dev/ttyUSB0", None, str(tmp_path / "no-reset.yaml"))
    assert "power_cut" not in bench.capabilities
    why = bench.lacks("power_cut")
    assert why.startswith("bench lacks power_cut: rig ") and "(rig: reset)" in why
