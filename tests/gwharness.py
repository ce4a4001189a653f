"""Real parts for gateway tests: a private Mosquitto, a receiver that opens envelopes,
a node that speaks the UART protocol over a real pty, and a gateway directory.

The receiver stands in for the server (built elsewhere): it opens every envelope with
gateway/envelope.py against the gateway's public keys, re-checks each node tag, and
deduplicates on (node, seq), counting duplicates and any (node, seq) seen with other
bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import tty
from pathlib import Path

import cbor2
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from metrotrace.firmware.metro.wire import frame
from metrotrace.gateway import envelope
from metrotrace.gateway.keys import KeyRing

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, what: str, step: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Mosquitto:
    """A broker of our own on a free port, persistence on, no queue limits."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.port = free_port()
        self.conf = directory / "mosquitto.conf"
        (directory / "db").mkdir(exist_ok=True)
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
            f"persistence true\npersistence_location {directory / 'db'}/\n"
            "autosave_interval 1\nmax_queued_messages 0\nmax_queued_bytes 0\n"
            f"log_dest file {directory / 'mosquitto.log'}\n")
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(["mosquitto", "-c", str(self.conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def accepting() -> bool:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return True
            except OSError:
                return False
        wait_for(accepting, 10, "mosquitto to listen")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)  # saves its database on the way out
            self.proc.wait(10)
            self.proc = None


def client(port: int, client_id: str, persistent: bool = True) -> mqtt.Client:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                    protocol=mqtt.MQTTv5)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600 if persistent else 0
    c.reconnect_delay_set(0.2, 1)
    c.connect("127.0.0.1", port, 30, clean_start=not persistent, properties=props)
    return c


class Receiver:
    """Subscribes to signed batches, opens them, dedups records on (node, seq)."""

    def __init__(self, port: int, keys_dir: Path, node_keys: dict[bytes, bytes],
                 topic: str = "metrotrace/v1/gw/+/up") -> None:
        ring = KeyRing.load(keys_dir)
        self.public = {e.kid: e.key.public_key() for e in ring.entries}
        self.node_keys = node_keys
        self.records: dict[tuple[bytes, int], bytes] = {}
        self.duplicates = 0
        self.conflicts = 0
        self.bad_tags = 0
        self.envelopes = 0
        self.backfill_batches = 0
        self.status: dict[str, dict] = {}
        self.alerts: list[dict] = []
        self.errors: list[str] = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.mqtt = client(port, f"receiver-{os.getpid()}-{id(self)}")
        self.mqtt.on_connect = lambda c, u, f, r, p: c.subscribe(
            [(topic, 1), ("metrotrace/v1/gw/+/status", 1), ("metrotrace/v1/alerts/#", 1)])
        self.mqtt.on_subscribe = lambda *a: self.subscribed.set()
        self.mqtt.on_message = self._on_message
        self.mqtt.loop_start()
        assert self.subscribed.wait(10), "receiver did not subscribe"

    def _on_message(self, c, u, message) -> None:
        if message.topic.endswith("/status"):
            self.status[message.topic] = json.loads(message.payload)
            return
        if "/alerts/" in message.topic:
            self.alerts.append(json.loads(message.payload))
            return
        try:
            opened = envelope.open_envelope(message.payload, message.topic, self.public.get)
        except envelope.EnvelopeError as e:
            self.errors.append(str(e))
            return
        with self.lock:
            self.envelopes += 1
            self.backfill_batches += opened.batch.backfill
            for rec, tag in opened.batch.records:
                fields = cbor2.loads(rec)
                node, seq = fields[2], fields[3]
                key = self.node_keys.get(node)
                if key is None or not hmac.compare_digest(
                        hmac.new(key, rec, "sha256").digest(), tag):
                    self.bad_tags += 1
                    continue
                digest = hashlib.sha256(rec).digest()
                known = self.records.setdefault((node, seq), digest)
                if known is not digest:
                    if known == digest:
                        self.duplicates += 1
                    else:
                        self.conflicts += 1

    def count(self) -> int:
        with self.lock:
            return len(self.records)

    def close(self) -> None:
        self.mqtt.loop_stop()
        self.mqtt.disconnect()


class PtyNode:
    """A node on the far end of a real pty: sends its record frames oldest first,
    reads tagged acknowledgements, and goes back to its oldest unacknowledged record
    when none arrive (go-back-N, docs/protocol.md §5)."""

    def __init__(self, node: bytes, key: bytes, records: list[bytes], window: int = 4000,
                 timeout: float = 0.5) -> None:
        self.node, self.key = node, key
        self.frames = [frame.record_frame(r, key) for r in records]
        self.seqs = [cbor2.loads(r)[3] for r in records]
        self.window, self.timeout = window, timeout
        self.master, self._slave = os.openpty()
        tty.setraw(self._slave)  # the gateway must see the bytes exactly
        tty.setraw(self.master)
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self._slave)
        self.acked = 0  # index of the first unacknowledged frame
        self.goback = 0
        self.bad_acks = 0
        self.done = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> PtyNode:
        self._thread.start()
        return self

    def _on_ack(self, seq: int) -> None:
        while self.acked < len(self.seqs) and self.seqs[self.acked] <= seq:
            self.acked += 1

    def _run(self) -> None:
        decoder = frame.Decoder()
        nxt, out, last_progress = 0, bytearray(), time.monotonic()
        while not self._stop.is_set() and self.acked < len(self.frames):
            while not out and nxt < len(self.frames) and nxt - self.acked < self.window:
                out += b"".join(self.frames[nxt:nxt + 64])
                nxt = min(nxt + 64, len(self.frames))
            want_write = [self.master] if out else []
            readable, writable, _ = select.select([self.master], want_write, [], 0.05)
            if writable:
                with contextlib.suppress(BlockingIOError):  # the pty is full: next turn
                    del out[:os.write(self.master, out)]
            if readable:
                try:
                    data = os.read(self.master, 65536)
                except (BlockingIOError, OSError):
                    data = b""
                before = self.acked
                for item in decoder.feed(data):
                    if isinstance(item, frame.Frame):
                        value = frame.parse_control(item, self.node, self.key)
                        if isinstance(value, frame.Reject):
                            self.bad_acks += 1
                        else:
                            self._on_ack(value)
                if self.acked > before:
                    last_progress = time.monotonic()
            if time.monotonic() - last_progress > self.timeout and self.acked < nxt:
                nxt, out = self.acked, bytearray()  # go back to the oldest unacknowledged
                self.goback += 1
                last_progress = time.monotonic()
        if self.acked >= len(self.frames):
            self.done.set()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        os.close(self.master)
        os.close(self._slave)


def gateway_dir(directory: Path, broker_port: int, nodes: dict[bytes, bytes],
                ports: list[str] = (), **settings) -> Path:
    """keys, nodes.json and gateway.toml for a gateway `gw-test`; returns the config."""
    KeyRing.create(directory / "keys", int(time.time() * 1000))
    registry = {"nodes": {n.hex(): {"key": k.hex()} for n, k in nodes.items()}}
    (directory / "nodes.json").write_text(json.dumps(registry))
    batch = {"max_records": 500, "window_ms": 50, "inflight": 16, "backfill_after_s": 3600}
    batch.update(settings.pop("batch", {}))
    outbox = {"path": "outbox.sqlite", "max_records": 1_000_000}
    outbox.update(settings.pop("outbox", {}))
    wifi = settings.pop("wifi", False)

    def table(d: dict) -> str:
        return "\n".join(f"{k} = {json.dumps(v)}" for k, v in d.items())
    config = directory / "gateway.toml"
    config.write_text(
        f'[gateway]\nid = "gw-test"\nsite = "test-site"\n\n'
        f"[broker]\nport = {broker_port}\nkeepalive_s = 5\n\n"
        f"[serial]\nports = {json.dumps(list(ports))}\n\n"
        f"[wifi]\nenabled = {json.dumps(wifi)}\n\n"
        f"[outbox]\n{table(outbox)}\n\n[batch]\n{table(batch)}\n\n"
        f"[status]\ninterval_s = {settings.pop('status_interval_s', 1)}\n")
    return config


def start_gateway(config: Path, log: Path) -> subprocess.Popen:
    with open(log, "ab") as err:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "metrotrace.tools.cli", "gateway", "run", "--config",
             str(config)], stdout=subprocess.DEVNULL, stderr=err)
