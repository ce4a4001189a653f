"""Bad records are rejected and counted while good ones keep flowing (real Mosquitto,
real pty, Wi-Fi nodes over MQTT)."""

from __future__ import annotations

import os
import select
import threading

import pytest

from metrotrace.firmware.metro.wire import frame, record
from metrotrace.gateway.app import Gateway
from metrotrace.gateway.config import load
from metrotrace.gateway.ingress_mqtt import node_topic
from metrotrace.tools import simnode
from tests.gwharness import PtyNode, Receiver, client, gateway_dir, wait_for

NODE = bytes.fromhex("e6614103e7513a2f")
KEY = bytes(range(32))
STRANGER = bytes.fromhex("00000000deadbeef")
T0 = 1_763_884_800_000



@pytest.fixture
def running(tmp_path, broker):
    """Start a gateway in this process (so the test can read its counters)."""
    started = []

    def start(**kw):
        gw = Gateway(load(gateway_dir(tmp_path, broker.port, {NODE: KEY}, **kw)))
        thread = threading.Thread(target=gw.run, daemon=True)
        thread.start()
        started.append((gw, thread))
        return gw
    yield start
    for gw, thread in started:
        gw.stop.set()
        thread.join(20)


def bad_frames(good: list[bytes]) -> list[bytes]:
    """A tampered record, an exact replay, a forgery and a stranger's record."""
    (original,) = frame.Decoder().feed(frame.record_frame(good[4], KEY))
    changed = bytearray(good[4])
    changed[-1] ^= 0x01  # one value changes; the node's tag no longer fits
    tampered_frame = frame.encode(frame.RECORD, bytes(changed) + original.split_tag()[1])
    forged = record.make(record.WEIGHING, NODE, 3, 2, T0, record.TQ_NTP, "scale-1", gross=5,
                         tare=0, net=5, e=5, unit="g", flags=record.F_STABLE)
    stranger = record.make(record.ZERO, STRANGER, 1, 0, T0, record.TQ_NTP, "x", indication=0,
                           e=5, unit="g")
    return [tampered_frame, frame.record_frame(good[2], KEY),
            frame.record_frame(forged, KEY), frame.record_frame(stranger, KEY)]


def test_tampered_replayed_forged_and_unprovisioned_records_rejected_over_serial(
        tmp_path, broker, running):
    count = 400
    good = list(simnode.records(NODE, count, T0, 3))
    node = PtyNode(NODE, KEY, [])  # just the pty; this test writes the bytes itself
    gw = running(ports=[node.path])
    receiver = Receiver(broker.port, tmp_path / "keys", {NODE: KEY})
    try:
        wait_for(gw.serial[0].opened.is_set, 10, "the gateway to open the pty")
        stream = [frame.record_frame(r, KEY) for r in good[:200]]
        stream += bad_frames(good) + [b"\x00\x17 line noise \xff\x00"]
        stream += [frame.record_frame(r, KEY) for r in good[200:]]
        os.set_blocking(node.master, True)
        os.write(node.master, b"".join(stream))
        decoder, mark = frame.Decoder(), 0

        def acked_all():
            nonlocal mark
            if select.select([node.master], [], [], 0.05)[0]:
                for item in decoder.feed(os.read(node.master, 65536)):
                    mark = max(mark, frame.parse_control(item, NODE, KEY))
            return mark == count
        wait_for(acked_all, 30, "the acknowledgement of the last good record")
        wait_for(lambda: receiver.count() == count, 30, "every good record forwarded")
        wait_for(lambda: receiver.alerts, 10, "the forgery alert")
    finally:
        receiver.close()
        node.close()
    counts = gw.counters.snapshot()
    assert counts["accepted"] == count and counts["duplicate"] == 1  # the replay
    assert counts["rejected"]["bad_tag"] == 1
    assert counts["rejected"]["forgery"] == 1
    assert counts["rejected"]["unknown_node"] == 1
    assert sum(counts["rejected"].values()) >= 4  # plus the line noise, by its reason
    assert receiver.duplicates == 0 and receiver.conflicts == 0 and receiver.bad_tags == 0
    assert receiver.alerts[0]["kind"] == "forgery" and receiver.alerts[0]["seq"] == 3


def test_wifi_node_records_are_checked_stored_and_acknowledged(tmp_path, broker, running):
    count = 200
    good = list(simnode.records(NODE, count, T0, 5))
    gw = running(wifi=True)
    receiver = Receiver(broker.port, tmp_path / "keys", {NODE: KEY})
    acks: list[int] = []
    node = client(broker.port, "wifi-node", persistent=False)

    def on_ack(c, u, message):
        ack = frame.Frame(frame.ACK, message.payload)
        acks.append(frame.parse_control(ack, NODE, KEY))
    node.on_message = on_ack
    node.subscribe(node_topic(NODE, "ack"), qos=1)
    node.loop_start()
    try:
        wait_for(gw.wifi.subscribed.is_set, 10, "the gateway's node subscription")
        up = node_topic(NODE, "up")

        def payload(frame_bytes):
            (item,) = frame.Decoder().feed(frame_bytes)
            return item.payload
        for r in good[:100]:
            node.publish(up, payload(frame.record_frame(r, KEY)), qos=1)
        *same_node, stranger = bad_frames(good)
        for bad in same_node:
            node.publish(up, payload(bad), qos=1)
        node.publish(node_topic(STRANGER, "up"), payload(stranger), qos=1)
        # a provisioned node's record sent on another node's topic
        node.publish(node_topic(STRANGER, "up"), payload(frame.record_frame(good[7], KEY)),
                     qos=1)
        for r in good[100:]:
            node.publish(up, payload(frame.record_frame(r, KEY)), qos=1).wait_for_publish(5)
        wait_for(lambda: acks and max(acks) == count, 30, "the last acknowledgement")
        wait_for(lambda: receiver.count() == count, 30, "every good record forwarded")
    finally:
        node.loop_stop()
        node.disconnect()
        receiver.close()
    counts = gw.counters.snapshot()
    assert counts["accepted"] == count and counts["duplicate"] == 1  # the replay
    assert counts["rejected"] == {"bad_tag": 1, "forgery": 1, "topic_node": 1,
                                  "unknown_node": 1}
