"""A board that is not there: the MicroPython unix port's REPL on a pty, with a flash
folder for its file system, so the `--board` path (mpremote deploy, config, erase,
reset, console) runs in CI. labgrid ships a fake driver for the same reason.

    board = FakeBoard(tmp_path / "flash")    # board.port: /dev/pts/N, as a USB REPL
    board.reset()                            # the EN/RUN line (or machine.reset())

Each boot is a fresh interpreter on the same pty (a reset ends the old one): with
/main.py present it runs boot.py's stand-in for the node (checks the deployed firmware
and config, prints {"ready": true, ...}) and then the REPL; `boots` counts them.

`FakeStimulus` is a stimulus board on a pty that answers each JSON-lines command as
hil_tests/stimulus/main.py does, checked by its own commands.parse; its reset line is
wired to a FakeBoard.

Invariant: nothing here imitates the REPL or mpremote: the unix port's real raw REPL
answers mpremote, and the files it writes land in `flash`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import select
import subprocess
import threading
import tty
from pathlib import Path

from metrotrace.tools import hostnode

HERE = Path(__file__).resolve().parent
STIMULUS = HERE.parents[1] / "stimulus"
# command -> the setup parts that carry it out, one of them (as stimulus/main.py refuses)
NEEDS = {"load": ("load_cell", "indicator"), "pulses": ("pulses",), "nozzle": ("nozzle",),
         "scan": ("scanner",), "line": ("indicator",), "reset": ("reset",), "seal": ("seal",)}


def _pty() -> tuple[int, int, str]:
    master, slave = os.openpty()
    tty.setraw(slave)
    return master, slave, os.ttyname(slave)


class FakeBoard:
    def __init__(self, flash: Path) -> None:
        flash.mkdir(parents=True, exist_ok=True)
        self.flash = flash
        self._master, self._slave, self.port = _pty()
        self.boots = 0
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fake-board", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        env = {"MICROPYPATH": str(HERE), "PATH": "/usr/bin:/bin"}
        while not self._stop.is_set():
            with self._lock:
                self._proc = subprocess.Popen(
                    [hostnode.micropython(), "-i", str(HERE / "boot.py")], stdin=self._master,
                    stdout=self._master, stderr=self._master, cwd=self.flash, env=env)
                self.boots += 1
            self._proc.wait()  # machine.reset(), the reset line, or close()

    def reset(self) -> None:
        """Pull the reset line: the interpreter stops wherever it is and boots again."""
        with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                self._proc.kill()

    def close(self) -> None:
        self._stop.set()
        self.reset()
        self._thread.join(5)
        os.close(self._master)
        os.close(self._slave)


class FakeStimulus:
    """A stimulus board on a pty: one answer line per command, as stimulus/main.py."""

    def __init__(self, board: FakeBoard | None = None) -> None:
        spec = importlib.util.spec_from_file_location("stimulus_commands",
                                                      STIMULUS / "commands.py")
        self._commands = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(self._commands)
        self.board = board
        self.commands: list[dict] = []
        self.setup: dict = {}
        self._master, self._slave, self.port = _pty()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fake-stimulus", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        buf = b""
        while not self._stop.is_set():
            if not select.select([self._master], [], [], 0.1)[0]:
                continue
            try:
                chunk = os.read(self._master, 4096)
            except OSError:
                return  # closed
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                if line.strip():
                    answer = self._answer(line)
                    os.write(self._master, json.dumps(answer).encode() + b"\r\n")

    def _answer(self, line: bytes) -> dict:
        try:
            cmd = json.loads(line)
            name, value = self._commands.parse(cmd)
        except ValueError as err:  # CommandError, bad JSON
            return {"error": str(err)}
        need = NEEDS.get(name, ())
        if need and not any(part in self.setup for part in need):
            return {"error": f"{name}: no {' or '.join(need)} in setup"}
        self.commands.append(cmd)
        if name == "setup":
            self.setup = value
        elif name == "reset" and self.board is not None:
            self.board.reset()
        return {"ok": name}

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        os.close(self._slave)
        os.close(self._master)
