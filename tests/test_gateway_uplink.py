"""Uplink behaviour with a real Mosquitto: birth and offline status (clean stop and the
Last Will after a SIGKILL), counters on the status topic, no publishing until the
server says it is online or while it says offline, and the backfill flag on what
waited."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest

from metrotrace.firmware.metro.wire import cobs, frame, record
from metrotrace.gateway.app import Gateway
from metrotrace.gateway.config import load
from metrotrace.tools import simnode
from tests.gwharness import (
    Mosquitto,
    PtyNode,
    Receiver,
    client,
    gateway_dir,
    start_gateway,
    wait_for,
)

NODE = bytes.fromhex("e6614103e7513a2f")
KEY = bytes(range(32))
SERVER_STATUS = "metrotrace/v1/server/status"


@pytest.mark.parametrize("status", ["offline", None])
def test_holds_until_the_server_says_online_and_announces_itself(tmp_path, status):
    """Offline, or never heard of (a new broker, where a batch would be dropped): held."""
    broker = Mosquitto(tmp_path)
    broker.start()
    server = client(broker.port, "fake-server-status", persistent=False)
    server.loop_start()
    if status is not None:
        server.publish(SERVER_STATUS, json.dumps({"state": status}), qos=1,
                       retain=True).wait_for_publish(5)
    count = 300
    pty = PtyNode(NODE, KEY, [])
    gw = Gateway(load(gateway_dir(tmp_path, broker.port, {NODE: KEY}, [pty.path])))
    thread = threading.Thread(target=gw.run, daemon=True)
    thread.start()
    receiver = Receiver(broker.port, tmp_path / "keys", {NODE: KEY}, announce=False)
    status_topic = "metrotrace/v1/gw/gw-test/status"
    try:
        wait_for(gw.serial[0].opened.is_set, 10, "the gateway to open the pty")
        os.set_blocking(pty.master, True)
        records = list(simnode.records(NODE, count, 1_763_884_800_000, 2))
        os.write(pty.master, b"".join(frame.record_frame(r, KEY) for r in records))
        wait_for(lambda: gw.counters.snapshot()["accepted"] == count, 20, "records stored")
        time.sleep(1.0)
        assert receiver.count() == 0 and gw.outbox.depth == count  # held while offline
        birth = wait_for(lambda: receiver.status.get(status_topic), 10, "the birth message")
        assert birth["state"] == "online" and birth["gateway"] == "gw-test"
        assert birth["kid"] == gw.keyring.signing(gw.clock()).kid.hex()
        wait_for(lambda: receiver.status[status_topic]["nodes"].get(NODE.hex()), 10,
                 "the node's firmware in the inventory")
        server.publish(SERVER_STATUS, json.dumps({"state": "online"}), qos=1,
                       retain=True).wait_for_publish(5)
        wait_for(lambda: receiver.count() == count, 20, "the backlog after the server returns")
    finally:
        gw.stop.set()
        thread.join(20)
        wait_for(lambda: receiver.status[status_topic]["state"] == "offline", 10,
                 "the offline status on a clean stop")
        receiver.close()
        server.loop_stop()
        server.disconnect()
        pty.close()
        broker.stop()
    assert receiver.status[status_topic]["state"] == "offline"
    assert receiver.duplicates == 0


def live(seqs, now_ms):
    """Weighing records made now by a node with NTP time: live, unless they wait."""
    return [record.make(record.WEIGHING, NODE, s, s - 1, now_ms, record.TQ_NTP, "scale-1",
                        gross=1000 + s, tare=0, net=1000 + s, e=5, unit="g",
                        flags=record.F_STABLE) for s in seqs]


def test_last_will_says_offline_after_a_sigkill_and_the_status_carries_the_counters(
        tmp_path, broker):
    count = 1500
    node = PtyNode(NODE, KEY, list(simnode.records(NODE, count, 1_763_884_800_000, 9)))
    config = gateway_dir(tmp_path, broker.port, {NODE: KEY}, [node.path])
    receiver = Receiver(broker.port, tmp_path / "keys", {NODE: KEY})
    gateway = start_gateway(config, tmp_path / "gateway.log")
    status_topic = "metrotrace/v1/gw/gw-test/status"
    late = None
    try:
        node.start()
        wait_for(lambda: receiver.count() == count, 60, "every record at the receiver")
        wait_for(node.done.is_set, 30, "every record acknowledged to the node")
        # A frame damaged on the line (its CRC does not fit): counted by reason.
        os.write(node.master, b"\x00" + cobs.encode(b"R" + bytes(40) + b"\x01\x02\x03\x04")
                 + b"\x00")
        # Counters go out on the status topic every status.interval_s (1 s here).
        status = wait_for(lambda: (s := receiver.status.get(status_topic)) and
                          s.get("counters", {}).get("rejected", {}).get("crc") and s, 10,
                          "counters with the damaged frame")
        counters = status["counters"]
        assert status["state"] == "online" and counters["accepted"] == count
        assert counters["forwarded"] == count and counters["queued"] == 0
        assert counters["received"] == count + counters["duplicate"]
        assert counters["batches"] >= count // 500
        # Besides the CRC reject, at most the half frame a port opened mid-frame sees.
        assert counters["rejected"]["crc"] == 1 and sum(counters["rejected"].values()) <= 2
        gateway.send_signal(signal.SIGKILL)  # no clean stop: only the Last Will speaks
        gateway.wait(10)
        wait_for(lambda: receiver.status[status_topic]["state"] == "offline", 15,
                 "the Last Will after the SIGKILL")
        # Retained: whoever subscribes later learns the gateway is offline.
        late = Receiver(broker.port, tmp_path / "keys", {NODE: KEY}, announce=False)
        offline = wait_for(lambda: late.status.get(status_topic), 10, "the retained status")
        assert offline == {"state": "offline", "retained": True}
    finally:
        if gateway.poll() is None:
            gateway.send_signal(signal.SIGKILL)
            gateway.wait(10)
        receiver.close()
        if late is not None:
            late.close()
        node.close()


@pytest.mark.slow
def test_server_offline_mid_stream_pauses_publishing_and_what_waited_goes_as_backfill(
        tmp_path, broker):
    pty = PtyNode(NODE, KEY, [])
    gw = Gateway(load(gateway_dir(tmp_path, broker.port, {NODE: KEY}, [pty.path],
                                  batch={"backfill_after_s": 2})))
    thread = threading.Thread(target=gw.run, daemon=True)
    thread.start()
    receiver = Receiver(broker.port, tmp_path / "keys", {NODE: KEY})
    server = client(broker.port, "fake-server-status", persistent=False)
    server.loop_start()

    def say(state):
        server.publish(SERVER_STATUS, json.dumps({"state": state}), qos=1,
                       retain=True).wait_for_publish(5)
        wait_for(lambda: gw.uplink.server_online == (state == "online"), 10, f"server {state}")

    def send(seqs):
        os.write(pty.master, b"".join(frame.record_frame(r, KEY)
                                      for r in live(seqs, gw.clock())))
    try:
        wait_for(gw.serial[0].opened.is_set, 10, "the gateway to open the pty")
        os.set_blocking(pty.master, True)
        send(range(1, 201))
        wait_for(lambda: receiver.count() == 200, 20, "the first records")
        say("offline")
        send(range(201, 401))
        wait_for(lambda: gw.counters.snapshot()["accepted"] == 400, 20, "records stored")
        held_since = time.monotonic()
        time.sleep(1.0)
        assert receiver.count() == 200 and gw.outbox.depth == 200  # stored, not published
        time.sleep(max(0.0, held_since + 2.3 - time.monotonic()))  # past backfill_after_s
        say("online")
        wait_for(lambda: receiver.count() == 400, 20, "what waited, once the server is back")
        send(range(401, 501))
        wait_for(lambda: receiver.count() == 500, 20, "new records, live again")
    finally:
        gw.stop.set()
        thread.join(20)
        receiver.close()
        server.loop_stop()
        server.disconnect()
        pty.close()
    flags = receiver.backfill
    assert [s for s in range(1, 501) if flags[(NODE, s)]] == list(range(201, 401))
    assert receiver.backfill_batches >= 1 and receiver.duplicates == 0
    assert gw.counters.snapshot()["forwarded"] == 500
