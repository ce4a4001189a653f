"""The gateway's links failing in the ways they fail: a PUBACK lost after the broker
took the batch, a serial port that vanishes and returns under the same path, a broker
behind TLS with a password, and alerts raised while no broker is there."""

from __future__ import annotations

import threading
import time

import cbor2

from metrotrace.firmware.metro.wire import frame, record
from metrotrace.gateway.app import Gateway
from metrotrace.gateway.config import load
from metrotrace.tools import simnode
from tests.gwharness import (
    Mosquitto,
    PtyNode,
    PubackDropper,
    Receiver,
    TlsMosquitto,
    gateway_dir,
    wait_for,
)

NODE = bytes.fromhex("e6614103e7513a2f")
KEY = bytes(range(32))
T0 = 1_763_884_800_000
UP = "metrotrace/v1/gw/gw-test/up"



def run(gw: Gateway) -> threading.Thread:
    thread = threading.Thread(target=gw.run, daemon=True)
    thread.start()
    return thread


def stop(gw: Gateway, thread: threading.Thread) -> None:
    gw.stop.set()
    thread.join(20)


def test_lost_puback_means_a_resend_and_duplicates_only_of_that_batch(tmp_path, broker):
    count = 3000
    proxy = PubackDropper(broker.port, UP)
    node = PtyNode(NODE, KEY, list(simnode.records(NODE, count, T0, 21)), window=600)
    # One batch in flight at a time: a cut connection loses exactly one PUBACK.
    gw = Gateway(load(gateway_dir(tmp_path, proxy.port, {NODE: KEY}, [node.path],
                                  batch={"max_records": 200, "inflight": 1})))
    receiver = Receiver(broker.port, tmp_path / "keys", {NODE: KEY})
    thread = run(gw)
    try:
        node.start()
        for at in (3, 8):  # lose the PUBACKs of two batches, mid-stream
            wait_for(lambda at=at: proxy.publishes >= at, 30, f"publish number {at}")
            proxy.drop_next_puback()
            wait_for(lambda at=at: len(proxy.lost) == (1 if at == 3 else 2), 30,
                     "the PUBACK to be swallowed")
        wait_for(node.done.is_set, 60, "every record acknowledged to the node")
        wait_for(lambda: receiver.count() == count, 30, "every record at the receiver")
        wait_for(lambda: gw.outbox.depth == 0, 30, "the outbox to drain")
        time.sleep(0.3)  # any further copy would arrive now
    finally:
        stop(gw, thread)
        receiver.close()
        node.close()
        proxy.close()
    lost_records = sum(len(cbor2.loads(cbor2.loads(p).value[2])[4]) for p in proxy.lost)
    counts = gw.counters.snapshot()
    assert set(receiver.records) == {(NODE, s) for s in range(1, count + 1)}  # none lost
    assert receiver.conflicts == 0 and receiver.bad_tags == 0 and not receiver.errors
    # The broker had both batches; the gateway, never told, sent them again; the
    # receiver saw each of their records twice and (node, seq) absorbed every copy.
    assert lost_records > 0
    assert receiver.duplicates == lost_records == counts["resent"]
    print(f"lost PUBACKs: {len(proxy.lost)} covering {lost_records} records; "
          f"duplicates at the receiver: {receiver.duplicates}; resent: {counts['resent']}")


def test_serial_port_that_vanishes_and_returns_loses_nothing(tmp_path, broker):
    count = 4000
    node = PtyNode(NODE, KEY, list(simnode.records(NODE, count, T0, 23)), window=400,
                   link=tmp_path / "ttyNODE")
    gw = Gateway(load(gateway_dir(tmp_path, broker.port, {NODE: KEY}, [node.path])))
    receiver = Receiver(broker.port, tmp_path / "keys", {NODE: KEY})
    thread = run(gw)
    try:
        wait_for(gw.serial[0].opened.is_set, 10, "the gateway to open the port")
        node.start()
        for lost, gap in enumerate((0.3, 1.0), start=1):
            progress = node.acked + 500
            wait_for(lambda p=progress: gw.serial[0].opened.is_set() and node.acked > p, 30,
                     "records flowing before the port vanishes")
            node.replug(gap)  # the node keeps sending into the void meanwhile
            wait_for(lambda lost=lost: gw.counters.counts["port_lost"] == lost, 10,
                     "the gateway to notice the port is gone")
        wait_for(node.done.is_set, 60, "every record acknowledged after the port returned")
        wait_for(lambda: receiver.count() == count, 30, "every record at the receiver")
    finally:
        stop(gw, thread)
        receiver.close()
        node.close()
    assert gw.counters.counts["port_lost"] == 2
    assert set(receiver.records) == {(NODE, s) for s in range(1, count + 1)}
    assert receiver.conflicts == 0 and receiver.duplicates == 0
    assert gw.counters.snapshot()["accepted"] == count


def test_uplink_over_tls_with_a_password(tmp_path):
    broker = TlsMosquitto(tmp_path, "gw-test", "s3cret")
    broker.start()
    (tmp_path / "pw").write_text("s3cret\n")
    tls = {"port": broker.tls_port, "tls": True, "ca_file": str(broker.ca_file),
           "username": "gw-test", "password_file": "pw"}
    pty = PtyNode(NODE, KEY, list(simnode.records(NODE, 300, T0, 25)))
    gw = Gateway(load(gateway_dir(tmp_path, broker.port, {NODE: KEY}, [pty.path],
                                  broker=tls)))
    receiver = Receiver(broker.port, tmp_path / "keys", {NODE: KEY})  # the plain listener
    thread = run(gw)
    try:
        pty.start()
        wait_for(lambda: receiver.count() == 300, 30, "records through the TLS listener")
    finally:
        stop(gw, thread)
        pty.close()
    # A wrong password gets the gateway nowhere; it keeps its records meanwhile.
    (tmp_path / "pw").write_text("wrong\n")
    gw = Gateway(load(tmp_path / "gateway.toml"))
    thread = run(gw)
    try:
        more = list(simnode.records(NODE, 320, T0, 25))[300:]
        gw.intake.receive(frame.Decoder().feed(b"".join(frame.record_frame(r, KEY)
                                                        for r in more)))
        time.sleep(1.5)
        assert gw.outbox.depth == 20 and receiver.count() == 300
    finally:
        stop(gw, thread)
        receiver.close()
        broker.stop()


def test_alerts_raised_without_a_broker_are_kept_and_published_later(tmp_path):
    broker = Mosquitto(tmp_path)  # not started yet
    config = gateway_dir(tmp_path, broker.port, {NODE: KEY})
    gw = Gateway(load(config))
    good = record.make(record.ZERO, NODE, 1, 0, T0, record.TQ_NTP, "s", indication=0, e=5,
                       unit="g")
    forged = record.make(record.ZERO, NODE, 1, 0, T0, record.TQ_NTP, "s", indication=5, e=5,
                         unit="g")
    for rec in (good, forged):
        gw.intake.receive(frame.Decoder().feed(frame.record_frame(rec, KEY)))
    assert len(gw.outbox.alerts()) == 1  # on disk, waiting for a broker
    gw.outbox.close()  # the gateway dies before any broker was reachable
    broker.start()
    receiver = Receiver(broker.port, tmp_path / "keys", {NODE: KEY})
    gw = Gateway(load(config))
    thread = run(gw)
    try:
        wait_for(lambda: receiver.alerts, 20, "the alert from the previous run")
        wait_for(lambda: not gw.outbox.alerts(), 10, "the alert deleted on its PUBACK")
    finally:
        stop(gw, thread)
        receiver.close()
        broker.stop()
    assert [(a["kind"], a["seq"]) for a in receiver.alerts] == [("forgery", 1)]
