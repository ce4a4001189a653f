"""Uplink behaviour with a real Mosquitto: birth and offline status, and no publishing
until the server says it is online."""

from __future__ import annotations

import json
import os
import threading
import time

import pytest

from metrotrace.firmware.metro.wire import frame
from metrotrace.gateway.app import Gateway
from metrotrace.gateway.config import load
from metrotrace.tools import simnode
from tests.gwharness import Mosquitto, PtyNode, Receiver, client, gateway_dir, wait_for

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
