"""`metrotrace node ...` against real parts: mpremote talking raw REPL to a MicroPython
interpreter on a pty (a board whose flash is a folder), a real gateway process with
its own Mosquitto, and the bridge."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import threading
import time
import tty
from pathlib import Path

import pytest

from metrotrace.firmware.metro.core import fwid
from metrotrace.firmware.metro.wire import frame, record
from metrotrace.tools import cli, deploy, hostnode
from metrotrace.tools.bridge import Bridge
from tests.gwharness import Mosquitto, gateway_dir

pytestmark = pytest.mark.micropython


@contextlib.contextmanager
def repl_board(flash: Path):
    """The unix port's REPL on a pty: mpremote's raw REPL works on it as on a board."""
    flash.mkdir()
    master, slave = os.openpty()
    tty.setraw(slave)
    proc = subprocess.Popen([hostnode.micropython()], stdin=master, stdout=master,
                            stderr=master, cwd=flash)
    try:
        time.sleep(0.3)
        yield os.ttyname(slave)
    finally:
        proc.kill()
        proc.wait()
        os.close(master)
        os.close(slave)


def test_deploy_then_provision_puts_firmware_key_and_config_on_the_board(tmp_path, capsys):
    gw = tmp_path / "gw"
    gw.mkdir()
    (gw / "gateway.toml").write_text('[gateway]\nid = "market-1"\nsite = "market"\n')
    with repl_board(tmp_path / "flash") as port:
        assert cli.main(["node", "deploy", "--port", port, "--no-hold"]) == 0
        deployed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert deployed["mismatched"] == [] and deployed["files"] > 30
        assert cli.main(["node", "provision", "--port", port, "--gateway-config",
                         str(gw / "gateway.toml"), "--node", "e6614103e7513a2f",
                         "--workdir", str(tmp_path)]) == 0
        shown = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    flash = tmp_path / "flash"
    assert (flash / "lib/metro/core/flow.mpy").exists() and (flash / "main.py").exists()
    assert not (flash / "lib/metro/sim").exists(), "simulated instruments went to a board"
    assert not (flash / "lib/metro/app/host.mpy").exists()
    board = json.loads((flash / "config.json").read_text())
    registry = json.loads((gw / "nodes.json").read_text())["nodes"]
    assert registry["e6614103e7513a2f"]["key"] == board["key"]
    assert board["link"]["uart"]["id"] == 2 and board["gateway"] == "market-1"
    assert shown["key_fingerprint"] == __import__("hashlib").sha256(
        bytes.fromhex(board["key"])).hexdigest()[:16]
    assert board["key"] not in json.dumps(shown)
    # The id the board computed over what it got is the one the host computes.
    assert shown["fw"] == fwid.firmware_id("metro 0.1.0", str(flash / "lib/metro"))[0]
    assert not list(tmp_path.glob("board-*.json")), "the key was left in a scratch file"


@pytest.mark.slow
def test_deploy_py_parks_a_running_node_resets_copies_sources_and_unparks(tmp_path, capsys):
    """A board running a node (main.py present): deploy parks it, resets into an idle
    board, copies .py sources, puts main.py back and resets into the node again."""
    from hil_tests.harness.fakeboard import FakeBoard

    flash = tmp_path / "flash"
    flash.mkdir()
    (flash / "main.py").write_text("# the node that was running\n")
    board = FakeBoard(flash)
    try:
        assert cli.main(["node", "deploy", "--port", board.port, "--py"]) == 0
        boots = board.boots
    finally:
        board.close()
    deployed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert deployed["mismatched"] == [] and deployed["files"] > 30
    assert boots == 3, "expected a reset to park and one to start the new node"
    assert (flash / "lib/metro/core/flow.py").read_bytes() == (
        hostnode.FIRMWARE / "metro/core/flow.py").read_bytes()
    assert not list(flash.glob("lib/**/*.mpy")), "--py copied compiled modules"
    assert (flash / "main.py").read_bytes() == deploy.MAIN.read_bytes()
    assert not (flash / deploy.PARKED).exists()


def test_monitor_decodes_frames_checks_tags_and_acknowledges(capsys):
    node, key = bytes.fromhex("e6614103e7513a2f"), bytes(range(32))
    good = record.make(record.WEIGHING, node, 7, 0, 1000, 0, "NAWI-0042", gross=1250,
                       tare=0, net=1250, e=5, unit="g", flags=1)
    forged = record.make(record.ZERO, node, 8, 7, 1001, 0, "NAWI-0042", indication=0, e=5,
                         unit="g")
    acks: list = []

    def board(port: int) -> None:  # talks once the monitor has opened the port:
        time.sleep(0.5)  # pyserial's socket:// drops what arrived before its open ended
        with socket.create_connection(("127.0.0.1", port)) as dev:
            dev.sendall(frame.record_frame(good, key) + frame.record_frame(forged, bytes(32)))
            dev.settimeout(5)
            acks.extend(f for f in frame.Decoder().feed(dev.recv(4096))
                        if isinstance(f, frame.Frame))

    with Bridge("socket") as bridge:
        talker = threading.Thread(target=board, args=(bridge.device_port,))
        talker.start()
        assert cli.main(["node", "monitor", "--port", bridge.url, "--key", key.hex(),
                         "--count", "2", "--ack", "--seconds", "10"]) == 0
        talker.join(10)
        ack = acks
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [(x["seq"], x["tag"]) for x in lines] == [(7, "good"), (8, "bad_tag")]
    assert lines[0]["net"] == 1250 and lines[0]["node"] == node.hex()
    assert [frame.parse_control(a, node, key) for a in ack] == [7]


@pytest.fixture
def gateway_config(tmp_path):
    broker = Mosquitto(tmp_path)
    broker.start()
    yield gateway_dir(tmp_path, broker.port, {}, [])
    broker.stop()


def test_loadgen_drives_a_real_gateway_twice_and_every_record_is_acknowledged(gateway_config,
                                                                              capsys):
    """A second run against the same gateway (its outbox and registry kept) is new
    nodes, not replays of the first run's sequence numbers."""
    runs = []
    for _ in range(2):
        assert cli.main(["node", "loadgen", "--gateway-config", str(gateway_config),
                         "--nodes", "2", "--records", "300", "--window", "32",
                         "--timeout", "60"]) == 0
        runs.append(json.loads(capsys.readouterr().out.strip().splitlines()[-1]))
    for figures in runs:
        assert figures["records_acked"] == 600 and figures["acked_per_s"] > 0
        assert figures["ack_latency_ms"]["p50"] <= figures["ack_latency_ms"]["p99"]
        counters = figures["gateway"]
        assert counters["event"] == "gateway_stop", "not the gateway's final counters"
        assert counters["accepted"] == 600 and counters["rejected"] == {}, counters
    registry = json.loads(gateway_config.with_name("nodes.json").read_text())["nodes"]
    assert len(registry) == 4 and all(n.startswith("51a1") for n in registry)
    assert all(e["sim"].startswith("node loadgen ") for e in registry.values())


@pytest.mark.slow
def test_sim_runs_micropython_nodes_against_a_real_gateway(gateway_config, capsys):
    assert cli.main(["node", "sim", "--gateway-config", str(gateway_config), "--nodes", "2",
                     "--seconds", "5"]) == 0
    out = [json.loads(x) for x in capsys.readouterr().out.strip().splitlines()]
    assert len(out[0]["ports"]) == 2
    counters = out[-1]["gateway"]
    assert counters["event"] == "gateway_stop", "not the gateway's final counters"
    assert counters["accepted"] >= 10 and not counters["rejected"], counters
    original = gateway_config.read_text()
    assert "/dev/pts" not in original, "the gateway's own config was changed"


@pytest.mark.slow
def test_loadgen_server_mode_loads_a_real_worker_and_every_record_is_stored(tmp_path, capsys):
    """Signed batches at a set rate to the broker a `metrotrace server run` worker
    consumes; keys registered in its store; a second run is new traffic."""
    import signal
    import sys

    from tests.gwharness import client

    broker = Mosquitto(tmp_path)
    broker.start()
    data = tmp_path / "store"
    worker = subprocess.Popen(
        [sys.executable, "-m", "metrotrace.tools.cli", "server", "run", "--data-dir", str(data),
         "--broker", f"127.0.0.1:{broker.port}", "--client-id", "load-test-worker",
         "--monitor-every", "0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    online = threading.Event()
    watch = client(broker.port, "load-test-watch", persistent=False)
    watch.on_connect = lambda c, *a: c.subscribe("metrotrace/v1/server/status", 1)
    watch.on_message = lambda c, u, m: b"online" in m.payload and online.set()
    watch.loop_start()
    try:
        assert online.wait(30), "the worker did not come online"
        runs = []
        for _ in range(2):
            code = cli.main(["node", "loadgen", "--server", "--broker",
                             f"127.0.0.1:{broker.port}", "--data-dir", str(data), "--rate",
                             "1000", "--seconds", "1.5", "--batch", "50", "--nodes", "3",
                             "--wait", "30"])
            runs.append(json.loads(capsys.readouterr().out.strip().splitlines()[-1]))
            assert code == 0, json.dumps(runs[-1])
    finally:
        watch.loop_stop()
        worker.send_signal(signal.SIGTERM)
        out, _ = worker.communicate(timeout=30)
        broker.stop()
    for figures in runs:
        assert figures["records_published"] == figures["records_stored"] == 1500
        assert figures["envelopes"] == 30 and figures["broker_acked"]
        assert 0 < figures["published_per_s"] <= 1100, "not paced to the asked rate"
        assert figures["stored_per_s"] > 0 and figures["store_lag_s"] >= 0
    assert runs[0]["gateway"] != runs[1]["gateway"]
    counts = json.loads(out.decode().strip().splitlines()[-1])
    assert (counts["stored"], counts["records"]) == (60, 3000), counts  # none rejected
