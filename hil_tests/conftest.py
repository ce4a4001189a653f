"""The HIL suite's bench: the unix-interpreter DUT by default, a real board on request.

    pytest hil_tests                                  unix port, simulated instruments
    pytest hil_tests --board /dev/ttyUSB0 --link /dev/ttyUSB1 --rig rigs/bench.yaml
    pytest hil_tests --board /dev/ttyACM0 --link socket://rig-7:4001 --rig rig.yaml

The same test functions run on both: they get `dut`, `link`, `console` and `stim`,
ask for capabilities with markers (load_cell, pulse_input, scanner, power_cut, wifi)
and for a configuration with `@pytest.mark.node_config(section={...})`. A test marked
`wifi` gets a node that reports over MQTT to `site_broker`; a test that asks for
`transport` runs over each way the bench presents the link.
"""

from __future__ import annotations

import inspect

import pytest

from hil_tests.harness import bench as bench_mod
from hil_tests.harness.bench import CAPABILITIES

BENCH = pytest.StashKey[bench_mod.Bench]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("hil", "hardware-in-the-loop bench (hil_tests/)")
    group.addoption("--board", metavar="PORT",
                    help="a real board's console (USB REPL); firmware is deployed with mpremote")
    group.addoption("--link", metavar="URL",
                    help="the board's UART link: a port or pyserial URL (socket://, rfc2217://)")
    group.addoption("--rig", metavar="RIG.yaml",
                    help="which DUT pin is wired to which stimulus pin (rigs/example.yaml)")
    group.addoption("--hil-transport", choices=("pty", "socket"), default="pty",
                    help="unix DUT: present its link as a pty (default) or a socket:// URL")


def pytest_configure(config: pytest.Config) -> None:
    # Options are checked once, before anything runs: a bad bench is a usage error.
    try:
        config.stash[BENCH] = bench_mod.from_options(config.getoption("--board"),
                                                     config.getoption("--link"),
                                                     config.getoption("--rig"),
                                                     config.getoption("--hil-transport"))
    except ValueError as e:
        raise pytest.UsageError(str(e)) from None


@pytest.fixture(scope="session")
def bench(pytestconfig: pytest.Config) -> bench_mod.Bench:
    return pytestconfig.stash[BENCH]


@pytest.fixture(autouse=True)
def _capabilities(request: pytest.FixtureRequest) -> None:
    for cap in CAPABILITIES:
        if request.node.get_closest_marker(cap) is not None:
            why = request.getfixturevalue("bench").lacks(cap)
            if why:
                pytest.skip(why)


@pytest.fixture(scope="session")
def firmware_build(tmp_path_factory: pytest.TempPathFactory):
    """The firmware compiled with mpy-cross, as deployed (unix DUT)."""
    from metrotrace.tools import hostnode

    return hostnode.build(tmp_path_factory.mktemp("firmware") / "build")


@pytest.fixture(scope="session")
def board_session(bench, tmp_path_factory):
    """A real board with the firmware deployed once per run (board bench only)."""
    if bench.kind != "board":
        yield None
        return
    from hil_tests.harness.board import BoardSession

    session = BoardSession(bench, tmp_path_factory.mktemp("board"))
    yield session
    session.close()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # A test that asks for `transport` runs over every way the bench offers its link:
    # on the unix bench a pty and a socket:// URL (the same test, twice), on a board
    # its one link.
    if "transport" in inspect.signature(metafunc.function).parameters:
        bench = metafunc.config.stash[BENCH]
        metafunc.parametrize("transport", ("pty", "socket") if bench.kind == "unix"
                             else ("board",))


@pytest.fixture
def transport(bench) -> str:
    """How the unix DUT presents its link (--hil-transport); "board" on a rig."""
    return bench.transport if bench.kind == "unix" else "board"


@pytest.fixture(scope="session")
def site_broker(bench, tmp_path_factory):
    """(host, port) of the broker a Wi-Fi DUT reaches: on the unix bench a Mosquitto of
    the bench's own on a free port, on a rig the one its `wifi:` entry names."""
    if bench.kind == "board":
        yield bench.rig.wifi["broker"], bench.rig.wifi.get("port", 1883)
        return
    from tests.gwharness import Mosquitto

    broker = Mosquitto(tmp_path_factory.mktemp("site-broker"))
    broker.start()
    yield "127.0.0.1", broker.port
    broker.stop()


def _wifi_config(request, bench) -> dict:
    """The configuration sections of a node that reports over Wi-Fi (MQTT)."""
    host, port = request.getfixturevalue("site_broker")
    mqtt = {"broker": host, "port": port, "keepalive_s": 10, "backoff_ms": 200,
            "max_backoff_ms": 2000}
    out = {"link": {"kind": "mqtt", "mqtt": mqtt}}
    if bench.kind == "board":
        out["wifi"] = {"ssid": bench.rig.wifi["ssid"],
                       "password": bench.rig.wifi.get("password", "")}
    return out


def _make_dut(request, bench, tmp_path, transport):
    marker = request.node.get_closest_marker("node_config")
    over = dict(marker.kwargs) if marker else {}
    if request.node.get_closest_marker("wifi") is not None:
        for name, section in _wifi_config(request, bench).items():
            over[name] = {**section, **over.get(name, {})}
    if bench.kind == "board":
        return request.getfixturevalue("board_session").dut(tmp_path, over)
    from hil_tests.harness.dut import UnixDut

    return UnixDut(request.getfixturevalue("firmware_build"), tmp_path, transport, over)


@pytest.fixture
def dut(request, bench, tmp_path, transport):
    """The device under test, booted from erased flash into a known state."""
    device = _make_dut(request, bench, tmp_path, transport)
    try:
        device.boot()
        yield device
    finally:
        device.close()
        print(f"--- {device.describe()}: console tail ---\n{device.log_tail()}")


@pytest.fixture
def link(dut):
    return dut.link


@pytest.fixture
def console(dut):
    return dut.console


@pytest.fixture
def stim(dut):
    return dut.stim
