# The node's record-making on bad input: plain functions for pytest (CPython) and
# mprun.py (MicroPython). Each bad input must give a clear event and no crash.

from fsutil import fresh_dir, remove_tree

from metro.app import console, params
from metro.app.node import Node
from metro.core import flow, weigh
from metro.core.clock import Clock
from metro.core.gbn import Sender
from metro.core.outbox import Outbox
from metro.core.producer import Producer
from metro.core.scale import Scale
from metro.core.seq import SeqCounter
from metro.drivers import scaleproto
from metro.wire import frame, record

NODE = b"\xe6\x61\x41\x03\xe7\x51\x3a\x2f"
KEY = bytes(range(32))


class _Store:
    def __init__(self):
        self.data = None

    def read(self):
        return self.data

    def write(self, data):
        self.data = data


class _Ticks:
    def __init__(self):
        self.ms = 0

    def __call__(self):
        return self.ms


def _node(root, max_bytes=65536, seg_bytes=1024):
    ticks = _Ticks()
    box = Outbox(root, seg_bytes=seg_bytes, max_bytes=max_bytes, reserve_bytes=600)
    clock = Clock(ticks, lambda a, b: a - b)
    logged = []
    prod = Producer(NODE, KEY, SeqCounter(_Store()), box, clock, logged.append)
    scale = Scale(weigh.Calibration(0, 10, 1), e=5, max_load=15000, window=3)
    pump = flow.Dispenser(kfactor=1000000, d=1, max_hz=100)
    node = Node(prod, Sender(box, window=4, timeout_ms=100, silent_after=2), clock,
                "metro test", scale, "NAWI-1", pump, "PUMP-1", "SCAN-1")
    return node, ticks, logged


def _records(node):
    cur = node.producer.outbox.cursor()
    out = []
    while True:
        got = cur.next()
        if got is None:
            return out
        out.append(record.decode(got[1][:-32]))


def _codes(node):
    return [r["code"] for r in _records(node) if r["kind"] == record.EVENT]


def test_scan_then_weighing_is_linked_and_bad_check_digit_is_an_event():
    root = fresh_dir("node")
    try:
        node, ticks, _ = _node(root)
        for _ in range(3):
            node.weigh(0, ticks())
        assert node.scanned(b"]E04006381333932\r\n", 0) is not None  # bad check digit
        seq = node.scanned(b"]E04006381333931\r\n", 0)
        for _ in range(4):
            ticks.ms += 100
            node.weigh(12500, ticks.ms)
        recs = _records(node)
        (w,) = [r for r in recs if r["kind"] == record.WEIGHING]
        assert w["link"] == seq and w["net"] == 1250
        (ev,) = [r for r in recs if r["kind"] == record.EVENT]
        assert ev["code"] == "scan_rejected" and ev["detail"]["why"] == "code: bad check digit"
        chain = [r["prev"] for r in recs[1:]]
        assert chain == [r["seq"] for r in recs[:-1]]
    finally:
        remove_tree(root)


def test_garbled_scale_and_absurd_pulse_rate_are_events():
    root = fresh_dir("node")
    try:
        node, ticks, _ = _node(root)
        try:
            scaleproto.parse_sics(b"S S 1.2?4 kg")
        except scaleproto.ProtocolError as err:
            node.driver_error("scale", err)
        node.driver_error("scale", OSError("again"))  # a streak: one event
        node.flow(0, True, 0)
        node.flow(50000, True, 1000)
        node.flow(50000, False, 1100)
        assert _codes(node) == ["driver_error", "pulse_rate"]
        (d,) = [r for r in _records(node) if r["kind"] == record.DISPENSE]
        assert d["pulses"] == 50000 and d["flags"] & flow.FLAG_RATE
    finally:
        remove_tree(root)


def test_full_outbox_blocks_weighings_with_an_event_and_resumes():
    root = fresh_dir("node")
    try:
        node, ticks, logged = _node(root, max_bytes=1500)
        while node.producer.blocked is None:
            ticks.ms += 10
            node.scanned(b"]E04006381333931", ticks.ms)
        assert node.producer.blocked == "buffer_full" and "buffer_full" in logged[0]
        assert node.scanned(b"]E04006381333931", ticks.ms) is None
        assert node.producer.refused == 2  # the one that found it full, and this one
        node.flow(0, True, 0)  # fuel that flows is recorded from the reserve
        node.flow(100, False, 5000)
        kinds = [r["kind"] for r in _records(node)]
        assert kinds[-2:] == [record.EVENT, record.DISPENSE]
        node.sender.acked(node.producer.prev, 0)  # the gateway catches up
        assert node.scanned(b"]E04006381333931", 1) is not None
        assert _codes(node)[-1] == "buffer_ok"
    finally:
        remove_tree(root)


def test_silent_gateway_is_an_event_and_acks_and_time_need_the_key():
    root = fresh_dir("node")
    try:
        node, ticks, _ = _node(root)
        node.producer.event("power_up", {"reset": "PWRON"})
        for now in (0, 100, 300, 700):
            node.sender.due(now)
            for ev in node.sender.poll(now + 1000):
                node.producer.event(ev["code"], ev["detail"])
        assert "gateway_silent" in _codes(node)
        forged = frame.Decoder().feed(frame.ack_frame(NODE, 99, b"not the key"))[0]
        node.control(forged, KEY, 0)
        assert node.rejects == 1 and node.producer.outbox.acked == 0
        (t,) = frame.Decoder().feed(frame.time_frame(NODE, 1763884800000, KEY))
        node.control(t, KEY, 0)
        last = _records(node)[-1]
        assert last["code"] == "clock_set" and last["tq"] == 2
        assert last["t"] == 1763884800000
    finally:
        remove_tree(root)


def test_param_change_is_audited_durable_and_bad_ones_change_nothing():
    root = fresh_dir("node")
    try:
        node, _, _ = _node(root)
        node.params = params.load(root, {})
        cmd = b'{"param": {"name": "dispenser.kfactor", "value": 2000000, "by": "officer"}}'
        assert console.handle(node, cmd) is None
        ev = _records(node)[-1]
        assert ev["code"] == "param_change" and node.dispenser.kfactor == 2000000
        assert ev["detail"] == {"param": "dispenser.kfactor", "old": 1000000, "new": 2000000,
                                "by": "officer", "n": 1}
        cfg = {"dispenser": {"kfactor": 1}, "scale": {"cal": {"span_raw": 1}}}
        assert params.load(root, cfg)["n"] == 1 and cfg["dispenser"]["kfactor"] == 2000000
        for bad, why in ((b'{"param": {"name": "scale.e", "value": 1}}', "param.name"),
                         (b'{"param": {"name": "dispenser.d", "value": true}}', "param.value"),
                         (b'{"seal": "ajar"}', "seal"), (b"{", "command: not a JSON"),
                         (b'{"load": 5}', "command: unknown load")):
            assert console.handle(node, bad).startswith(why), bad
        assert console.handle(node, b'{"seal": "open"}') is None
        assert _codes(node)[-2:] == ["param_change", "seal"]
        assert params.load(root, {})["n"] == 1  # refused changes left no trace
        node.flow(0, True, 0)  # a dispense is running: K stays until it ends
        assert "running" in console.handle(
            node, b'{"param": {"name": "dispenser.kfactor", "value": 5}}')
    finally:
        remove_tree(root)


def _producer(root, tally, lease, max_bytes=600, reserve_bytes=200):
    box = Outbox(root, seg_bytes=200, max_bytes=max_bytes, reserve_bytes=reserve_bytes)
    logged = []
    prod = Producer(NODE, KEY, SeqCounter(lease), box, Clock(_Ticks(), lambda a, b: a - b),
                    logged.append, tally)
    return prod, logged


def test_records_lost_to_a_full_reserve_are_counted_on_flash_and_told():
    root = fresh_dir("node")
    try:
        tally, lease = _Store(), _Store()
        prod, logged = _producer(root, tally, lease)
        while prod.blocked is None:  # measurements fill the outbox to its bound...
            prod.emit("scan", "SCAN-1", {"code": b"]E04006381333931", "symbology": "]E0"})
        while prod.unstored < 3:  # ...then dispenses fill the reserve: lost, counted
            prod.emit("dispense", "PUMP-1", {"volume": 1000, "pulses": 1000,
                                             "kfactor": 1000000, "t_start": 0,
                                             "unit": "mL", "d": 1})
        assert tally.data == b"3" and "3 unstored" in logged[-1]
        prod.report_unstored()  # no room: not a new loss, and the count stays
        assert prod.unstored == 3 and prod.unstored_told == 0
        # A reset: the count comes back from flash, not from RAM.
        prod, _ = _producer(root, tally, lease)
        assert prod.unstored == 3
        prod.outbox.ack(prod.prev)  # the gateway catches up: room again
        prod.blocked, prod.full_at = "buffer_full", 10 ** 6
        prod.emit("scan", "SCAN-1", {"code": b"]E04006381333931", "symbology": "]E0"})
        ok = [r for r in _records_of(prod) if r.get("code") == "buffer_ok"]
        assert ok[0]["detail"] == {"refused": 0, "unstored": 3}
        assert prod.unstored_told == 3
        prod.report_unstored()  # told already: no event
        assert [r.get("code") for r in _records_of(prod)].count("unstored") == 0
    finally:
        remove_tree(root)


def _records_of(prod):
    cur = prod.outbox.cursor()
    out = []
    while True:
        got = cur.next()
        if got is None:
            return out
        out.append(record.decode(got[1][:-32]))


def test_unstored_count_is_in_power_up_and_beside_the_status_record():
    root = fresh_dir("node")
    try:
        node, _, _ = _node(root)
        node.producer.unstored = 2  # as read back from flash after a reset
        node.power_up("WDT", "ab" * 32)
        assert _records(node)[-1]["detail"]["unstored"] == 2
        node.status(1000)
        assert [r["kind"] for r in _records(node)][-1] == record.STATUS  # nothing beside
        node.producer.unstored = 5  # three more lost since
        node.status(1000)
        last = _records(node)[-1]
        assert last["code"] == "unstored" and last["detail"] == {"count": 5}
    finally:
        remove_tree(root)


def test_check_of_a_scale_and_of_a_dispenser_through_the_console():
    root = fresh_dir("node")
    try:
        node, ticks, _ = _node(root)
        for _ in range(3):
            node.weigh(0, ticks())
        for _ in range(3):
            ticks.ms += 100
            node.weigh(20000, ticks.ms)  # 2 kg test weight
        assert console.handle(node, b'{"check": {"reference": 2000, "ref_id": "TW-7"}}') \
            is None
        assert "no delivery" in console.handle(
            node, b'{"check": {"reference": 20000, "inst": "PUMP-1"}}')
        node.flow(0, True, 0)
        node.flow(20, True, 1000)  # kfactor 10^6: 1 mL per pulse
        node.flow(20, False, 1100)
        cmd = b'{"check": {"reference": 21, "ref_id": "PM-20L", "inst": "PUMP-1"}}'
        assert console.handle(node, cmd) is None
        assert "already checked" in console.handle(node, cmd)
        for bad, why in ((b'{"check": {"reference": 5, "inst": "X"}}', "check.inst"),
                         (b'{"check": {"reference": 5, "ref_id": 7}}', "check.ref_id"),
                         (b'{"check": {"reference": 0}}', "check: expected")):
            assert console.handle(node, bad).startswith(why), bad
        scale, pump = [r for r in _records(node) if r["kind"] == record.CHECK]
        assert (scale["inst"], scale["indication"], scale["reference"], scale["unit"],
                scale["ref_id"]) == ("NAWI-1", 2000, 2000, "g", "TW-7")
        assert (pump["inst"], pump["indication"], pump["reference"], pump["unit"],
                pump["raw"], pump["e"], pump["ref_id"]) == ("PUMP-1", 20, 21, "mL", 20, 1,
                                                             "PM-20L")
    finally:
        remove_tree(root)
