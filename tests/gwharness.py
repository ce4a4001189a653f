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
    """A broker of our own on a free port, persistence on (off: `persistence=False`, a
    broker that forgets sessions and retained messages when it stops), no queue limits;
    with `acl` (mosquitto acl_file lines), what anonymous clients may read and write."""

    def __init__(self, directory: Path, acl: str | None = None,
                 persistence: bool = True) -> None:
        self.dir = directory
        self.port = free_port()
        self.conf = directory / "mosquitto.conf"
        self.acl = directory / "acl"
        (directory / "db").mkdir(exist_ok=True)
        # As root, mosquitto drops to user `mosquitto`, who can neither write its database
        # and log into a private test directory nor read files there (it then runs
        # without persistence, silently): keep the broker as the test's user.
        lines = "user root\n" if os.geteuid() == 0 else ""
        if acl is not None:
            self.acl.write_text(acl)
            lines += f"acl_file {self.acl}\n"
        self.conf.write_text(
            f"{lines}listener {self.port} 127.0.0.1\nallow_anonymous true\n"
            f"persistence {str(persistence).lower()}\n"
            f"persistence_location {directory / 'db'}/\n"
            "autosave_interval 1\nmax_queued_messages 0\nmax_queued_bytes 0\n"
            f"log_dest file {directory / 'mosquitto.log'}\n")
        self.proc: subprocess.Popen | None = None

    def set_acl(self, acl: str) -> None:
        """Rewrite the ACL and have the running broker read it again (SIGHUP)."""
        self.acl.write_text(acl)
        if self.proc is not None:
            self.proc.send_signal(signal.SIGHUP)

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
                 topic: str = "metrotrace/v1/gw/+/up", announce: bool = True) -> None:
        ring = KeyRing.load(keys_dir)
        self.public = {e.kid: e.key.public_key() for e in ring.entries}
        self.node_keys = node_keys
        self.records: dict[tuple[bytes, int], bytes] = {}
        self.duplicates = 0
        self.conflicts = 0
        self.bad_tags = 0
        self.envelopes = 0
        self.backfill_batches = 0
        self.backfill: dict[tuple[bytes, int], bool] = {}  # the flag each record came with
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
        # It plays the server: gateways publish only once the server says it is online.
        if announce:
            self.mqtt.publish("metrotrace/v1/server/status",
                              json.dumps({"state": "online"}), qos=1,
                              retain=True).wait_for_publish(10)

    def _on_message(self, c, u, message) -> None:
        if message.topic.endswith("/status"):
            self.status[message.topic] = {**json.loads(message.payload),
                                          "retained": bool(message.retain)}
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
                self.backfill.setdefault((node, seq), opened.batch.backfill)
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
                 timeout: float = 0.5, link: Path | None = None) -> None:
        self.node, self.key = node, key
        self.frames = [frame.record_frame(r, key) for r in records]
        self.seqs = [cbor2.loads(r)[3] for r in records]
        self.window, self.timeout = window, timeout
        self.link = link  # a symlink we control, standing for the board's device path
        self._io = threading.Lock()  # held while the pty is used or swapped
        self._open_pty()
        self.path = str(link) if link is not None else os.ttyname(self._slave)
        self.acked = 0  # index of the first unacknowledged frame
        self.goback = 0
        self.bad_acks = 0
        self.done = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _open_pty(self) -> None:
        self.master, self._slave = os.openpty()
        tty.setraw(self._slave)  # the gateway must see the bytes exactly
        tty.setraw(self.master)
        os.set_blocking(self.master, False)
        if self.link is not None:
            tmp = self.link.with_name(self.link.name + ".new")
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(os.ttyname(self._slave))
            os.replace(tmp, self.link)

    def replug(self, gap: float) -> None:
        """The port vanishes (pty closed, device path gone) and, `gap` seconds later,
        comes back under the same path (a new pty); the node keeps its state."""
        with self._io:
            os.close(self.master)
            os.close(self._slave)
            self.master = self._slave = -1
            if self.link is not None:
                self.link.unlink()
        time.sleep(gap)
        with self._io:
            self._open_pty()

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
            with self._io:
                if self.master < 0:  # unplugged: what the node sends now is lost
                    out = bytearray()
                    readable = writable = []
                else:
                    want_write = [self.master] if out else []
                    readable, writable, _ = select.select([self.master], want_write, [], 0.05)
                if writable:
                    try:
                        del out[:os.write(self.master, out)]
                    except BlockingIOError:  # the pty is full: next turn
                        pass
                    except OSError:  # nobody at the other end: lost on the line
                        out = bytearray()
                data = b""
                if readable:
                    with contextlib.suppress(OSError):
                        data = os.read(self.master, 65536)
            if self.master < 0:
                time.sleep(0.02)
            if data:
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
                # Go back to the oldest unacknowledged record, but first finish the frame
                # the line is in the middle of (up to its closing delimiter), as a UART
                # node does: cut short, it would reach the gateway as a damaged frame.
                nxt, out = self.acked, out[:out.find(b"\x00") + 1]
                self.goback += 1
                last_progress = time.monotonic()
        # Every record is acknowledged, but the line may be in the middle of a resent
        # frame: finish it, as a UART node does, so that the next bytes on the line do
        # not meet half a frame.
        if not self._stop.is_set():
            self._finish(out[:out.find(b"\x00") + 1])
        if self.acked >= len(self.frames):
            self.done.set()

    def _finish(self, rest: bytearray) -> None:
        deadline = time.monotonic() + 5
        while rest and time.monotonic() < deadline:
            with self._io:
                if self.master < 0:
                    return
                _, writable, _ = select.select([], [self.master], [], 0.05)
                if writable:
                    try:
                        del rest[:os.write(self.master, rest)]
                    except BlockingIOError:
                        pass
                    except OSError:
                        return

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        if self.master >= 0:
            os.close(self.master)
            os.close(self._slave)


def _remaining_length(buf: bytes | bytearray, pos: int) -> tuple[int, int] | None:
    """MQTT variable byte integer at pos: (value, bytes used), or None if incomplete."""
    value, shift = 0, 0
    for i in range(4):
        if pos + i >= len(buf):
            return None
        value |= (buf[pos + i] & 0x7F) << shift
        if not buf[pos + i] & 0x80:
            return value, i + 1
        shift += 7
    raise ValueError("malformed remaining length")


class PubackDropper:
    """A TCP proxy between a client and Mosquitto that reads the MQTT packets going
    through it. When armed (`drop_next_puback`), it lets the client's next PUBLISH on
    `topic` reach the broker, then swallows the broker's PUBACK for it and cuts both
    connections: the broker has the message, the client never hears so. Each such
    loss is recorded with the payload whose PUBACK was lost."""

    def __init__(self, upstream_port: int, topic: str) -> None:
        self.upstream = upstream_port
        self.topic = topic.encode()
        self.port = free_port()
        self.lost: list[bytes] = []  # payloads whose PUBACK never reached the client
        self.publishes = 0  # PUBLISH packets on `topic` passed to the broker
        self._armed = 0
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def drop_next_puback(self) -> None:
        with self._lock:
            self._armed += 1

    def _accept(self) -> None:
        while True:
            try:
                down, _ = self._server.accept()
            except OSError:
                return
            try:
                up = socket.create_connection(("127.0.0.1", self.upstream))
            except OSError:
                down.close()
                continue
            inflight: dict[int, bytes] = {}  # packet id -> payload, this connection
            threading.Thread(target=self._pump, args=(down, up, inflight, True),
                             daemon=True).start()
            threading.Thread(target=self._pump, args=(up, down, inflight, False),
                             daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, inflight: dict,
              to_broker: bool) -> None:
        buf = bytearray()
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                buf += data
                while True:
                    length = _remaining_length(buf, 1)
                    if length is None or len(buf) < 1 + length[1] + length[0]:
                        break
                    end = 1 + length[1] + length[0]
                    packet, body = bytes(buf[:end]), bytes(buf[1 + length[1]:end])
                    del buf[:end]
                    if not self._forward(packet, body, inflight, to_broker):
                        src.close()
                        dst.close()
                        return
                    dst.sendall(packet)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_RDWR)

    def _forward(self, packet: bytes, body: bytes, inflight: dict, to_broker: bool) -> bool:
        kind, flags = packet[0] >> 4, packet[0] & 0x0F
        if to_broker and kind == 3 and (flags >> 1) & 3:  # PUBLISH, QoS 1 or 2
            topic_len = int.from_bytes(body[:2], "big")
            if body[2:2 + topic_len] == self.topic:
                pid_at = 2 + topic_len
                props = _remaining_length(body, pid_at + 2)
                payload = body[pid_at + 2 + props[1] + props[0]:]
                inflight[int.from_bytes(body[pid_at:pid_at + 2], "big")] = payload
                self.publishes += 1
        elif not to_broker and kind == 4:  # PUBACK from the broker
            payload = inflight.pop(int.from_bytes(body[:2], "big"), None)
            with self._lock:
                if payload is not None and self._armed:
                    self._armed -= 1
                    self.lost.append(payload)
                    return False
        return True

    def close(self) -> None:
        self._server.close()


class TlsMosquitto(Mosquitto):
    """Mosquitto with a plain listener (for test clients) and a TLS listener that wants
    a username and password (for the gateway), its certificate from a CA made here."""

    def __init__(self, directory: Path, username: str, password: str) -> None:
        super().__init__(directory)
        self.tls_port = free_port()
        self.ca_file = directory / "ca.pem"
        cert, key = directory / "broker.pem", directory / "broker.key"
        _make_ca_and_server_cert(self.ca_file, cert, key)
        passwd = directory / "passwd"
        passwd.write_text("")
        subprocess.run(["mosquitto_passwd", "-b", str(passwd), username, password],
                       check=True, capture_output=True)
        passwd.chmod(0o600)
        base = self.conf.read_text().replace(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\n", "")
        self.conf.write_text(
            f"per_listener_settings true\n{base}"
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
            f"listener {self.tls_port} 127.0.0.1\nallow_anonymous false\n"
            f"password_file {passwd}\ncafile {self.ca_file}\ncertfile {cert}\n"
            f"keyfile {key}\n")


def _make_ca_and_server_cert(ca_file: Path, cert_file: Path, key_file: Path) -> None:
    """A self-signed CA and a certificate for 127.0.0.1/localhost that it signs."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "metrotrace test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                       False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .sign(ca_key, hashes.SHA256()))
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_file.chmod(0o600)


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
    broker = {"port": broker_port, "keepalive_s": 5, **settings.pop("broker", {})}

    def table(d: dict) -> str:
        return "\n".join(f"{k} = {json.dumps(v)}" for k, v in d.items())
    config = directory / "gateway.toml"
    config.write_text(
        f'[gateway]\nid = "gw-test"\nsite = "test-site"\n\n'
        f"[broker]\n{table(broker)}\n\n"
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
