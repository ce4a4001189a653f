"""The device under test: the role every bench plays, and the unix-interpreter bench.

A DUT offers the same few things whatever it is (the labgrid habit: a small protocol,
drivers behind it):

    dut.link      Link     the node's gateway link (UART frames, harness/link.py; or
                           records over MQTT for a Wi-Fi config, harness/mqttlink.py)
    dut.console   Console  the node's console (JSON lines; harness/console.py)
    dut.stim      Stimulus instruments driven by the test (harness/stimulus.py)
    dut.config    dict     the configuration the node runs with
    dut.boot() / dut.power_cut() / dut.hang()
    dut.files     where the deployed firmware lives (read and patch a module)

`UnixDut` is the node on the MicroPython unix port in driven mode
(`"sim": {"driven": true}`): the firmware exactly as deployed (mpy-cross output),
simulated instruments commanded with JSON lines on its stdin, its TCP link carried by
a Bridge as a pty or a socket:// URL. A board is `harness/board.py`.

Invariants: a DUT starts each test from erased flash (a fresh data directory) and
boots until it says `{"ready": true}`; when the node process ends by itself its exit
code is kept in `exits`, and after a watchdog reset (exit code 3) it is started again
on the same flash, as a board reboots; after anything else it stays down.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import threading
from pathlib import Path

from metrotrace.tools import hostnode
from metrotrace.tools.bridge import Bridge

from .console import Console
from .mqttlink import open_link
from .stimulus import ConsoleStimulus

NODE = bytes.fromhex("e6614103e7513a2f")
KEY = bytes(range(32))
WDT_EXIT = 3  # the host node's exit status when its software watchdog fires
# Driven mode loads host-only modules (console, driven stimulus) that a board does not;
# at 128k the node failed to boot again after a power cut with records on flash
# (MemoryError importing drivers/pulse; reported to the lead), so the DUT gets more.
HEAP = "192k"


class UnixFiles:
    """The deployed firmware of a unix DUT: a build directory of its own."""

    def __init__(self, root: Path) -> None:
        self.root = root  # holds metro/

    def legal_modules(self) -> list[str]:
        from metrotrace.firmware.metro.core import fwid

        return [f"metro/{name}" for name in fwid.legal_files(str(self.root / "metro"))]

    def app_module(self) -> str:
        """A deployed module outside the legal ones (the application's wiring)."""
        return "metro/app/node.mpy"

    def read(self, rel: str) -> bytes:
        return (self.root / rel).read_bytes()

    def write(self, rel: str, data: bytes) -> None:
        (self.root / rel).write_bytes(data)


class UnixDut:
    kind = "unix"

    def __init__(self, build: Path, workdir: Path, transport: str = "pty",
                 config: dict | None = None, boot_timeout: float = 30.0) -> None:
        self.workdir = workdir
        self.files = UnixFiles(workdir / "build")
        shutil.copytree(build, self.files.root)  # a test may patch its own copy
        self.bridge = Bridge(transport)
        self.node, self.key = NODE, KEY
        self.config = hostnode.host_config(NODE, KEY, workdir / "flash", self.bridge.device_port,
                                           **(config or {}))
        self.config.setdefault("sim", {})["driven"] = True
        self.boot_timeout = boot_timeout
        self.console = Console("node console")
        self.stim = ConsoleStimulus(self.console)
        self.link = open_link(self.config, self.bridge.url, NODE, KEY)
        self.exits: list[int] = []
        self.boots = 0
        self._proc: subprocess.Popen | None = None
        self._watcher: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closing = False
        self._killing = False
        self._log = open(workdir / "node.log", "ab")  # noqa: SIM115 - lives with the DUT

    # --- power and reset -------------------------------------------------------------
    def boot(self, wait: bool = True) -> None:
        """Start the node on its flash; wait for {"ready": true}."""
        self.console.break_line()  # a line cut by the last power cut ends here
        with self._lock:
            cfg = hostnode.write_config(self.workdir / "config.json", self.config)
            self._proc = hostnode.start(self.files.root, cfg, HEAP, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            self.boots += 1
            proc = self._proc
            self.console.attach_writer(lambda data: self._stdin(proc, data))
            self._watcher = threading.Thread(target=self._watch, args=(proc,), daemon=True,
                                             name="unix-dut")
            self._watcher.start()
        if wait:
            self.wait_ready()

    def wait_ready(self) -> dict:
        ready = self.console.expect_json(key="ready", timeout=self.boot_timeout)
        if self.config.get("scale"):  # known state: the power-up zero is set
            self.link.seen("zero", timeout=self.boot_timeout)
        return ready

    def _stdin(self, proc: subprocess.Popen, data: bytes) -> None:
        try:
            proc.stdin.write(data)
            proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass  # the node is down (reset in progress): a UART would drop this too

    def _watch(self, proc: subprocess.Popen) -> None:
        for chunk in iter(lambda: proc.stdout.read1(65536), b""):
            self._log.write(chunk)
            self.console.feed(chunk)
        code = proc.wait()
        proc.stdout.close()
        proc.stdin.close()
        with self._lock:
            if self._closing or self._killing or proc is not self._proc:
                return
            self.exits.append(code)
        if code == WDT_EXIT:
            self.boot(wait=False)  # the watchdog reset it: it boots again, as a board does
        # Any other end (a traceback) leaves the node down, as a board stops at its
        # REPL: the test fails on its next expect, with the traceback in the console.

    def power_cut(self) -> None:
        """SIGKILL, wherever the node is (mid-write included), and boot again."""
        self.stop()
        self.boot()

    def stop(self) -> None:
        with self._lock:
            proc = self._proc
            self._killing = True
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            proc.wait()
            self._watcher.join(timeout=5)  # it closes the pipes
        with self._lock:
            self._killing = False
            self._proc = None

    def hang(self) -> None:
        """Stop the main loop (the software watchdog must then reset the node)."""
        self.console.send({"hang": True})

    def release_link(self) -> str:
        """Close the test's end of the link and return its port, for a real gateway."""
        self.link.close()
        return self.bridge.url

    def close(self) -> None:
        self._closing = True
        self.stop()
        self.link.close()
        self.bridge.close()
        self._log.close()

    def log_tail(self, n: int = 3000) -> str:
        return bytes(self.console.log[-n:]).decode(errors="replace")

    def describe(self) -> str:
        return json.dumps({"kind": self.kind, "link": self.bridge.url, "boots": self.boots})
