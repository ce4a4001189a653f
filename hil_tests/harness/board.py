"""A real board as the device under test (`--board PORT --link URL --rig rig.yaml`).

Per run (`BoardSession`): a node key made for the run, the firmware deployed with
mpremote (tools/deploy.py: .mpy, main.py parked while copying), the stimulus board
opened on its port and given the rig's pin map (`{"setup": ...}`). Per test
(`BoardDut`): the board's config.json written (the rig's template, the test's
`node_config` sections, the run's key, the emulated cell's calibration), its flash
data erased, a reset, and the console followed until `{"ready": true}` - the same
known state the unix DUT starts from. The test functions do not know the difference.

Invariants: mpremote and the console never hold the board's port at once (the console
is closed around every mpremote call); a power cut is the rig's reset line, never a
soft reset; a hang is Ctrl-C on the console: the program stops, the hardware watchdog
is no longer fed, the board must reset itself.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

from metrotrace.tools import deploy

from .console import Console, SerialReader
from .mqttlink import open_link
from .stimulus import BoardStimulus


class BoardSession:
    def __init__(self, bench, workdir: Path) -> None:
        self.bench = bench
        self.rig = bench.rig
        self.port = bench.board_port
        self.workdir = workdir
        self.key = os.urandom(32)
        stim_console = Console("stimulus board")
        self._stim_reader = SerialReader(self.rig.stimulus_port, stim_console) \
            if self.rig.stimulus_port else None
        self.stim = BoardStimulus(stim_console, bench.capabilities)
        if self._stim_reader:
            self.stim.command({"setup": self.rig.stimulus_setup()})
        deploy.deploy(self.port, mpy=True)
        self.node = bytes.fromhex(deploy.board_id(self.port))

    def config(self, over: dict) -> dict:
        cfg = self.rig.template()
        cfg.update({"key": self.key.hex()})
        cell = self.rig.wiring.get("load_cell")
        indicator = self.rig.wiring.get("indicator")
        if cell and "scale" in cfg:  # the DUT's calibration matches the emulated cell
            cfg["scale"]["cal"] = {"zero_raw": cell["zero_raw"],
                                   "span_raw": cell["counts_per_unit"] * 10000,
                                   "span_load": 10000}
        elif indicator and "scale" in cfg:  # the DUT reads the lines the stimulus prints
            cfg["scale"]["source"] = indicator["protocol"]
        for name, value in over.items():
            if name == "sim":
                continue  # the unix DUT's simulated parts: a rig has real ones
            if isinstance(value, dict) and isinstance(cfg.get(name), dict):
                cfg[name] = {**cfg[name], **value}
            else:
                cfg[name] = value
        return cfg

    def dut(self, workdir: Path, over: dict) -> BoardDut:
        return BoardDut(self, workdir, self.config(over))

    def close(self) -> None:
        if self._stim_reader:
            self._stim_reader.close()


class BoardFiles:
    """The deployed firmware on the board, read and written with mpremote."""

    def __init__(self, dut: BoardDut) -> None:
        self.dut = dut

    def legal_modules(self) -> list[str]:
        out = self.dut.mpremote("exec", "import sys, json; sys.path.append('lib')\n"
                                "from metro.core.fwid import legal_files\n"
                                "print(json.dumps(legal_files('lib/metro')))")
        return [f"lib/metro/{n}" for n in json.loads(out.strip().splitlines()[-1])]

    def app_module(self) -> str:
        return "lib/metro/app/node.mpy"

    def read(self, rel: str) -> bytes:
        with tempfile.TemporaryDirectory() as tmp:
            self.dut.mpremote("fs", "cp", f":{rel}", f"{tmp}/f")
            return Path(tmp, "f").read_bytes()

    def write(self, rel: str, data: bytes) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            Path(tmp, "f").write_bytes(data)
            self.dut.mpremote("fs", "cp", f"{tmp}/f", f":{rel}")


class BoardDut:
    kind = "board"

    def __init__(self, session: BoardSession, workdir: Path, config: dict) -> None:
        self.session = session
        self.workdir = workdir
        self.config = config
        self.node, self.key = session.node, session.key
        self.stim = session.stim
        self.console = Console("board console")
        self.files = BoardFiles(self)
        self.link = open_link(config, session.bench.link_url, self.node, self.key)
        self._reader: SerialReader | None = None
        self.exits: list[int] = []

    def mpremote(self, *args: str) -> str:
        self._close_console()
        try:
            return deploy.mpremote(self.session.port, *args)
        finally:
            self._open_console()

    def _open_console(self, wait: float = 10.0) -> None:
        self.console.break_line()  # it was closed around a reset or an mpremote call
        deadline = time.monotonic() + wait
        while self._reader is None:
            try:
                self._reader = SerialReader(self.session.port, self.console)
            except OSError:  # a native-USB board re-enumerating after its reset
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def _close_console(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def boot(self) -> None:
        """Known state: this test's config, erased data, a reset, ready."""
        self._close_console()
        deploy.park(self.session.port)
        deploy.put_config(self.session.port, self.config)
        data = self.config.get("data_dir", "/data").lstrip("/")
        deploy.run_on_board(self.session.port, _erase_code(data))
        deploy.run_on_board(self.session.port, f"import os; os.rename({deploy.PARKED!r}, "
                                               "'main.py')")
        deploy.reset(self.session.port, settle_s=0.5)
        self._open_console()
        self.wait_ready()

    def wait_ready(self) -> dict:
        if self._reader is None or not self._reader.alive:
            self._close_console()  # the board reset itself (watchdog): its USB came back
            self._open_console(wait=30)
        ready = self.console.expect_json(key="ready", timeout=30)
        if self.config.get("scale"):
            self.link.seen("zero", timeout=30)
        return ready

    def power_cut(self) -> None:
        self.stim.reset_dut()
        self._close_console()
        time.sleep(0.5)
        self._open_console()
        self.wait_ready()

    def hang(self) -> None:
        self.console.write(b"\x03")  # KeyboardInterrupt: the loop stops, the WDT starves

    def release_link(self) -> str:
        self.link.close()
        return self.session.bench.link_url

    def close(self) -> None:
        self._close_console()
        self.link.close()

    def log_tail(self, n: int = 3000) -> str:
        return bytes(self.console.log[-n:]).decode(errors="replace")

    def describe(self) -> str:
        return f"board {self.session.port} node {self.node.hex()}"


def _erase_code(data: str) -> str:
    return ("import os\ndef rm(p):\n try:\n  for e in os.ilistdir(p):\n"
            "   rm(p + '/' + e[0]) if e[1] == 0x4000 else os.remove(p + '/' + e[0])\n"
            "  os.rmdir(p)\n except OSError:\n  pass\n" f"rm({data!r})")
