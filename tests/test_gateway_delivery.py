"""Gateway delivery with a real Mosquitto: nothing lost, duplicates only where harmless.

The gateway runs as `metrotrace gateway run` in its own process, reading a node over a
real pty; the receiver (tests/gwharness.py) opens each envelope and dedups on
(node, seq), as the server does.
"""

from __future__ import annotations

import random
import signal
import sqlite3
import time

from metrotrace.tools import simnode
from tests.gwharness import (
    Mosquitto,
    PtyNode,
    Receiver,
    gateway_dir,
    start_gateway,
    wait_for,
)

NODE = bytes.fromhex("e6614103e7513a2f")
KEY = bytes(range(32))
T0 = 1_763_884_800_000


def wait_delivered(node, receiver, count, outbox, node_timeout) -> None:
    """Every record acknowledged to the node, at the receiver, and gone from the outbox."""
    wait_for(node.done.is_set, node_timeout, "the node to see every record acknowledged")
    wait_for(lambda: receiver.count() == count, 60, "every record at the receiver")
    wait_for(lambda: outbox_depth(outbox) == (0, 0), 30, "the outbox to drain")


def settled(receiver, quiet_s: float = 2.0) -> bool:
    """Nothing more arrived at the receiver for quiet_s."""
    count = receiver.count()
    time.sleep(quiet_s)
    return receiver.count() == count


def outbox_depth(path) -> tuple[int, int]:
    db = sqlite3.connect(path)
    try:
        return (db.execute("SELECT count(*) FROM inbox").fetchone()[0],
                db.execute("SELECT count(*) FROM batches").fetchone()[0])
    finally:
        db.close()



def test_broker_stopped_mid_stream_then_restarted_every_record_arrives_once(tmp_path, broker):
    count = 20_000
    records = list(simnode.records(NODE, count, T0, 7))
    node = PtyNode(NODE, KEY, records, window=2000)
    config = gateway_dir(tmp_path, broker.port, {NODE: KEY}, [node.path])
    receiver = Receiver(broker.port, tmp_path / "keys", {NODE: KEY})
    gateway = start_gateway(config, tmp_path / "gateway.log")
    try:
        node.start()
        wait_for(lambda: receiver.count() > 3000, 60, "records before the outage")
        broker.stop()
        stopped_at = node.acked
        time.sleep(2)  # the node keeps sending; the gateway keeps storing
        assert node.acked > stopped_at, "intake must go on while the uplink is down"
        broker.start()
        wait_delivered(node, receiver, count, tmp_path / "outbox.sqlite", 120)
    finally:
        gateway.send_signal(signal.SIGTERM)
        gateway.wait(20)
        receiver.close()
        node.close()
    expected = {(NODE, seq) for seq in range(1, count + 1)}
    assert set(receiver.records) == expected
    assert receiver.conflicts == 0 and receiver.bad_tags == 0 and not receiver.errors
    # The broker's restart may redeliver what it had in flight to the receiver; every
    # such copy is byte-identical and (node, seq) absorbs it.
    print(f"duplicates at the receiver: {receiver.duplicates}")
    assert receiver.duplicates <= 16 * 500


def test_a_broker_that_comes_back_empty_gets_nothing_until_a_server_is_back(tmp_path):
    """Persistence off: the restarted broker has no server subscription and no retained
    status. Batches published into it would be acknowledged and dropped, so the gateway
    must wait for a server to say it is online on this connection."""
    count = 20_000
    broker = Mosquitto(tmp_path, persistence=False)
    broker.start()
    node = PtyNode(NODE, KEY, list(simnode.records(NODE, count, T0, 5)), window=2000)
    config = gateway_dir(tmp_path, broker.port, {NODE: KEY}, [node.path])
    before = Receiver(broker.port, tmp_path / "keys", {NODE: KEY})
    after = None
    log = tmp_path / "gateway.log"
    gateway = start_gateway(config, log)
    try:
        node.start()
        wait_for(lambda: before.count() > 3000, 60, "records before the outage")
        # A broker without persistence loses what it took and had not yet delivered: let
        # it deliver first. A frozen gateway publishes nothing more and hears no "offline".
        gateway.send_signal(signal.SIGSTOP)
        wait_for(lambda: settled(before), 30, "the broker to deliver what it took")
        broker.stop()
        before.close()  # the server goes away with the broker's state
        broker.start()
        gateway.send_signal(signal.SIGCONT)
        wait_for(lambda: log.read_text().count('"uplink_connected"') >= 2, 30,
                 "the gateway to connect to the empty broker")
        wait_for(node.done.is_set, 120, "the node to see every record acknowledged")
        time.sleep(2)  # time enough to publish the outbox into a broker nobody reads
        waiting = outbox_depth(tmp_path / "outbox.sqlite")
        assert waiting != (0, 0), "the outbox was published with no server listening"
        after = Receiver(broker.port, tmp_path / "keys", {NODE: KEY})  # subscribes, online
        wait_for(lambda: len(before.records.keys() | after.records.keys()) == count, 60,
                 "every record at one server or the other")
        wait_for(lambda: outbox_depth(tmp_path / "outbox.sqlite") == (0, 0), 30,
                 "the outbox to drain")
    finally:
        gateway.send_signal(signal.SIGCONT)
        gateway.send_signal(signal.SIGTERM)
        gateway.wait(20)
        for receiver in (before, after):
            if receiver is not None:
                receiver.close()
        node.close()
        broker.stop()
    print(f"records at the server before the restart: {before.count()}, after it: "
          f"{after.count()}; waiting in the outbox meanwhile (inbox, batches): {waiting}")
    for receiver in (before, after):
        assert receiver.conflicts == 0 and receiver.bad_tags == 0 and not receiver.errors


def test_sigkill_at_random_points_loses_nothing(tmp_path, broker):
    count = 100_000
    rng = random.Random(4)
    records = list(simnode.records(NODE, count, T0, 11))
    node = PtyNode(NODE, KEY, records, window=4000)
    config = gateway_dir(tmp_path, broker.port, {NODE: KEY}, [node.path],
                         batch={"max_records": 1000, "inflight": 8})
    receiver = Receiver(broker.port, tmp_path / "keys", {NODE: KEY})
    log = tmp_path / "gateway.log"
    gateway = start_gateway(config, log)
    kills = 0
    try:
        node.start()
        started = time.monotonic()
        while not node.done.is_set() and kills < 8 and time.monotonic() - started < 90:
            time.sleep(rng.uniform(0.3, 2.5))
            gateway.send_signal(signal.SIGKILL)
            gateway.wait(10)
            kills += 1
            gateway = start_gateway(config, log)
        wait_delivered(node, receiver, count, tmp_path / "outbox.sqlite", 180)
    finally:
        gateway.send_signal(signal.SIGTERM)
        gateway.wait(20)
        receiver.close()
        node.close()
    assert kills >= 3, "the stream ended before the gateway was killed often enough"
    assert set(receiver.records) == {(NODE, seq) for seq in range(1, count + 1)}
    assert receiver.conflicts == 0 and receiver.bad_tags == 0 and not receiver.errors
    # A kill loses at most the PUBACKs of what was in flight: inflight x batch records.
    print(f"kills: {kills}, duplicates at the receiver: {receiver.duplicates}, "
          f"node go-backs: {node.goback}")
    assert receiver.duplicates <= kills * 8 * 1000
