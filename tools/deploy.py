"""Put the node firmware and its configuration onto a board with mpremote.

Layout on the board (docs/firmware.md): `lib/metro/...` (as .mpy from mpy-cross, or
.py), `main.py` (firmware/boards/main.py), `config.json` (0600 on the host side; the
node key). Paths are relative to the board's working directory, `/` on a board.

A running node feeds a hardware watchdog that nothing can stop, so interrupting it
for a long copy would end in a watchdog reset half-way. Deploying therefore first
parks `main.py` (renamed to `main.parked`) and resets, so the board comes up idle
without a watchdog; the copy then takes as long as it takes, and `main.py` comes
back last. `hold=False` skips the park/reset steps for a board without a running
node (and for the unix port's REPL on a pty, which the tests use as a board).

Invariant: every mpremote call says `resume` (never a soft reset, which a REPL on
the unix port does not survive) and fails loudly with mpremote's own message.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import hostnode

MAIN = hostnode.FIRMWARE / "boards" / "main.py"
PARKED = "main.parked"


class DeployError(RuntimeError):
    """mpremote failed; the message carries its output."""


def mpremote(port: str, *args: str, timeout: float = 120, check: bool = True) -> str:
    cmd = [sys.executable, "-m", "mpremote", "connect", port, "resume", *args]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise DeployError(f"mpremote {' '.join(args)}: no answer from {port} in "
                          f"{timeout} s") from None
    if check and done.returncode:
        raise DeployError(f"mpremote {' '.join(args)}: {(done.stderr or done.stdout).strip()}")
    return done.stdout


def run_on_board(port: str, code: str, timeout: float = 60) -> str:
    return mpremote(port, "exec", code, timeout=timeout)


def reset(port: str, settle_s: float = 2.5) -> None:
    """machine.reset(); the USB port may vanish for a moment (native-USB boards)."""
    mpremote(port, "exec", "import machine; machine.reset()", check=False, timeout=10)
    time.sleep(settle_s)


def _exists_code(path: str) -> str:
    return f"import os\ntry:\n os.stat({path!r}); print(1)\nexcept OSError:\n print(0)"


def park(port: str) -> None:
    """Stop the node from starting at boot (and so its watchdog); then reset."""
    if run_on_board(port, _exists_code("main.py")).strip() == "1":
        run_on_board(port, f"import os; os.rename('main.py', {PARKED!r})")
        reset(port)


def put_config(port: str, config: dict) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = hostnode.write_config(Path(tmp) / "config.json", config)
        mpremote(port, "fs", "cp", str(path), ":config.json")


def deploy(port: str, mpy: bool = True, config: dict | None = None, hold: bool = True,
           log=print) -> dict:
    """Copy the firmware (and a config); returns {file: sha256} of what was copied."""
    if hold:
        park(port)
    with tempfile.TemporaryDirectory() as tmp:
        build = hostnode.build(Path(tmp), mpy=mpy, board=True)
        files = sorted(p for p in (build / "metro").rglob("*") if p.is_file())
        dirs = sorted({p.parent.relative_to(build).as_posix() for p in files})
        made = "import os\nfor d in %r:\n try:\n  os.mkdir(d)\n except OSError:\n  pass" % (
            ["lib"] + [f"lib/{d}" for d in dirs])
        run_on_board(port, made)
        args: list[str] = []
        for f in files:
            args += ["fs", "cp", str(f), f":lib/{f.relative_to(build).as_posix()}", "+"]
        mpremote(port, *args[:-1], timeout=600)
        copied = {f"lib/{f.relative_to(build).as_posix()}": hashlib.sha256(f.read_bytes())
                  .hexdigest() for f in files}
    log(f"copied {len(copied)} firmware files to {port}:lib/metro ({'mpy' if mpy else 'py'})")
    if config is not None:
        put_config(port, config)
    mpremote(port, "fs", "cp", str(MAIN), ":main.py")
    copied["main.py"] = hashlib.sha256(MAIN.read_bytes()).hexdigest()
    if hold:
        run_on_board(port, f"import os\ntry:\n os.remove({PARKED!r})\nexcept OSError:\n pass")
        reset(port)
    return copied


def board_hashes(port: str, names: list[str]) -> dict[str, str]:
    """sha256 of files on the board, computed there (to compare with what was sent)."""
    code = ("import hashlib, binascii, json\nout = {}\nfor n in " + repr(names) + ":\n"
            " h = hashlib.sha256()\n with open(n, 'rb') as f:\n  h.update(f.read())\n"
            " out[n] = binascii.hexlify(h.digest()).decode()\nprint(json.dumps(out))")
    return json.loads(run_on_board(port, code).strip().splitlines()[-1])


def board_id(port: str) -> str:
    """machine.unique_id() in hex."""
    out = run_on_board(port, "import machine, binascii; "
                             "print(binascii.hexlify(machine.unique_id()).decode())")
    return out.strip().splitlines()[-1]


def firmware_id_on_board(port: str, version: str = "metro 0.1.0") -> str:
    out = run_on_board(port, "import sys; sys.path.append('lib')\n"
                             "from metro.core.fwid import firmware_id\n"
                             f"print(firmware_id({version!r}, 'lib/metro')[0])")
    return out.strip().splitlines()[-1]
