"""The `--board` path without a board: BoardSession and BoardDut against a FakeBoard (the
MicroPython unix REPL on a pty, its file system a folder) and a FakeStimulus whose
reset line is wired to it. mpremote really deploys, writes the config, erases the
data, parks and unparks main.py and resets; the console really waits for ready."""

from __future__ import annotations

import json

import pytest
import yaml

from hil_tests.harness.bench import from_options
from hil_tests.harness.board import BoardSession
from hil_tests.harness.fakeboard import FakeBoard, FakeStimulus
from hil_tests.harness.patch import one_byte_changed
from hil_tests.harness.stimulus import StimulusRefused
from metrotrace.firmware.metro.core import fwid
from metrotrace.tools import deploy
from metrotrace.tools.bridge import Bridge

pytestmark = [pytest.mark.micropython, pytest.mark.slow,
              pytest.mark.skipif("config.getoption('--board')",
                                 reason="tests the board path against a fake board")]
UNIQUE_ID = bytes.fromhex("fa4eb0a2d0000001")  # harness/fakeboard/machine.py


@pytest.fixture
def fake_rig(tmp_path):
    board = FakeBoard(tmp_path / "flash")
    stim = FakeStimulus(board)
    link = Bridge("pty")  # the DUT's UART adapter: nothing talks on it here
    rig = tmp_path / "fake.yaml"
    rig.write_text(yaml.safe_dump({
        "board": "esp32", "link": link.url, "stimulus": {"port": stim.port},
        "wiring": {"pulses": {"stimulus": 2, "dut": 34}, "nozzle": {"stimulus": 3, "dut": 35},
                   "scanner": {"stimulus_tx": 8, "uart": 1, "baud": 9600, "dut_rx": 5},
                   "reset": {"stimulus": 22, "dut": "EN"}}}))
    yield board, stim, from_options(board.port, None, str(rig))
    stim.close()
    board.close()
    link.close()


def _ready_lines(dut) -> list[dict]:
    out = []
    for line in dut.console.lines():
        try:
            obj = json.loads(line)
        except ValueError:
            continue  # the REPL's banner and prompts
        if isinstance(obj, dict) and "ready" in obj:
            out.append(obj)
    return out


def test_the_board_path_deploys_configures_erases_resets_and_waits_for_ready(fake_rig,
                                                                           tmp_path):
    board, stim, bench = fake_rig
    flash = board.flash
    session = BoardSession(bench, tmp_path / "run")
    dut = None
    try:
        assert stim.commands[0] == {"setup": bench.rig.stimulus_setup()}
        assert session.node == UNIQUE_ID, "the node id is machine.unique_id()"
        assert (flash / "lib/metro/core/flow.mpy").exists()
        assert (flash / "main.py").read_bytes() == deploy.MAIN.read_bytes()
        assert not (flash / "lib/metro/sim").exists()
        (flash / "data").mkdir()
        (flash / "data" / "seg-000001").write_bytes(b"a previous test's records")

        dut = session.dut(tmp_path / "t1", {"scale": None, "status_s": 30,
                                             "sim": {"driven": True}})
        boots = board.boots
        dut.boot()  # park + reset, config, erase, unpark, reset, ready
        assert board.boots == boots + 2
        ready = _ready_lines(dut)[-1]
        assert ready["data"] is None, "the data directory was not erased"
        # the id the board computed over what it got is the one the host computes
        assert ready["fw"] == fwid.firmware_id("metro 0.1.0", str(flash / "lib/metro"))[0]
        written = json.loads((flash / "config.json").read_text())
        assert written["key"] == session.key.hex() and written["status_s"] == 30
        assert written["scale"] is None and "sim" not in written  # a rig has real parts
        assert written["link"]["uart"]["id"] == 2, "not the board's template"
        assert not (flash / deploy.PARKED).exists() and (flash / "main.py").exists()

        dut.power_cut()  # the stimulus board's reset line
        assert stim.commands[-1] == {"reset": 100}
        assert board.boots == boots + 3 and len(_ready_lines(dut)) == 2

        legal = [m for m in dut.files.legal_modules() if m.endswith("core/flow.mpy")]
        assert legal == ["lib/metro/core/flow.mpy"]
        original = dut.files.read(legal[0])
        assert original == (flash / legal[0]).read_bytes()
        dut.files.write(legal[0], one_byte_changed(legal[0], original))
        assert (flash / legal[0]).read_bytes() != original

        dut.stim.pulses(10, 1000)
        dut.stim.scan("]E04006381333931")
        assert stim.commands[-2:] == [{"pulses": 10, "hz": 1000},
                                      {"scan": "]E04006381333931"}]
        with pytest.raises(StimulusRefused, match="load: no load_cell or indicator"):
            dut.stim.load(1250)  # this rig wires no load cell
    finally:
        if dut is not None:
            dut.close()
        session.close()
