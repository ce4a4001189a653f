# The durable outbox and go-back-N sender: plain functions, run by pytest under
# CPython and by mprun.py under the MicroPython unix port.

import os

from fsutil import fresh_dir, remove_tree

from metro.core import segment
from metro.core.gbn import Sender
from metro.core.outbox import Outbox, OutboxFull


def _payload(seq):
    return b"rec%d" % seq + bytes(40)


def _drain(box):
    cur = box.cursor()
    out = []
    while True:
        got = cur.next()
        if got is None:
            return out
        out.append(got[0])


def test_records_survive_reopen_in_order():
    root = fresh_dir("ob")
    try:
        box = Outbox(root, seg_bytes=300)
        for seq in range(1, 41):
            box.append(seq, _payload(seq))
        assert len(box.segments) > 3
        again = Outbox(root, seg_bytes=300)
        assert again.last_seq() == 40
        assert _drain(again) == list(range(1, 41))
        assert again.cursor().next() == (1, _payload(1))
    finally:
        remove_tree(root)


def test_ack_deletes_whole_segments_but_never_the_newest():
    root = fresh_dir("ob")
    try:
        box = Outbox(root, seg_bytes=300)
        for seq in range(1, 41):
            box.append(seq, _payload(seq))
        before = len(os.listdir(root))
        box.ack(20)
        assert 1 < len(os.listdir(root)) < before
        assert _drain(box) == list(range(21, 41))
        box.ack(40)
        assert len(os.listdir(root)) == 1  # the newest stays: it holds prev
        assert Outbox(root).last_seq() == 40
        assert box.backlog() == 0
    finally:
        remove_tree(root)


def test_damaged_tail_is_cut_and_appends_go_to_a_new_segment():
    root = fresh_dir("ob")
    try:
        box = Outbox(root, seg_bytes=4096)
        for seq in (5, 9, 12):
            box.append(seq, _payload(seq))
        path = root + "/" + os.listdir(root)[0]
        with open(path, "ab") as f:  # a write cut by a reset: half an entry
            f.write(segment.pack(13, _payload(13))[:20])
        box = Outbox(root, seg_bytes=4096)
        assert box.damaged_tails == 1 and box.last_seq() == 12
        box.append(14, _payload(14))
        assert len(os.listdir(root)) == 2
        assert _drain(Outbox(root)) == [5, 9, 12, 14]
    finally:
        remove_tree(root)


def test_corrupt_byte_ends_the_valid_prefix():
    root = fresh_dir("ob")
    try:
        box = Outbox(root)
        for seq in range(1, 6):
            box.append(seq, _payload(seq))
        path = root + "/" + os.listdir(root)[0]
        with open(path, "rb") as f:
            data = bytearray(f.read())
        data[3 * (segment.HEAD + 44) + 20] ^= 0xFF
        with open(path, "wb") as f:
            f.write(data)
        assert _drain(Outbox(root)) == [1, 2, 3]
    finally:
        remove_tree(root)


def test_full_outbox_refuses_and_reserve_takes_events():
    root = fresh_dir("ob")
    try:
        box = Outbox(root, seg_bytes=200, max_bytes=400, reserve_bytes=120)
        seq = 0
        try:
            while True:
                seq += 1
                box.append(seq, _payload(seq))
        except OutboxFull as full:
            assert "bound 400" in str(full)
        box.append(seq + 1, _payload(seq + 1), reserve=True)
        assert box.last_seq() == seq + 1
        box.ack(seq + 1)
        box.append(seq + 2, _payload(seq + 2))
    finally:
        remove_tree(root)


def test_sequence_must_grow():
    root = fresh_dir("ob")
    try:
        box = Outbox(root)
        box.append(7, b"x")
        try:
            box.append(7, b"y")
        except ValueError as e:
            assert "seq must grow" in str(e)
        else:
            raise AssertionError("accepted a repeated seq")
    finally:
        remove_tree(root)


def test_go_back_n_resends_until_acknowledged():
    root = fresh_dir("ob")
    try:
        box = Outbox(root, seg_bytes=300)
        for seq in range(1, 21):
            box.append(seq, _payload(seq))
        tx = Sender(box, window=4, timeout_ms=100, silent_after=2)
        assert [s for s, _ in tx.due(0)] == [1, 2, 3, 4]
        assert tx.due(10) == []  # window full
        assert tx.acked(2, 20) == []
        assert [s for s, _ in tx.due(20)] == [5, 6]
        assert tx.poll(119) == []
        assert tx.poll(120) == []  # silent round 1: go back to 3
        assert [s for s, _ in tx.due(130)] == [3, 4, 5, 6]
        events = tx.poll(130 + 200)  # round 2, timeout doubled
        assert [e["code"] for e in events] == ["gateway_silent"]
        tx.due(400)
        assert [e["code"] for e in tx.acked(20, 410)] == ["gateway_back"]
        assert tx.resends == 8 and box.backlog() == 0
    finally:
        remove_tree(root)


TICKS_PERIOD = 1 << 30  # time.ticks_ms() wraps here on ESP32, RP2040 and the unix port


def _ticks_diff(new, old):
    """time.ticks_diff of MicroPython, for a counter that wraps at TICKS_PERIOD."""
    d = (new - old) & (TICKS_PERIOD - 1)
    return d - TICKS_PERIOD if d >= TICKS_PERIOD // 2 else d


def _ticks_add(t, ms):
    return (t + ms) & (TICKS_PERIOD - 1)


def test_go_back_n_times_out_across_a_wrap_of_the_ms_counter():
    # Records sent 50 ms before ticks_ms wraps, the acknowledgement lost: the timeout
    # must still expire after the wrap (plain subtraction would wait ~12 days).
    root = fresh_dir("obw")
    try:
        box = Outbox(root, seg_bytes=300)
        for seq in range(1, 9):
            box.append(seq, _payload(seq))
        tx = Sender(box, window=4, timeout_ms=100, silent_after=2, diff=_ticks_diff)
        sent_at = TICKS_PERIOD - 50
        assert [s for s, _ in tx.due(sent_at)] == [1, 2, 3, 4]
        assert tx.poll(_ticks_add(sent_at, 99)) == []
        assert tx.due(_ticks_add(sent_at, 99)) == []  # nothing gone back yet
        now = _ticks_add(sent_at, 100)
        assert now == 50  # the counter has wrapped
        assert tx.poll(now) == []  # silent round 1: go back to 1
        assert [s for s, _ in tx.due(now)] == [1, 2, 3, 4]
        assert tx.resends == 4
        assert tx.acked(4, _ticks_add(now, 10)) == []  # the acknowledgement gets through
        assert [s for s, _ in tx.due(_ticks_add(now, 10))] == [5, 6, 7, 8]
        assert tx.poll(_ticks_add(now, 109)) == []  # the timeout restarted at the ack
        assert [s for s, _ in tx.due(_ticks_add(now, 109))] == []
        assert tx.timeout == 100
    finally:
        remove_tree(root)
