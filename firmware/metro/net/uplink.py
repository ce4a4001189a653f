# The node's uplink over MQTT (Wi-Fi boards), the MQTT contract of the project:
#   metrotrace/v1/node/{node_hex}/up      node -> gateway, QoS 1: record bytes | tag
#   metrotrace/v1/node/{node_hex}/ack     gateway -> node, QoS 1: an A frame's payload
#   metrotrace/v1/node/{node_hex}/status  retained {"state": "online"}; Last Will
#                                         {"state": "offline"}
# Records leave through the same go-back-N sender as on a UART (core/gbn.py): the
# outbox on flash is the queue, not the broker session, so the connection is clean
# (clean session 1) and whatever was in flight is offered again after a reconnect.
#
# Invariants: only acknowledgements that pass wire.frame.parse_control (Node.control)
# delete records; reconnect attempts back off exponentially (with jitter, so a fleet
# does not reconnect in step after a broker restart); the link loop beats `health`
# while connected AND while waiting to reconnect: a Wi-Fi or broker outage must not
# starve the watchdog, a hung loop must.

import asyncio
import time

from ..wire import frame as wire_frame
from . import mqtt
from .backoff import Backoff
from .client import Client

TOPIC = "metrotrace/v1/node/%s/%s"
ONLINE = b'{"state":"online"}'
OFFLINE = b'{"state":"offline"}'


def settings(link, node_hex):
    """Connection settings from config link.mqtt (checked by app/config.py)."""
    m = link["mqtt"]
    ssl = None
    tls = m.get("tls")
    if tls:
        import ssl as _ssl  # only boards and hosts that configure TLS load mbedTLS

        ssl = _ssl.SSLContext(_ssl.PROTOCOL_TLS_CLIENT)
        if tls.get("ca"):
            # verify_mode is documented (MicroPython "ssl" docs) but absent from the stubs
            ssl.verify_mode = _ssl.CERT_REQUIRED  # type: ignore[attr-defined]
            with open(tls["ca"], "rb") as f:
                ssl.load_verify_locations(cadata=f.read())
        else:  # encrypted, not authenticated: test rigs
            ssl.verify_mode = _ssl.CERT_NONE  # type: ignore[attr-defined]
    return {"host": m["broker"], "port": m.get("port", 8883 if tls else 1883),
            "client_id": m.get("client_id") or "metro-" + node_hex,
            "keepalive_s": m.get("keepalive_s", 60), "user": m.get("user"),
            "password": m.get("password"), "ssl": ssl,
            "ack_timeout_ms": m.get("ack_timeout_ms", 10000),
            "backoff_ms": m.get("backoff_ms", 500),
            "max_backoff_ms": m.get("max_backoff_ms", 30000)}


class Uplink:
    def __init__(self, node, key, conn, health, period_ms=20, probe=None):
        hexid = node.producer.node.hex()
        self.node = node
        self.key = key
        self.conn = conn
        self.health = health
        self.period_ms = period_ms
        self.probe = probe
        self.up = TOPIC % (hexid, "up")
        self.ack = TOPIC % (hexid, "ack")
        self.status = TOPIC % (hexid, "status")
        self.backoff = Backoff(conn["backoff_ms"], conn["max_backoff_ms"])
        self.connects = 0
        self.last_trouble = None

    def _client(self):
        c = self.conn
        return Client(c["host"], c["port"], c["client_id"], c["keepalive_s"],
                      (self.status, OFFLINE, 1, True), c["user"], c["password"], c["ssl"],
                      self._message, c["ack_timeout_ms"])

    def _message(self, topic, payload):
        if topic == self.ack:
            frame = wire_frame.Frame(wire_frame.ACK, payload)
            self.node.control(frame, self.key, time.ticks_ms())

    async def run(self):
        self.health.register("link", self.period_ms, 2)
        while True:
            client = self._client()
            try:
                await client.connect()
                await client.subscribe(self.ack, 1)
                await client.publish(self.status, ONLINE, 1, True)
                self.connects += 1
                self.backoff.reset()
                self.node.sender.restart()  # in flight before: offered again
                await self._session(client)
            except OSError as err:  # refused, unreachable, broken: reconnect
                self.last_trouble = str(err)
            await client.close()
            await self.health.idle("link", self.backoff.next())  # an outage is not a hang

    async def _session(self, client):
        sender = self.node.sender
        while True:
            now = time.ticks_ms()
            why = client.trouble(now)
            if why:
                raise mqtt.MQTTError(why)
            for event in sender.poll(now):
                self.node.producer.event(event["code"], event["detail"])
            if len(client.inflight) < sender.window:  # PUBACKs keep pace with sends
                for _, payload in sender.due(now):
                    await client.publish(self.up, payload)
            await client.keep(now)
            self.health.beat("link")
            if self.probe:
                self.probe.sample()
            await asyncio.sleep_ms(self.period_ms)
