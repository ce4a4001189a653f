"""Wi-Fi nodes over the local broker: `metrotrace/v1/node/{node_hex}/up`.

The payload is one record's bytes and its 32-byte tag (a wire R frame's payload, no
COBS/CRC: TCP carries it). Records go through the same Intake as serial ones; the
acknowledgement (a wire A frame's payload) is published on
`metrotrace/v1/node/{node_hex}/ack` after the commit.

The subscription is QoS 1 with manual acknowledgement: the PUBACK to the broker is
sent only after the commit, so a gateway killed between receipt and commit gets the
message again from its persistent session (fixed client id, clean_start=False).

Invariant: a node message is acknowledged to the broker and to the node only after the
records in it are durably stored (or known to be stored already).
"""

from __future__ import annotations

import queue
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from metrotrace.firmware.metro.wire import frame as wire_frame
from metrotrace.firmware.metro.wire.tag import TAG_LEN

from .counters import log_event
from .fastrecord import record_fields
from .intake import Intake
from .uplink import Security

UP = "metrotrace/v1/node/+/up"
TOPIC_NODE = "topic_node"  # reject: the record's node is not the one in the topic


def node_topic(node: bytes, direction: str) -> str:
    return f"metrotrace/v1/node/{node.hex()}/{direction}"


def record_frame(topic: str, payload: bytes) -> wire_frame.Frame | wire_frame.Reject:
    """An MQTT node message as the decoded R frame a UART would have delivered."""
    if len(payload) <= TAG_LEN:
        return wire_frame.Reject(wire_frame.BAD_RECORD, "no room for record and tag")
    item = wire_frame.Frame(wire_frame.RECORD, payload)
    try:
        item.fields = record_fields(payload[:-TAG_LEN])  # record.decode, at C speed
    except (ValueError, TypeError, KeyError, IndexError) as e:
        return wire_frame.Reject(wire_frame.BAD_RECORD, str(e))
    parts = topic.split("/")
    if len(parts) != 5 or parts[3] != item.fields["node"].hex():
        return wire_frame.Reject(TOPIC_NODE, f"topic {topic} names another node")
    return item


def ack_payload(node: bytes, seq: int, key: bytes) -> bytes:
    (ack,) = wire_frame.Decoder().feed(wire_frame.ack_frame(node, seq, key))
    return ack.payload


class WifiIngress:
    def __init__(self, host: str, port: int, client_id: str, intake: Intake,
                 security: Security | None = None) -> None:
        self.intake = intake
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self.subscribed = threading.Event()
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                             protocol=mqtt.MQTTv5, manual_ack=True)
        client.on_connect = self._on_connect
        client.on_message = lambda c, u, m: self._queue.put(m)
        client.on_subscribe = lambda *a: self.subscribed.set()
        client.reconnect_delay_set(0.5, 30)
        if security is not None:
            security.apply(client)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 7 * 24 * 3600
        client.connect_async(host, port, 30, clean_start=False, properties=props)
        self.client = client

    def _on_connect(self, client, userdata, flags, reason, properties) -> None:
        if reason.is_failure:
            log_event("wifi_refused", reason=str(reason))
            return
        client.subscribe(UP, qos=1)
        log_event("wifi_connected")

    def _take(self) -> list[mqtt.MQTTMessage]:
        try:
            messages = [self._queue.get(timeout=0.1)]
        except queue.Empty:
            return []
        while len(messages) < 1000:
            try:
                messages.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return messages

    def run(self, stop: threading.Event) -> None:
        self.client.loop_start()
        try:
            while not stop.is_set():
                messages = self._take()
                if not messages:
                    continue
                acks = self.intake.receive(record_frame(m.topic, m.payload) for m in messages)
                for ack in acks:
                    self.client.publish(node_topic(ack.node, "ack"),
                                        ack_payload(ack.node, ack.seq, ack.key), qos=1)
                for m in messages:
                    self.client.ack(m.mid, m.qos)
        finally:
            self.client.loop_stop()
            self.client.disconnect()
