"""The running gateway: config in, threads wired, until told to stop.

    serial port thread(s) ──┐
    Wi-Fi ingress thread  ──┼─▶ Intake (verify, store, commit) ─▶ acks back to the node
                            │        │
                            │     Outbox (SQLite WAL)
                            │        │
    uplink thread (this one) ◀───────┘  seal ─▶ publish ─▶ PUBACK ─▶ delete

Invariant: all state that must outlive the process is in the outbox; a gateway
started on the same config after a kill -9 carries on where the disk says it was.
"""

from __future__ import annotations

import threading
import time

from .batcher import Batcher
from .config import GatewayConfig, load_node_keys
from .counters import Counters, log_event
from .ingress_mqtt import WifiIngress
from .ingress_serial import SerialIngress
from .intake import Alert, Intake
from .keys import KeyRing
from .outbox import Outbox
from .uplink import Security, Uplink
from .verify import Verifier


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Gateway:
    def __init__(self, config: GatewayConfig, clock=now_ms) -> None:
        self.config = config
        self.clock = clock
        self.keyring = KeyRing.load(config.key_dir)
        self.node_keys = load_node_keys(config.node_keys)
        self.outbox = Outbox(config.outbox_path, config.outbox_max_records, config.synchronous,
                             clock)
        self.counters = Counters()
        self.counters.queued = self.outbox.depth
        self.inventory = self.outbox.firmware()
        self.batcher = Batcher(config.gateway, config.up_topic, self.keyring,
                               config.batch_max_records, config.batch_window_ms,
                               config.backfill_after_s * 1000)
        self.uplink = Uplink(
            host=config.broker_host, port=config.broker_port, client_id=config.mqtt_client_id,
            keepalive=config.keepalive_s, up_topic=config.up_topic,
            status_topic=config.status_topic, alert_topic=config.alert_topic,
            outbox=self.outbox, batcher=self.batcher, counters=self.counters,
            window=config.inflight, birth=self.birth, clock=clock,
            status_interval_s=config.status_interval_s, security=self.security(),
            prune=self.prune)
        self.intake = Intake(Verifier(self.node_keys, seen=self.outbox), self.outbox,
                             self.counters, clock, self._alert, self._firmware)
        self.serial = [SerialIngress(p, config.baud, self.intake, self.counters)
                       for p in config.serial_ports]
        self.wifi = None
        if config.wifi:
            shared = not config.wifi_host and not config.wifi_port  # the uplink's broker
            self.wifi = WifiIngress(config.wifi_host or config.broker_host,
                                    config.wifi_port or config.broker_port,
                                    config.mqtt_client_id + "-nodes", self.intake,
                                    self.security() if shared else Security())
        self.stop = threading.Event()

    def security(self) -> Security:
        c = self.config
        return Security(c.tls, c.ca_file, c.cert_file, c.key_file, c.username, c.password)

    def prune(self) -> None:
        removed = self.outbox.prune(self.config.seen_keep_per_node,
                                    self.config.seen_keep_days * 86_400_000)
        if removed:
            log_event("seen_pruned", digests=removed)

    def birth(self) -> dict:
        now = self.clock()
        nodes = {node.hex(): None for node in self.node_keys}
        nodes.update({node.hex(): fw for node, fw in self.inventory.items()})
        return {"state": "online", "gateway": self.config.gateway, "site": self.config.site,
                "kid": self.keyring.signing(now).kid.hex(),
                "keys": self.keyring.announce(now), "nodes": nodes}

    def _alert(self, alert: Alert) -> None:
        self.uplink.alert({"kind": alert.kind, "gateway": self.config.gateway,
                           "node": alert.node.hex(), "seq": alert.seq,
                           "detail": alert.detail, "t": self.clock()})

    def _firmware(self, node: bytes, fw: str) -> None:
        if self.inventory.get(node) != fw:
            self.inventory[node] = fw
            self.uplink.rebirth()

    def _thread(self, name: str, target) -> threading.Thread:
        def guarded() -> None:
            try:
                target(self.stop)
            except Exception as e:  # a worker's outermost loop: log, count, stop the rest
                log_event("worker_failed", worker=name, error=repr(e))
                self.counters.add("worker_failed")
                self.stop.set()
                raise
        thread = threading.Thread(target=guarded, name=name, daemon=True)
        thread.start()
        return thread

    def run(self) -> None:
        """Serve until `stop` is set (by a signal handler, or a test)."""
        log_event("gateway_start", gateway=self.config.gateway,
                  kid=self.keyring.signing(self.clock()).kid.hex(),
                  queued=self.outbox.depth, ports=list(self.config.serial_ports),
                  wifi=self.config.wifi)
        threads = [self._thread(f"serial:{s.port}", s.run) for s in self.serial]
        if self.wifi is not None:
            threads.append(self._thread("wifi", self.wifi.run))
        try:
            self.uplink.run(self.stop)
        finally:
            self.stop.set()
            for thread in threads:
                thread.join(5)
            self.outbox.close()
            log_event("gateway_stop", **self.counters.snapshot())
