"""Simulated nodes in front of a real gateway: `metrotrace node sim` and `node loadgen`.

Both register their nodes' keys in the gateway's nodes.json, open one pty per node
(the gateway reads it as it reads a USB-serial adapter), and run the gateway on a
copy of its config whose `serial.ports` are those ptys (`gateway.sim.toml` beside
the original, which is left alone). `sim` runs the node firmware under MicroPython
(tools/hostnode.py) behind a tools/bridge.py pty; `loadgen` writes records straight
into the ptys from CPython, many times faster than a node, with a window of records
in flight per node, and measures acknowledged records per second and ack latency.

Invariant: node ids are 8 bytes, `51a1`, three random bytes naming the run and the
node's index: every run is new nodes whose sequence numbers start at 1, so a second run
against the same gateway is never taken for replays of the first (a simulated node
keeps no state between runs). Their keys are registered with `"sim"` saying which run
made them, so an operator can prune them; a key already registered is never replaced.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import tty
from pathlib import Path

from metrotrace.firmware.metro.wire import frame, record


def node_ids(count: int, run: bytes | None = None) -> list[bytes]:
    """`count` node ids of one run (fresh random run bytes unless given)."""
    run = os.urandom(3) if run is None else run
    if len(run) != 3:
        raise ValueError("run: expected 3 bytes")
    return [bytes.fromhex("51a1") + run + i.to_bytes(3, "big") for i in range(1, count + 1)]


def register(node_keys: Path, nodes: list[bytes], note: str = "") -> dict[bytes, bytes]:
    data = json.loads(node_keys.read_text()) if node_keys.exists() else {"nodes": {}}
    keys = {}
    for node in nodes:
        entry = data["nodes"].setdefault(node.hex(), {"key": os.urandom(32).hex()})
        if note:
            entry.setdefault("sim", note)
        keys[node] = bytes.fromhex(entry["key"])
    tmp = node_keys.with_name(node_keys.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
    os.replace(tmp, node_keys)
    return keys


def derived_config(config: Path, ports: list[str]) -> Path:
    """gateway.sim.toml: the gateway's config with serial.ports replaced."""
    text = config.read_text()
    ports_line = f"ports = {json.dumps(ports)}"
    if re.search(r"(?m)^\[serial\]", text):
        text = re.sub(r"(?m)^ports\s*=.*$", "", text)
        text = re.sub(r"(?m)^\[serial\]\s*$", f"[serial]\n{ports_line}", text)
    else:
        text += f"\n[serial]\n{ports_line}\n"
    out = config.with_name("gateway.sim.toml")
    out.write_text(text)
    return out


def start_gateway(config: Path, log: Path) -> subprocess.Popen:
    with open(log, "ab") as err:
        return subprocess.Popen([sys.executable, "-m", "metrotrace.tools.cli", "gateway",
                                 "run", "--config", str(config)],
                                stdout=subprocess.DEVNULL, stderr=err)


def last_counters(log: Path) -> dict:
    """The gateway's last counters: its final `gateway_stop` line when it stopped
    cleanly, else the last periodic `counters` line; {} when it logged neither."""
    found: dict = {}
    for line in log.read_text(errors="replace").splitlines():
        if not line.startswith("{"):
            continue
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("event") in ("counters", "gateway_stop"):
            found = event
    return found


class PtyPair:
    """A pty whose slave path the gateway opens; we hold the master."""

    def __init__(self) -> None:
        self.master, self._slave = os.openpty()
        tty.setraw(self._slave)
        self.path = os.ttyname(self._slave)
        os.set_blocking(self.master, False)

    def close(self) -> None:
        os.close(self.master)
        os.close(self._slave)


class LoadNode:
    """A virtual node: makes scale records and keeps `window` of them unacknowledged."""

    def __init__(self, node: bytes, key: bytes, pty: PtyPair, window: int) -> None:
        self.node, self.key, self.pty, self.window = node, key, pty, window
        self.seq = 0
        self.acked = 0
        self.sent_at: dict[int, float] = {}
        self.latencies: list[float] = []
        self.decoder = frame.Decoder()

    def fill(self, limit: int, t0: int) -> None:
        out = b""
        while self.seq < limit and self.seq - self.acked < self.window:
            self.seq += 1
            rec = record.make(record.WEIGHING, self.node, self.seq, self.seq - 1,
                              t0 + self.seq, record.TQ_GATEWAY, "LOAD-1", gross=1000 + self.seq
                              % 500 * 5, tare=0, net=1000 + self.seq % 500 * 5, e=5, unit="g",
                              flags=record.F_STABLE)
            out += frame.record_frame(rec, self.key)
            self.sent_at[self.seq] = time.monotonic()
        view = memoryview(out)
        while view:
            try:
                view = view[os.write(self.pty.master, view):]
            except BlockingIOError:
                time.sleep(0.001)
                self.read()

    def read(self) -> None:
        try:
            data = os.read(self.pty.master, 65536)
        except BlockingIOError:
            return
        now = time.monotonic()
        for item in self.decoder.feed(data):
            if isinstance(item, frame.Frame) and item.type == frame.ACK:
                mark = frame.parse_control(item, self.node, self.key)
                if isinstance(mark, int) and mark > self.acked:
                    for s in range(self.acked + 1, mark + 1):
                        self.latencies.append(now - self.sent_at.pop(s))
                    self.acked = mark


def loadgen(nodes: list[LoadNode], records: int, timeout: float,
            alive=lambda: True) -> dict:
    """Send `records` per node as fast as acknowledgements allow, while `alive()`;
    figures."""
    t0 = int(time.time() * 1000)
    start = time.monotonic()
    deadline = start + timeout
    while any(n.acked < records for n in nodes) and time.monotonic() < deadline:
        if not alive():
            break  # the gateway is gone: nothing will be acknowledged any more
        for n in nodes:
            n.read()
            n.fill(records, t0)
        time.sleep(0.0005)
    took = time.monotonic() - start
    lat = sorted(x for n in nodes for x in n.latencies)

    def pct(p: float) -> float:
        return round(1000 * lat[min(len(lat) - 1, int(p * len(lat)))], 2) if lat else -1.0
    acked = sum(n.acked for n in nodes)
    return {"nodes": len(nodes), "records_acked": acked, "records_sent": sum(n.seq for n in nodes),
            "seconds": round(took, 3), "acked_per_s": round(acked / took, 1),
            "ack_latency_ms": {"p50": pct(0.5), "p99": pct(0.99), "max": pct(1.0)}}
