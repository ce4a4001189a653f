"""The node's link over Wi-Fi as the tests see it: a subscriber on the site broker.

A Wi-Fi node publishes each record (its bytes and tag, an R frame's payload) on
`metrotrace/v1/node/{node}/up` and takes acknowledgements (an A frame's payload) on
`.../ack` (firmware/metro/net/uplink.py, gateway/ingress_mqtt.py). `MqttLink` plays the
gateway's side of that contract with the same record bookkeeping, expects and
acknowledgements as the serial `Link`, so a test reads the same on either link; it also
follows the node's retained `.../status` ({"state": "online"} / the Last Will).

Invariant: as for `Link`: only records with a good tag are kept, and acknowledgements
follow the `prev` chain of what arrived.
"""

from __future__ import annotations

import json
import os
import threading

import paho.mqtt.client as mqtt

from metrotrace.firmware.metro.wire import frame, record

from .console import ExpectTimeout
from .link import Link

TOPIC = "metrotrace/v1/node/{node}/{what}"


class MqttLink(Link):
    def __init__(self, host: str, port: int, node: bytes, key: bytes) -> None:
        self._state(f"mqtt://{host}:{port}", node, key)
        self.status: dict = {}
        self.up = TOPIC.format(node=node.hex(), what="up")
        self.ack_topic = TOPIC.format(node=node.hex(), what="ack")
        status_topic = TOPIC.format(node=node.hex(), what="status")
        subscribed = threading.Event()
        self.mqtt = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                client_id=f"hil-link-{os.getpid()}-{id(self)}")
        self.mqtt.on_connect = lambda c, u, f, r, p: c.subscribe([(self.up, 1),
                                                                  (status_topic, 1)])
        self.mqtt.on_subscribe = lambda *a: subscribed.set()
        self.mqtt.on_message = self._on_message
        self.mqtt.reconnect_delay_set(0.2, 2)
        self.mqtt.connect(host, port, 30)
        self.mqtt.loop_start()
        if not subscribed.wait(10):
            self.close()
            raise ExpectTimeout(f"link {self.url}: could not subscribe to {self.up}")

    def _on_message(self, client, userdata, message) -> None:
        if message.topic != self.up:
            with self._cond:
                self.status = json.loads(message.payload) if message.payload else {}
                self._cond.notify_all()
            return
        item = frame.Frame(frame.RECORD, bytes(message.payload))
        try:
            item.fields = record.decode(item.split_tag()[0])
        except (ValueError, TypeError, KeyError, IndexError):
            self.decoder.counts["record"] = self.decoder.counts.get("record", 0) + 1
            return
        self._deliver([item])

    def ack(self, seq: int) -> None:
        (ack,) = frame.Decoder().feed(frame.ack_frame(self.node, seq, self.key))
        self.mqtt.publish(self.ack_topic, ack.payload, qos=1)

    def write(self, data: bytes) -> None:
        raise ExpectTimeout(f"link {self.url}: no byte stream to write to over MQTT")

    def set_time(self, t_ms: int) -> None:
        raise ExpectTimeout(f"link {self.url}: a Wi-Fi node sets its clock by NTP")

    def close(self) -> None:
        self.mqtt.loop_stop()
        self.mqtt.disconnect()


def open_link(config: dict, url: str, node: bytes, key: bytes) -> Link:
    """The link a node with this configuration uses: its site broker, or `url`."""
    link = config.get("link", {})
    if link.get("kind") == "mqtt":
        m = link["mqtt"]
        return MqttLink(m["broker"], m.get("port", 1883), node, key)
    return Link(url, node, key)
