"""A broker that refuses the gateway's publishes (an ACL's "Not authorized" in the
PUBACK): the refused alert or batch is kept, counted, logged, and tried again after a
back-off, not in a busy loop; once the broker allows it, it goes and nothing is lost.
Real Mosquitto with an ACL file, changed while it runs (SIGHUP)."""

from __future__ import annotations

import logging
import os
import threading
import time

import pytest

from metrotrace.firmware.metro.wire import frame, record
from metrotrace.gateway.app import Gateway
from metrotrace.gateway.config import load
from metrotrace.tools import simnode
from tests.gwharness import Mosquitto, PtyNode, Receiver, gateway_dir, wait_for

NODE = bytes.fromhex("e6614103e7513a2f")
KEY = bytes(range(32))
T0 = 1_763_884_800_000
SERVER = "topic readwrite metrotrace/v1/server/#\n"
STATUS = "topic readwrite metrotrace/v1/gw/gw-test/status\n"
UP = "topic readwrite metrotrace/v1/gw/gw-test/up\n"
READ_ALL = "topic read metrotrace/v1/#\n"
ALERTS = "topic readwrite metrotrace/v1/alerts/#\n"


@pytest.fixture
def rig(tmp_path, caplog):
    """Start a broker with `acl`, a gateway reading a pty, and a receiver."""
    caplog.set_level(logging.INFO, logger="metrotrace.gateway")
    parts = {}

    def start(acl: str):
        broker = parts["broker"] = Mosquitto(tmp_path, acl)
        broker.start()
        node = parts["node"] = PtyNode(NODE, KEY, [])
        gw = parts["gw"] = Gateway(load(gateway_dir(tmp_path, broker.port, {NODE: KEY},
                                                    [node.path])))
        parts["thread"] = threading.Thread(target=gw.run, daemon=True)
        parts["thread"].start()
        parts["receiver"] = Receiver(broker.port, tmp_path / "keys", {NODE: KEY})
        wait_for(gw.serial[0].opened.is_set, 10, "the gateway to open the pty")
        os.set_blocking(node.master, True)
        return broker, node, gw, parts["receiver"]
    yield start
    if "gw" in parts:
        parts["gw"].stop.set()
        parts["thread"].join(20)
        parts["receiver"].close()
        parts["node"].close()
    if "broker" in parts:
        parts["broker"].stop()


def refusals(gw: Gateway, reason: str) -> int:
    return gw.counters.snapshot()["rejected"].get(reason, 0)


def test_a_refused_alert_is_kept_counted_and_retried_with_back_off(rig, caplog):
    broker, node, gw, receiver = rig(SERVER + STATUS + UP + READ_ALL)  # no alerts
    good = list(simnode.records(NODE, 200, T0, 3))
    forged = record.make(record.WEIGHING, NODE, 3, 2, T0, record.TQ_NTP, "scale-1",
                         gross=5, tare=0, net=5, e=5, unit="g", flags=record.F_STABLE)
    os.write(node.master, b"".join(frame.record_frame(r, KEY) for r in good[:100])
             + frame.record_frame(forged, KEY)
             + b"".join(frame.record_frame(r, KEY) for r in good[100:]))
    wait_for(lambda: refusals(gw, "alert_refused"), 20, "the broker to refuse the alert")
    first = time.monotonic()
    wait_for(lambda: receiver.count() == 200, 30, "the good records, all the same")
    time.sleep(max(0.0, first + 2.5 - time.monotonic()))
    # Back-off 1 s, 2 s, ...: tries at about 0 s and 1 s (3 s is next), not thousands.
    assert 1 <= refusals(gw, "alert_refused") <= 3
    assert len(gw.outbox.alerts()) == 1 and receiver.alerts == []  # kept, not delivered
    assert any('"event": "alert_refused"' in r.message and "Not authorized" in r.message
               for r in caplog.records)
    broker.set_acl(SERVER + STATUS + UP + READ_ALL + ALERTS)  # the operator fixes the ACL
    wait_for(lambda: receiver.alerts, 10, "the alert, on the next try")
    assert receiver.alerts[0]["kind"] == "forgery" and receiver.alerts[0]["seq"] == 3
    wait_for(lambda: not gw.outbox.alerts(), 10, "the alert to leave the outbox on PUBACK")
    assert refusals(gw, "alert_refused") <= 4 and receiver.duplicates == 0


def test_refused_batches_wait_out_a_back_off_and_go_once_allowed(rig, caplog):
    broker, node, gw, receiver = rig(SERVER + STATUS + READ_ALL + ALERTS)  # no up topic
    count = 1200  # three batches, refused together, then one at a time
    os.write(node.master, b"".join(frame.record_frame(r, KEY)
                                   for r in simnode.records(NODE, count, T0, 5)))
    wait_for(lambda: gw.counters.snapshot()["accepted"] == count, 20, "records stored")
    wait_for(lambda: refusals(gw, "broker_refused"), 20, "the broker to refuse a batch")
    first = time.monotonic()
    time.sleep(max(0.0, first + 2.5 - time.monotonic()))
    # What was in flight is refused together; then one try per back-off step (1 s,
    # 2 s, ...). (Mosquitto 2.0 may also drop the connection after refusing a large
    # publish; the hold outlives the reconnect.)
    assert refusals(gw, "broker_refused") <= 3 + 2
    assert receiver.count() == 0 and gw.outbox.depth == count  # kept
    refused = [r for r in caplog.records if '"event": "batch_refused"' in r.message]
    assert refused and all("Not authorized" in r.message for r in refused)
    tries = sorted({round(r.created, 1) for r in refused})
    assert all(b - a >= 0.9 for a, b in zip(tries, tries[1:], strict=False)), tries
    broker.set_acl(SERVER + STATUS + UP + READ_ALL + ALERTS)
    wait_for(lambda: receiver.count() == count, 15, "every record once allowed")
    wait_for(lambda: gw.outbox.depth == 0, 10, "the outbox to drain")
    assert gw.counters.snapshot()["forwarded"] == count
    assert receiver.duplicates == 0 and receiver.conflicts == 0
