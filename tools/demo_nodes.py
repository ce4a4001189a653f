"""The demo's boards: the real node firmware under the MicroPython unix port, wired to the
gateway through a pty, driven by JSON-lines commands, watched through its console.

Invariants: the firmware that runs is exactly what a board gets (tools/hostnode.build,
cached by the hash of its sources so a second run starts at once); each node reaches
the real gateway only through a pty that the gateway opens with pyserial
(tools/bridge.py), as a board's UART; every record the node stores is echoed on its
console and counted here by kind, and every command it refuses is kept with its reason.

The nodes have no clock when they boot: the gateway sets it with a time frame
(docs/protocol.md, `T`) beside its first acknowledgement, so their records carry
wall-clock time (tq 2) from then on, as on site.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import shutil
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

from metrotrace.tools import hostnode
from metrotrace.tools.bridge import Bridge
from metrotrace.tools.demo_procs import Procs
from metrotrace.tools.demo_scenario import NodePlan


def firmware_build(cache_root: Path) -> Path:
    """The compiled firmware (mpy-cross, as deployed), built once per source version."""
    digest = hashlib.sha256()
    for rel in hostnode.sources():
        digest.update(str(rel).encode() + b"\0" + (hostnode.FIRMWARE / rel).read_bytes())
    digest.update(hostnode.executable("mpy-cross", "mpy-cross").encode())
    dest = cache_root / f"firmware-{digest.hexdigest()[:16]}"
    if (dest / "metro").is_dir():
        return dest
    scratch = cache_root / f".build-{os.getpid()}"
    shutil.rmtree(scratch, ignore_errors=True)
    hostnode.build(scratch)
    try:
        scratch.rename(dest)
    except OSError:  # another demo built it at the same moment: use theirs
        shutil.rmtree(scratch, ignore_errors=True)
    return dest


class NodeRunner:
    """One host node process: commands in, console lines out, records counted."""

    def __init__(self, plan: NodePlan, folder: Path) -> None:
        self.plan, self.folder = plan, folder
        self.key = b""  # set_key() once the gateway has provisioned the node
        self.bridge = Bridge("pty")
        self.kinds: Counter[str] = Counter()
        self.events: Counter[str] = Counter()
        self.refused: list[str] = []  # {"error": ...} answers to commands
        self.records: queue.Queue = queue.Queue()  # every echoed record, for the driver
        self.ready = threading.Event()
        self.proc = None
        self._write = threading.Lock()

    def set_key(self, key: bytes) -> None:
        self.key = key

    @property
    def port(self) -> str:
        """The pty path the gateway opens as this board's serial port."""
        return self.bridge.url

    def start(self, procs: Procs, build: Path) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        cfg = hostnode.host_config(self.plan.node, self.key, self.folder / "flash",
                                   self.bridge.device_port, **self.plan.config())
        path = hostnode.write_config(self.folder / "config.json", cfg)
        env = {"MICROPYPATH": f".frozen:{build}", "PATH": "/usr/bin:/bin"}
        argv = [hostnode.micropython(), "-X", f"heapsize={hostnode.HEAP}", "-m",
                "metro.app.host", str(path)]
        self.proc = procs.start(f"node-{self.plan.hex}", argv, order=10, env=env,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        log = open(procs.log_dir / f"node-{self.plan.hex}.log", "w")  # noqa: SIM115
        threading.Thread(target=self._read, args=(self.proc.popen.stdout, log),
                         name=f"console-{self.plan.hex}", daemon=True).start()

    def _read(self, stream, log) -> None:
        with log:
            for raw in stream:
                line = raw.decode(errors="replace").rstrip("\n")
                log.write(line + "\n")
                if not line.startswith("{"):
                    continue
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue
                if "rec" in msg:
                    rec = msg["rec"]
                    self.kinds[rec["kind"]] += 1
                    if rec["kind"] == "event":
                        self.events[rec.get("code", "?")] += 1
                    self.records.put(rec)
                elif "error" in msg:
                    self.refused.append(msg["error"])
                elif msg.get("ready"):
                    self.ready.set()
        self.records.put(None)  # the node ended

    def send(self, **command) -> None:
        """One console command (sim/driven.py, app/console.py); ignored once the node ended."""
        popen = self.proc.popen if self.proc else None
        if popen is None or popen.poll() is not None:
            return
        with self._write:
            try:
                popen.stdin.write(json.dumps(command).encode() + b"\n")
                popen.stdin.flush()
            except (BrokenPipeError, ValueError):
                pass  # the node is stopping

    def expect(self, kind: str, timeout: float, stop: threading.Event) -> dict | None:
        """The next echoed record of `kind` (others are passed over), or None."""
        deadline = time.monotonic() + timeout
        while not stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                rec = self.records.get(timeout=min(left, 0.2))
            except queue.Empty:
                continue
            if rec is None:
                self.records.put(None)
                return None
            if rec["kind"] == kind:
                return rec
        return None

    def drain(self) -> None:
        while True:
            try:
                if self.records.get_nowait() is None:
                    self.records.put(None)
                    return
            except queue.Empty:
                return

    def close(self) -> None:
        self.bridge.close()
