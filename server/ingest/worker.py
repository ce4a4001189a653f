"""The MQTT adapter around the ingest core: one worker process of N on a shared subscription.

Invariant: a message is acknowledged (PUBACK) only after its outcome is committed to the
store (messages that arrived together are stored in one transaction, then each is
acknowledged, in order), so a worker that dies or loses its database mid-message leaves it
with the broker, which delivers it again (the store makes the second delivery harmless). A
message the core cannot judge because of a bug is rejected as `internal` and acknowledged,
so it cannot jam the queue; the worker keeps running either way. Before judging a group the
worker follows the registry (registry/watch.py: one counter read at most every 250 ms), so
a revocation or a new key takes effect in a running worker, not only at its next restart.

Topics (docs/server.md): subscribes `$share/metrotrace/metrotrace/v1/gw/+/up` (QoS 1);
publishes `metrotrace/v1/server/status` retained {"state": "online"} (heartbeat, so one
worker's Last Will "offline" does not hide the others for long) and alerts on
`metrotrace/v1/alerts/{site}` (QoS 1): ingest's forgeries, and the drift monitor's state
changes when `monitor_every_s` > 0 (monitoring.py; one worker per store runs it).
"""

from __future__ import annotations

import json
import logging
import queue
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ..registry.watch import CHECK_EVERY_MS, RegistryWatch
from ..store import open_store
from ..store.rows import AlertRow, RejectRow
from .core import SHARED_SUBSCRIPTION, Ingest

STATUS_TOPIC = "metrotrace/v1/server/status"
ALERT_TOPIC = "metrotrace/v1/alerts/{site}"
# Messages stored per transaction at most: a group is whatever has arrived while the last
# one was stored (no waiting), so a quiet worker commits each message alone at once.
MAX_GROUP = 64
ONLINE = json.dumps({"state": "online"})
OFFLINE = json.dumps({"state": "offline"})

log = logging.getLogger("metrotrace.server.ingest")


def _db_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [sqlite3.Error]
    try:
        import psycopg

        errors.append(psycopg.Error)
    except ImportError:  # the PostgreSQL driver is optional on an embedded install
        pass
    return tuple(errors)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def alert_json(alert: AlertRow) -> str:
    return json.dumps({"id": alert.id, "t": alert.t, "site": alert.site, "kind": alert.kind,
                       "gateway": alert.gateway, "node": alert.node.hex() if alert.node else None,
                       "seq": alert.seq, "instrument": alert.instrument,
                       "detail": alert.detail}, sort_keys=True)


@dataclass
class BrokerConfig:
    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = None
    tls_ca: str | None = None  # CA file: connect with TLS and check the broker's certificate
    session_expiry_s: int = 86_400  # queued messages survive a worker restart this long


class Worker:
    def __init__(self, store_url: str, broker: BrokerConfig, client_id: str,
                 heartbeat_s: float = 10.0, max_group: int = MAX_GROUP,
                 monitor_every_s: float = 0.0,
                 registry_check_ms: int = CHECK_EVERY_MS, drift_settings=None) -> None:
        self.store_url, self.broker, self.client_id = store_url, broker, client_id
        self.monitor_every_s = monitor_every_s  # 0: this worker never runs the drift monitor
        self.drift_settings = drift_settings  # metrology.settings.Settings; None: defaults
        self.heartbeat_s = heartbeat_s
        self.max_group = max_group
        self._inbox: queue.Queue = queue.Queue()
        self._generation = 0
        self.counts: Counter[str] = Counter()
        self._db_errors = _db_errors()
        self._store_failed = threading.Event()
        # called with the drift monitor's states after each of its passes (the exporter)
        self.monitor_listeners: list[Callable[[Mapping[str, str]], None]] = []
        self.registry_check_ms = registry_check_ms
        self.store = open_store(store_url)
        self._watch = RegistryWatch(self.store, registry_check_ms)  # before the first load
        self.ingest = Ingest(self.store)
        self.client = self._client()

    def _client(self) -> mqtt.Client:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id,
                             protocol=mqtt.MQTTv5, manual_ack=True)
        if self.broker.username:
            client.username_pw_set(self.broker.username, self.broker.password)
        if self.broker.tls_ca:
            client.tls_set(ca_certs=self.broker.tls_ca)
        client.will_set(STATUS_TOPIC, OFFLINE, qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        client.reconnect_delay_set(1, 30)
        return client

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("broker refused the connection: %s", reason_code)
            return
        client.subscribe(SHARED_SUBSCRIPTION, qos=1)
        client.publish(STATUS_TOPIC, ONLINE, qos=1, retain=True)
        log.info("%s connected to %s:%d", self.client_id, self.broker.host, self.broker.port)

    def _on_message(self, client, userdata, msg) -> None:
        # paho's network thread only queues: the consumer thread groups what has arrived.
        self._inbox.put((self._generation, client, msg))

    def _consume(self, stop: threading.Event) -> None:
        """Take what has arrived (up to max_group messages, no waiting for more), store it
        in one transaction, then acknowledge each message, in order of arrival."""
        while not stop.is_set():
            try:
                group = [self._inbox.get(timeout=0.2)]
            except queue.Empty:
                continue
            while len(group) < self.max_group:
                try:
                    group.append(self._inbox.get_nowait())
                except queue.Empty:
                    break
            # Messages of a connection dropped since (store recovery) are not ours to
            # acknowledge any more: the broker delivers them again.
            group = [(c, m) for g, c, m in group if g == self._generation]
            if group and not self._store_failed.is_set():
                self._handle_group(group)

    def _handle_group(self, group: list) -> None:
        received = now_ms()
        try:
            self._follow_registry(received)
            outcomes = self.ingest.handle_many([(m.topic, m.payload, received)
                                                for _, m in group])
        except self._db_errors as e:
            # Not acknowledged: the broker delivers them again once the store is back.
            log.error("store failed, %d messages left with the broker: %s", len(group), e)
            self.counts["store_error"] += 1
            self._store_failed.set()
            return
        except Exception:  # outermost loop of the worker: find the message at fault alone
            log.exception("ingest failed on a group of %d messages; one by one", len(group))
            for client, msg in group:
                if not self._handle_one(client, msg):
                    return
            return
        for (client, msg), outcome in zip(group, outcomes, strict=True):
            self._acknowledge(client, msg, outcome)

    def _follow_registry(self, now: int) -> None:
        """Revocations, rotations and new nodes take effect before the next group is
        judged (checked at most every registry_check_ms: one read of a counter)."""
        if self._watch.changed(now):
            self.ingest.reload(now)
            self.counts["registry_reloads"] += 1
            log.info("registry changed (version %d): reloaded", self._watch.version)

    def _handle_one(self, client, msg) -> bool:
        try:
            outcome = self.ingest.handle(msg.topic, msg.payload, now_ms())
        except self._db_errors as e:
            log.error("store failed, message left with the broker: %s", e)
            self.counts["store_error"] += 1
            self._store_failed.set()
            return False
        except Exception as e:  # outermost loop of the worker: a bug must not stop ingest
            log.exception("ingest failed on a message from %s", msg.topic)
            self.counts["internal"] += 1
            self.store.add_reject(RejectRow(now_ms(), "internal", repr(e)[:500], msg.topic,
                                            data=msg.payload[:65536]))
            client.ack(msg.mid, msg.qos)
            return True
        self._acknowledge(client, msg, outcome)
        return True

    def _acknowledge(self, client, msg, outcome) -> None:
        self.counts[outcome.reason or outcome.status] += 1
        self.counts["records"] += outcome.inserted
        for alert in outcome.alerts:
            client.publish(ALERT_TOPIC.format(site=alert.site), alert_json(alert), qos=1)
        client.ack(msg.mid, msg.qos)

    def run(self, stop: threading.Event) -> None:
        """Consume until `stop` is set; then say offline and disconnect cleanly."""
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.broker.session_expiry_s
        self.client.connect(self.broker.host, self.broker.port, keepalive=30, clean_start=False,
                            properties=props)
        self.client.loop_start()
        consumer = threading.Thread(target=self._consume, args=(stop,), name="ingest",
                                    daemon=True)
        consumer.start()
        monitor = self._start_monitor(stop)
        try:
            while not stop.wait(self.heartbeat_s if not self._store_failed.is_set() else 0):
                if self._store_failed.is_set():
                    self._recover_store(stop)
                elif self.client.is_connected():
                    self.client.publish(STATUS_TOPIC, ONLINE, qos=1, retain=True)
        finally:
            consumer.join()
            if monitor is not None:
                monitor.join()
            self.client.publish(STATUS_TOPIC, OFFLINE, qos=1, retain=True).wait_for_publish(5)
            self.client.disconnect()
            self.client.loop_stop()
            self.store.close()

    def _start_monitor(self, stop: threading.Event) -> threading.Thread | None:
        if self.monitor_every_s <= 0:
            return None
        from .monitoring import MonitorLoop

        loop = MonitorLoop(self.store_url, self.monitor_every_s, self._publish_alert, now_ms,
                           self.counts, self._monitor_states, self.drift_settings)
        thread = threading.Thread(target=loop.run, args=(stop,), name="monitor", daemon=True)
        thread.start()
        return thread

    def _monitor_states(self, states: Mapping[str, str]) -> None:
        for listener in self.monitor_listeners:
            listener(states)

    def _publish_alert(self, topic: str, payload: str) -> None:
        # self.client at call time: store recovery replaces the client
        self.client.publish(topic, payload, qos=1)

    def _recover_store(self, stop: threading.Event) -> None:
        """Drop the connection (unacknowledged messages return), reopen the store, go on."""
        self.client.disconnect()
        self.client.loop_stop()
        self._generation += 1  # what the old connection queued is never acknowledged
        while not stop.is_set():
            try:
                self.store.close()
                self.store = open_store(self.store_url)
                listeners = self.ingest.listeners
                self._watch = RegistryWatch(self.store, self.registry_check_ms)
                self.ingest = Ingest(self.store)
                self.ingest.listeners = listeners
                break
            except self._db_errors as e:
                log.error("store still unavailable: %s", e)
                stop.wait(5)
        self._store_failed.clear()
        self.client = self._client()
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.broker.session_expiry_s
        self.client.connect(self.broker.host, self.broker.port, keepalive=30, clean_start=False,
                            properties=props)
        self.client.loop_start()
