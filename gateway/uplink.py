"""Uplink: signed batches from the outbox to the broker, deleted only on PUBACK.

The paho-mqtt adapter around Batcher (what to seal), Window (how much in flight) and
Backoff (when to reconnect). One thread runs `run()`; paho's network thread only
queues what it hears (PUBACKs, server status, connection loss) for that thread.

- MQTT 5, QoS 1, a fixed client id with clean_start=False and a session expiry: the
  broker keeps the gateway's subscriptions (server status) while it is away.
- Last Will: `{"state": "offline"}` retained on the status topic; on every connect a
  retained birth message (gateway id, signing kid, announced keys, node firmware).
- Each connection is a fresh paho client. When one drops, the batches it had in flight
  are published again from the outbox on the next connection: paho's own resend queue
  is never relied on, and never holds more than the window (paho-mqtt issue #377).
- Records are sealed into batches only while publishing is possible, so what waited out
  an outage is sealed later, with the backfill flag.
- Nothing is published until `metrotrace/v1/server/status` (retained) says online, and
  nothing new while it says offline: on a broker where no server has subscribed yet,
  a batch would be acknowledged by the broker and then dropped, with the records
  already deleted from the outbox. What the status said is forgotten on every connect
  and heard again from the subscription's retained copy: a broker that restarted
  without its state (persistence off, database lost) has no server subscription and
  no retained status until a server connects again.
- Alerts are written to the outbox first and published QoS 1 from there; each is
  deleted on its PUBACK, so an alert raised while the broker is away, or just before
  a kill -9, is published when the gateway is back.
- A publish the broker refuses (a PUBACK with a failure reason: an ACL's "Not
  authorized", a quota) is counted (`rejected`: `alert_refused`, `broker_refused`),
  logged with the reason, kept, and tried again only after a back-off (1 s doubling
  to 60 s, reset by the next success); meanwhile no more alerts, or no more batches,
  are published. Trying again at once would only be refused again, in a busy loop.
- PUBACKs heard in one turn are applied in one transaction, and as many batches as
  the window has room for are sealed in one: one commit each, not one per batch
  (not fsynced: nothing is acknowledged on them; gateway/outbox.py).
- TLS (server CA, optional client certificate) and username/password per gateway.toml.

Invariant: a batch leaves the outbox only on a successful PUBACK for a publish of it.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from .batcher import Batcher
from .counters import Counters, log_event
from .outbox import Outbox
from .window import Backoff, Window

SERVER_STATUS = "metrotrace/v1/server/status"
SESSION_EXPIRY_S = 7 * 24 * 3600


@dataclass(frozen=True)
class Security:
    """How to reach the broker: TLS files and credentials (all optional)."""
    tls: bool = False
    ca_file: str | None = None  # None: the system's trusted CAs
    cert_file: str | None = None  # client certificate, for brokers that require one
    key_file: str | None = None
    username: str | None = None
    password: str | None = None

    def apply(self, client: mqtt.Client) -> None:
        if self.tls:
            client.tls_set(ca_certs=self.ca_file, certfile=self.cert_file,
                           keyfile=self.key_file)
        if self.username is not None:
            client.username_pw_set(self.username, self.password)


class Uplink:
    def __init__(self, *, host: str, port: int, client_id: str, keepalive: int,
                 up_topic: str, status_topic: str, alert_topic: str, outbox: Outbox,
                 batcher: Batcher, counters: Counters, window: int,
                 birth: Callable[[], dict], clock: Callable[[], int],
                 status_interval_s: float = 30.0, security: Security = Security(),
                 prune: Callable[[], None] | None = None) -> None:
        self.host, self.port, self.client_id, self.keepalive = host, port, client_id, keepalive
        self.security = security
        self.prune = prune
        self.up_topic, self.status_topic, self.alert_topic = up_topic, status_topic, alert_topic
        self.outbox, self.batcher, self.counters = outbox, batcher, counters
        self.window = Window(window)
        self.backoff = Backoff()
        self.birth, self.clock = birth, clock
        self.status_interval_s = status_interval_s
        self.server_online = False  # until the server's retained status says otherwise
        self.wake = threading.Event()  # set when there is something to do
        self._events: queue.SimpleQueue = queue.SimpleQueue()
        self._client: mqtt.Client | None = None
        self._connected = threading.Event()
        self._generation = 0
        self._published: set[int] = set()  # batch seqs published by this process
        self._sealed_here: set[int] = set()
        self._rebirth = False
        self._next_status = 0.0
        self._alert_mids: dict[int, int] = {}  # paho mid -> alert id, this connection
        self._refused = False  # the broker answered CONNECT with a failure
        self._acked: list[int] = []  # batch seqs PUBACKed, to delete with the next commit
        # After a refused publish: no alerts (batches) before this time.monotonic().
        self._alerts_held = self._batches_held = 0.0
        self._alert_backoff, self._batch_backoff = Backoff(1.0, 60.0), Backoff(1.0, 60.0)

    # -- paho's thread: note and wake -----------------------------------------------
    def _on_connect(self, client, gen, flags, reason, properties) -> None:
        if reason.is_failure:
            log_event("uplink_refused", reason=str(reason))
            self._refused = True
            self._connected.set()  # wake _connect: the answer is no
            return
        self.server_online = False  # until this broker's retained status says so
        client.subscribe(SERVER_STATUS, qos=1)
        client.publish(self.status_topic, json.dumps(self._status()), qos=1, retain=True)
        self._connected.set()
        self.wake.set()

    def _on_disconnect(self, client, gen, flags, reason, properties) -> None:
        self._events.put(("lost", gen, str(reason)))
        self.wake.set()

    def _on_publish(self, client, gen, mid, reason, properties) -> None:
        self._events.put(("puback", gen, (mid, reason.is_failure, str(reason))))
        self.wake.set()

    def _on_message(self, client, gen, message) -> None:
        if message.topic == SERVER_STATUS:
            try:
                state = json.loads(message.payload)["state"]
            except (ValueError, KeyError, TypeError):
                log_event("server_status_malformed", payload=message.payload[:80].hex())
                return
            self.server_online = state == "online"
            log_event("server_status", state=state)
            self.wake.set()

    # -- the uplink thread ------------------------------------------------------------
    def _connect(self) -> bool:
        self._generation += 1
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id,
                             protocol=mqtt.MQTTv5, userdata=self._generation)
        client.will_set(self.status_topic, json.dumps({"state": "offline"}), qos=1,
                        retain=True)
        client.max_inflight_messages_set(self.window.size + 16)  # + alerts, status
        self.security.apply(client)
        client.on_connect, client.on_disconnect = self._on_connect, self._on_disconnect
        client.on_publish, client.on_message = self._on_publish, self._on_message
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        self._connected.clear()
        self._refused = False
        try:
            client.connect(self.host, self.port, self.keepalive, clean_start=False,
                           properties=props)
        except (OSError, ValueError) as e:  # ssl.SSLError is an OSError
            log_event("uplink_connect_failed", host=self.host, port=self.port, error=str(e))
            return False
        client.loop_start()
        if not self._connected.wait(10) or self._refused:
            client.loop_stop()
            client.disconnect()
            return False
        self._client = client
        self.backoff.reset()
        log_event("uplink_connected", host=self.host, port=self.port)
        return True

    def _drop(self, why: str) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.loop_stop()
            client.disconnect()
        self._handle_events()  # PUBACKs that arrived before the loss still count
        self._forget_acked()
        self.window.reset()
        self._alert_mids.clear()
        self._generation += 1
        self._connected.clear()
        log_event("uplink_lost", reason=why)

    def _handle_events(self) -> str | None:
        """Apply the PUBACKs heard so far; return why the connection was lost, if it was."""
        lost = None
        acked: list[int] = []
        while True:
            try:
                kind, gen, value = self._events.get_nowait()
            except queue.Empty:
                break
            if gen != self._generation:
                continue  # from a connection already given up
            if kind == "lost":
                lost = value
                continue
            mid, failed, why = value
            alert_id = self._alert_mids.pop(mid, None)
            if alert_id is not None:
                if failed:
                    self._alerts_held = self._hold(self._alerts_held, self._alert_backoff)
                    self.counters.reject("alert_refused")
                    log_event("alert_refused", alert=alert_id, reason=why,
                              retry_in_s=round(self._alerts_held - time.monotonic(), 1))
                else:
                    self.outbox.delete_alert(alert_id)
                    self._alert_backoff.reset()
                continue
            if failed:
                batch = self.window.refused(mid)
                self._batches_held = self._hold(self._batches_held, self._batch_backoff)
                self.counters.reject("broker_refused")
                log_event("batch_refused", batch=batch, reason=why,
                          retry_in_s=round(self._batches_held - time.monotonic(), 1))
                continue
            batch = self.window.acked(mid)
            if batch is not None:
                acked.append(batch[0])
                self._batch_backoff.reset()
        self._acked += acked
        return lost

    @staticmethod
    def _hold(held: float, backoff: Backoff) -> float:
        """Until when to hold off after a refusal: the next back-off step, or, for more
        refusals of what was already in flight, the hold already running."""
        now = time.monotonic()
        return held if held > now else now + backoff.delay()

    def _forget_acked(self) -> None:
        """Delete the batches whose PUBACK came (inside the caller's transaction, if any)."""
        if self._acked:
            acked, self._acked = self._acked, []
            self.counters.add("forwarded", self.outbox.delete_batches(acked))
        self.counters.queued = self.outbox.depth

    def _seal(self, now: int, room: int) -> bool:
        """Seal up to `room` due batches in one transaction; True if any."""
        sealed: list[int] = []
        with self.outbox.lock:
            if not self.batcher.due(self.outbox.pending_count, self.outbox.oldest_pending(),
                                    now):
                return False
        with self.outbox.lock, self.outbox.transaction(acked=False):
            self._forget_acked()  # the same commit for both
            run = self.outbox.take_pending(self.batcher.max_records * room)
            seq = self.outbox.next_batch_seq()
            while run and len(sealed) < room:
                if len(run) < self.batcher.max_records and sealed:
                    break  # a partial batch waits for its own window
                batch = self.batcher.seal(run, seq + len(sealed), now)
                self.outbox.sealed(batch.seq, batch.envelope, batch.records, batch.backfill)
                sealed.append(batch.seq)
                run = run[len(batch.records):]
        self._sealed_here.update(sealed)
        return bool(sealed)

    def _publish_some(self, now: int) -> None:
        client = self._client
        if time.monotonic() < self._batches_held:
            return  # the broker refused one: wait out the back-off
        while client is not None and self.window.room() > 0 and self.server_online:
            retry = self.window.take_retry()
            if retry is not None:
                batch = self.outbox.batch(retry)
            else:
                found = self.outbox.batches_after(self.window.cursor, 1)
                if not found and self._seal(now, self.window.room()):
                    found = self.outbox.batches_after(self.window.cursor, 1)
                batch = found[0] if found else None
            if batch is None:
                return
            envelope = batch.envelope
            if self.batcher.sealed_by_revoked(envelope):
                envelope = self.batcher.reseal(envelope, now)
                self.outbox.replace_envelope(batch.seq, envelope)
                log_event("batch_resealed", batch=batch.seq, reason="key revoked")
            info = client.publish(self.up_topic, envelope, qos=1)
            self.window.sent(info.mid, batch.seq, batch.records)
            if batch.seq in self._published or batch.seq not in self._sealed_here:
                self.counters.add("resent", batch.records)  # or possibly, after a restart
            self._published.add(batch.seq)
            self.counters.add("batches")

    def _status(self) -> dict:
        return {**self.birth(), "counters": self.counters.snapshot(), "t": self.clock()}

    def rebirth(self) -> None:
        """The node inventory changed: publish the birth message again."""
        self._rebirth = True
        self.wake.set()

    def alert(self, alert: dict) -> None:
        """Keep the alert in the outbox; it is published (and deleted on PUBACK) from
        the uplink thread."""
        log_event("alert", **alert)
        self.outbox.add_alert(json.dumps(alert, sort_keys=True))
        self.wake.set()

    def _publish_alerts(self) -> None:
        client = self._client
        if client is None or time.monotonic() < self._alerts_held:
            return
        sent = set(self._alert_mids.values())
        for alert_id, body in self.outbox.alerts():
            if alert_id not in sent:
                self._alert_mids[client.publish(self.alert_topic, body, qos=1).mid] = alert_id

    def step(self) -> float:
        """One turn of the loop; returns how long to wait for the next."""
        now = self.clock()
        if self._client is None and not self._connect():
            return self.backoff.delay()
        why = self._handle_events()
        if why is not None:
            self._drop(why)
            return self.backoff.delay()
        self._publish_alerts()
        self._publish_some(now)
        self._forget_acked()  # if sealing did not already
        if self._rebirth or time.monotonic() >= self._next_status:
            if self.prune is not None:
                self.prune()
            self._rebirth = False
            self._next_status = time.monotonic() + self.status_interval_s
            status = self._status()
            if self._client is not None:
                self._client.publish(self.status_topic, json.dumps(status), qos=1, retain=True)
            log_event("counters", **status["counters"])
        pending = self.outbox.pending_count
        return 0.005 if pending else max(0.005, self.batcher.window_ms / 1000)

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            delay = self.step()
            self.wake.wait(delay)
            self.wake.clear()
        client, self._client = self._client, None
        if client is not None:
            self._handle_events()
            self._forget_acked()
            # A clean disconnect sends no Last Will: say offline ourselves.
            client.publish(self.status_topic, json.dumps({"state": "offline"}), qos=1,
                           retain=True).wait_for_publish(2)
            client.loop_stop()
            client.disconnect()
