"""The demo's processes: started in their own sessions, stopped in reverse order, none left.

Invariant: every process the demo starts is registered here before `start` returns, runs in
a process group of its own (so the terminal's Ctrl-C reaches the demo alone, which then
stops the parts in order: nodes before gateways before the server before the broker), and
is asked to die with the demo (PR_SET_PDEATHSIG) should the demo itself be killed. `stop`
signals each group, waits, and kills what did not stop; `leftovers` names any process of
the demo still alive afterwards (a test asserts it is empty).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    # Not Linux (no prctl): the demo's own stop still ends every process.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def port_in_use(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.3):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float, proc: subprocess.Popen | None = None) -> None:
    """Until something accepts on 127.0.0.1:port; raises if `proc` dies or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"exited with code {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f} s")


def metrotrace_command() -> list[str]:
    """How to run `metrotrace` with this interpreter (the entry point may not be on PATH)."""
    return [sys.executable, "-m", "metrotrace.tools.cli"]


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    stop_signal: int
    log: Path | None
    order: int  # lower stops first

    @property
    def pid(self) -> int:
        return self.popen.pid


@dataclass
class Procs:
    log_dir: Path
    items: list[Proc] = field(default_factory=list)

    def start(self, name: str, argv: list[str], *, order: int, stop_signal: int = signal.SIGTERM,
              env: dict | None = None, stdin=subprocess.DEVNULL, stdout=None,
              cwd: Path | None = None) -> Proc:
        """Start one part; its output goes to logs/NAME.log unless `stdout` is given."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = None
        if stdout is None:
            log = self.log_dir / f"{name}.log"
            stdout = open(log, "ab")  # noqa: SIM115 - the child holds it; closed below
        try:
            popen = subprocess.Popen(argv, stdin=stdin, stdout=stdout, stderr=subprocess.STDOUT,
                                     env=env, cwd=cwd, start_new_session=True,
                                     preexec_fn=_die_with_parent)
        finally:
            if log is not None:
                stdout.close()
        proc = Proc(name, popen, stop_signal, log, order)
        self.items.append(proc)
        return proc

    def running(self) -> list[str]:
        return [p.name for p in self.items if p.popen.poll() is None]

    def died(self) -> list[tuple[str, int]]:
        """Parts that ended on their own: (name, exit code)."""
        return [(p.name, p.popen.returncode) for p in self.items
                if p.popen.poll() is not None]

    def stop(self, grace: float = 8.0) -> list[str]:
        """Stop every part, lowest `order` first; returns the names that had to be killed."""
        killed: list[str] = []
        for order in sorted({p.order for p in self.items}):
            group = [p for p in self.items if p.order == order and p.popen.poll() is None]
            for p in group:
                _signal_group(p.pid, p.stop_signal)
            deadline = time.monotonic() + grace
            for p in group:
                try:
                    p.popen.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    _signal_group(p.pid, signal.SIGKILL)
                    p.popen.wait(5)
                    killed.append(p.name)
        for p in self.items:  # whatever a part started in its group goes with it
            _signal_group(p.pid, signal.SIGKILL)
        return killed

    def leftovers(self) -> list[str]:
        """Names of parts whose process or process group still has a live member."""
        left = []
        for p in self.items:
            if p.popen.poll() is None or _group_alive(p.pid):
                left.append(p.name)
        return left


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass  # already gone
    except PermissionError:
        pass  # the group id was reused by someone else's process: not ours to signal


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    # A zombie group leader we have reaped no longer counts; members would.
    return any(_pgid_of(pid) == pgid for pid in _pids())


def _pids() -> list[int]:
    return [int(d) for d in os.listdir("/proc") if d.isdigit()] if os.path.isdir("/proc") else []


def _pgid_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()
    if fields[0] == "Z":
        return None
    return int(fields[2])


def wait_server_online(port: int, timeout: float, proc: subprocess.Popen) -> None:
    """Until the ingest worker's retained status says online. It subscribes before it
    says so, on the same connection, so from then on no batch finds the broker without a
    subscriber: the broker would acknowledge such a batch to the gateway and drop it."""
    import paho.mqtt.client as mqtt

    online = threading.Event()

    def on_message(client, userdata, msg) -> None:
        if b'"online"' in msg.payload:
            online.set()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"demo-probe-{os.getpid()}",
                         protocol=mqtt.MQTTv5)
    client.on_message = on_message
    client.on_connect = lambda c, *_: c.subscribe("metrotrace/v1/server/status", qos=1)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        deadline = time.monotonic() + timeout
        while not online.wait(0.2):
            if proc.poll() is not None:
                raise RuntimeError(f"the ingest worker exited with code {proc.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the ingest worker did not come online in {timeout:.0f} s")
    finally:
        client.loop_stop()
        client.disconnect()


def mosquitto_path() -> str | None:
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.access(p, os.X_OK)),
        None)


MOSQUITTO_CONF = """\
# The demo's own broker: this port, this folder; nothing shared with a system Mosquitto.
listener {port} 127.0.0.1
allow_anonymous true
persistence true
persistence_location {data}/
autosave_interval 10
# Mosquitto's default of 1000 queued messages per client drops silently (DESIGN.md).
max_queued_messages 100000
log_dest stdout
log_type error
log_type warning
"""
# Run as root, Mosquitto switches to the `mosquitto` user: it could then not write its
# persistence file here, and the switch clears the signal that ends it with the demo.
AS_ROOT = "user root\n"


RUMQTTD_CONF = """\
# The demo's embedded broker (iotcore: rumqttd) when Mosquitto is not installed.
# MQTT 5 (the gateways' and workers' protocol) with shared subscriptions; no persistence.
id = 0

[router]
id = 0
max_connections = 1000
max_outgoing_packet_count = 1000
max_segment_size = 104857600
max_segment_count = 10

[v5.1]
name = "v5-1"
listen = "127.0.0.1:{port}"
next_connection_delay_ms = 1
    [v5.1.connections]
    connection_timeout_ms = 60000
    max_payload_size = 1048576
    max_inflight_count = 100
    dynamic_filters = true
"""


def start_broker(procs: Procs, folder: Path, prefer: str = "mosquitto") -> tuple[int, str]:
    """Mosquitto of the demo's own, else the embedded broker: (port, what it is)."""
    if prefer == "mosquitto" and mosquitto_path() is not None:
        return start_mosquitto(procs, folder), "Mosquitto (own config, persistence on)"
    return start_embedded(procs, folder), "embedded rumqttd (iotcore; Mosquitto not installed)"


def start_embedded(procs: Procs, folder: Path, timeout: float = 10.0) -> int:
    """iotcore's rumqttd in a process of its own, on a free port (MQTT 5)."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = folder / "rumqttd.toml"
    conf.write_text(RUMQTTD_CONF.format(port=port))
    proc = procs.start("broker", [sys.executable, "-m", "iotcore", "--config", str(conf),
                                  "--log-level", "WARNING"], order=90)
    wait_port(port, timeout, proc.popen)
    return port


def start_mosquitto(procs: Procs, folder: Path, timeout: float = 10.0) -> int:
    """A Mosquitto of the demo's own on a free port; returns the port."""
    exe = mosquitto_path()
    if exe is None:
        raise FileNotFoundError("mosquitto")
    folder.mkdir(parents=True, exist_ok=True)
    for _ in range(3):  # a free port can be taken between the probe and the bind
        port = free_port()
        conf = folder / "mosquitto.conf"
        conf.write_text(MOSQUITTO_CONF.format(port=port, data=folder)
                        + (AS_ROOT if os.geteuid() == 0 else ""))
        proc = procs.start("broker", [exe, "-c", str(conf)], order=90)
        try:
            wait_port(port, timeout, proc.popen)
            return port
        except RuntimeError:
            if proc.popen.poll() is None:
                raise
            procs.items.remove(proc)
    raise RuntimeError("mosquitto did not start; see " + str(procs.log_dir / "broker.log"))
