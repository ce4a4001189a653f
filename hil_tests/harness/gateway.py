"""The real gateway as a process, reading the DUT's link, and what it publishes.

`GatewayRun` writes a gateway directory (keys, nodes.json with the DUT's key,
gateway.toml naming the link's port), starts its own Mosquitto and runs
`metrotrace gateway run --config gateway.toml` exactly as an installer would. An
`Uplink` subscriber opens every signed batch with the gateway's public key, re-checks
each record's node tag, and keeps the records by (node, seq) for the test to expect.

Invariant: a record counts as delivered only when it came out of a signed envelope
that verified, with a good node tag; anything else is kept in `errors`.
"""

from __future__ import annotations

import hmac
import subprocess
import sys
import threading
import time
from pathlib import Path

from metrotrace.firmware.metro.wire import record
from metrotrace.gateway import envelope
from metrotrace.gateway.keys import KeyRing
from tests.gwharness import Mosquitto, client, gateway_dir, wait_for

from .console import ExpectTimeout


class Uplink:
    def __init__(self, port: int, keys_dir: Path, node_keys: dict[bytes, bytes]) -> None:
        ring = KeyRing.load(keys_dir)
        self.public = {e.kid: e.key.public_key() for e in ring.entries}
        self.node_keys = node_keys
        self.records: dict[tuple[bytes, int], dict] = {}
        self.status: dict = {}
        self.errors: list[str] = []
        self._cond = threading.Condition()
        subscribed = threading.Event()
        self.mqtt = client(port, f"hil-uplink-{id(self)}", persistent=False)
        self.mqtt.on_connect = lambda c, u, f, r, p: c.subscribe(
            [("metrotrace/v1/gw/+/up", 1), ("metrotrace/v1/gw/+/status", 1)])
        self.mqtt.on_subscribe = lambda *a: subscribed.set()
        self.mqtt.on_message = self._on_message
        self.mqtt.loop_start()
        if not subscribed.wait(10):
            raise ExpectTimeout("the uplink subscriber could not subscribe")
        # It plays the server: gateways publish only once the server says it is online.
        self.mqtt.publish("metrotrace/v1/server/status", '{"state": "online"}', qos=1,
                          retain=True).wait_for_publish(10)

    def _on_message(self, c, u, message) -> None:
        import json

        with self._cond:
            if message.topic.endswith("/status"):
                self.status = json.loads(message.payload)
            else:
                self._batch(message.payload, message.topic)
            self._cond.notify_all()

    def _batch(self, payload: bytes, topic: str) -> None:
        try:
            opened = envelope.open_envelope(payload, topic, self.public.get)
        except envelope.EnvelopeError as e:
            self.errors.append(f"envelope: {e}")
            return
        for body, tag in opened.batch.records:
            fields = record.decode(body)
            key = self.node_keys.get(fields["node"])
            if key is None or not hmac.compare_digest(
                    hmac.new(key, body, "sha256").digest(), tag):
                self.errors.append(f"node tag: record {fields['seq']}")
                continue
            fields["kind"] = record.KIND_NAMES[fields["kind"]]
            self.records[(fields["node"], fields["seq"])] = fields

    def expect_record(self, node: bytes, seq: int, timeout: float = 20.0) -> dict:
        deadline = time.monotonic() + timeout
        with self._cond:
            while (node, seq) not in self.records:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ExpectTimeout(f"record {node.hex()}/{seq} not forwarded within"
                                        f" {timeout} s; forwarded: {sorted(self.records)};"
                                        f" errors: {self.errors}")
                self._cond.wait(min(left, 0.1))
            return self.records[(node, seq)]

    def expect_where(self, where, what: str, timeout: float = 20.0) -> dict:
        """The first forwarded record (lowest seq) for which `where` holds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = sorted((r for r in self.records.values() if where(r)),
                               key=lambda r: r["seq"])
                if found:
                    return found[0]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ExpectTimeout(f"no {what} forwarded within {timeout} s; "
                                        f"errors: {self.errors}")
                self._cond.wait(min(left, 0.1))

    def close(self) -> None:
        self.mqtt.loop_stop()
        self.mqtt.disconnect()


class GatewayRun:
    def __init__(self, workdir: Path, nodes: dict[bytes, bytes], ports: list[str]) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.broker = Mosquitto(workdir)
        self.broker.start()
        self.config = gateway_dir(workdir, self.broker.port, nodes, ports)
        self.log = workdir / "gateway.log"
        with open(self.log, "ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "metrotrace.tools.cli", "gateway", "run", "--config",
                 str(self.config)], stdout=subprocess.DEVNULL, stderr=err)
        self.uplink = Uplink(self.broker.port, workdir / "keys", nodes)
        wait_for(lambda: b"serial_open" in self.log.read_bytes() or self.proc.poll() is not None,
                 20, "the gateway to open the link")
        if self.proc.poll() is not None:
            raise ExpectTimeout(f"the gateway exited: {self.log_tail()}")

    def log_tail(self, n: int = 3000) -> str:
        return self.log.read_bytes()[-n:].decode(errors="replace")

    def close(self) -> None:
        self.uplink.close()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.broker.stop()

    def __enter__(self) -> GatewayRun:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
