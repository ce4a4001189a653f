"""Intake: verify, store, commit, then acknowledge; full outbox refuses; first contact."""

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metrotrace.firmware.metro.wire import frame, record
from metrotrace.gateway.counters import Counters
from metrotrace.gateway.intake import Intake
from metrotrace.gateway.outbox import Outbox
from metrotrace.gateway.verify import Verifier

NODE = bytes.fromhex("0102030405060708")
KEY = b"k" * 32


def frames(seqs, net=1000, tq=record.TQ_NTP):
    recs = [record.make(record.WEIGHING, NODE, s, s - 1, 1_700_000_000_000 + s, tq,
                        "S1", gross=net, tare=0, net=net, e=5, unit="g",
                        flags=record.F_STABLE) for s in seqs]
    return frame.Decoder().feed(b"".join(frame.record_frame(r, KEY) for r in recs))


def make(tmp_path, bound=1000, clock=lambda: 5):
    alerts = []
    box = Outbox(tmp_path / "o.sqlite", bound)
    counters = Counters()
    intake = Intake(Verifier({NODE: KEY}, seen=box), box, counters, clock, alerts.append)
    return intake, box, counters, alerts


def test_acknowledges_after_commit_and_a_resend_is_acknowledged_not_stored(tmp_path):
    intake, box, counters, _ = make(tmp_path)
    (ack,) = intake.receive(frames(range(1, 11)))
    assert (ack.node, ack.seq) == (NODE, 10) and box.depth == 10
    (again,) = intake.receive(frames([9, 10]))
    assert again.seq == 10 and box.depth == 10
    assert counters.snapshot()["duplicate"] == 2
    box.close()
    # the mark is on disk: a restarted gateway acknowledges the same
    intake, box, _, _ = make(tmp_path)
    assert intake.receive(frames([10]))[0].seq == 10


def test_a_failing_store_acknowledges_nothing_and_remembers_nothing(tmp_path):
    intake, box, _, _ = make(tmp_path)

    def broken(*args):
        raise OSError("disk gone")
    box.add = broken
    with pytest.raises(OSError):
        intake.receive(frames([1, 2]))
    assert box.digest(NODE, 1) is None and box.marks() == {}


def test_full_outbox_refuses_new_records_alerts_once_and_still_acks_resends(tmp_path):
    intake, box, counters, alerts = make(tmp_path, bound=5)
    intake.receive(frames(range(1, 6)))
    (ack,) = intake.receive(frames(range(3, 9)))  # 3..5 resent, 6..8 new
    assert ack.seq == 5 and box.depth == 5
    assert counters.snapshot()["rejected"] == {"outbox_full": 3}
    assert [a.kind for a in alerts] == ["outbox_full"]


def test_forgery_is_rejected_and_alerted(tmp_path):
    intake, _, counters, alerts = make(tmp_path)
    intake.receive(frames([1, 2]))
    intake.receive(frames([2], net=5))
    assert counters.snapshot()["rejected"] == {"forgery": 1}
    assert [(a.kind, a.seq) for a in alerts] == [("forgery", 2)]


def test_first_contact_mid_stream_waits_for_the_node_to_go_back(tmp_path):
    # The port opened late: the gateway first hears seq 6. Acknowledging 6..10 would
    # make the node delete 1..5, which the gateway never saw.
    intake, _, _, _ = make(tmp_path)
    assert intake.receive(frames(range(6, 11))) == []
    # The node, unacknowledged, goes back: seq 1 has prev 0, the chain starts there.
    assert [a.seq for a in intake.receive(frames(range(1, 4)))] == [3]
    assert [a.seq for a in intake.receive(frames([4, 5]))] == [10]


def test_first_contact_settles_when_the_lowest_seq_is_resent(tmp_path):
    # A node whose earlier records went to another gateway: no prev = 0 to be seen.
    intake, _, _, _ = make(tmp_path)
    records = frames(range(100, 106))
    assert intake.receive(records[2:]) == []  # 102..105 first (100, 101 lost on open)
    assert intake.receive(records) == []  # the node goes back to 100: lowest is now 100
    (ack,) = intake.receive(records[:1])  # and again: 100 is its oldest
    assert ack.seq == 105


def test_pruned_digests_make_old_resends_stale_never_stored_and_keep_the_outbox_covered(
        tmp_path):
    day = 86_400_000
    clock = [10 * day]
    box = Outbox(tmp_path / "o.sqlite", 1000, clock=lambda: clock[0])
    counters = Counters()
    intake = Intake(Verifier({NODE: KEY}, seen=box), box, counters, lambda: clock[0],
                    lambda a: None)
    intake.receive(frames(range(1, 101)))  # day 10: 1..100, acknowledged up to 100
    clock[0] = 20 * day
    assert box.prune(keep_per_node=10, keep_ms=7 * day) == 0  # all still in the outbox
    box.sealed(box.next_batch_seq(), b"env", box.take_pending(100), False)
    box.delete_batches([1])  # forwarded: the outbox is empty now
    intake.receive(frames(range(101, 121)))  # day 20: 101..120, in the outbox
    # Digests older than 7 days, at or below the mark, beyond the newest 10: 1..100 go.
    assert box.prune(keep_per_node=10, keep_ms=7 * day) == 100
    assert box.digest(NODE, 100) is None and box.digest(NODE, 101) is not None
    (ack,) = intake.receive(frames([50]))  # an old record again (a replay)...
    assert ack.seq == 120 and box.depth == 20  # ...refused, not stored; the mark repeated
    (ack,) = intake.receive(frames([50], net=7))  # other bytes: refused the same way
    assert counters.snapshot()["rejected"] == {"stale": 2}
    (ack,) = intake.receive(frames([110]))  # a kept digest: a duplicate as before
    assert counters.snapshot()["duplicate"] == 1 and box.depth == 20
    (ack,) = intake.receive(frames([121]))  # new records flow
    assert ack.seq == 121 and box.depth == 21


def test_a_node_without_a_clock_gets_the_gateways_time_with_its_ack(tmp_path):
    now = [1_763_884_800_000]
    intake, box, _, _ = make(tmp_path, clock=lambda: now[0])
    (ack,) = intake.receive(frames([1, 2], tq=record.TQ_UNSET))
    assert ack.time == now[0]
    now[0] += 200  # the node has not stamped a record with it yet: not again at once
    assert intake.receive(frames([3], tq=record.TQ_UNSET))[0].time is None
    now[0] += 60_000  # set by the gateway (tq 2): left alone for an hour...
    assert intake.receive(frames([4], tq=record.TQ_GATEWAY))[0].time is None
    now[0] += 3_600_000  # ...then set again, so its drift stays bounded
    assert intake.receive(frames([5], tq=record.TQ_GATEWAY))[0].time == now[0]
    # a node with NTP keeps its own time
    assert intake.receive(frames([6], tq=record.TQ_NTP))[0].time is None
    box.close()


OTHER = bytes.fromhex("0a0b0c0d0e0f1011")


@st.composite
def chunks(draw):
    """Chunks as a port or the Wi-Fi ingress could deliver them: runs of new records,
    resends, a bad tag, other bytes under a used seq, two nodes, a stranger."""
    out = []
    for _ in range(draw(st.integers(1, 6))):
        start = draw(st.integers(1, 40))
        seqs = list(range(start, start + draw(st.integers(1, 12))))
        node = draw(st.sampled_from([NODE, NODE, OTHER, b"\x99" * 8]))
        items = []
        for seq in seqs:
            net = draw(st.sampled_from([1000] * 8 + [5]))
            rec = record.make(record.WEIGHING, node, seq, seq - 1, 1_700_000_000_000 + seq,
                              record.TQ_NTP, "S1", gross=net, tare=0, net=net, e=5, unit="g",
                              flags=record.F_STABLE)
            key = KEY if draw(st.integers(0, 30)) else b"x" * 32
            items.append(frame.record_frame(rec, key))
        out.append(b"".join(items))
    return out


@settings(max_examples=60)
@given(st.lists(chunks(), min_size=1, max_size=4), st.integers(5, 400))
def test_runs_decide_exactly_what_record_by_record_handling_decides(script, bound):
    import tempfile

    from metrotrace.gateway.fastwire import Chunk, FastDecoder

    def play(directory, runs):
        box = Outbox(directory / "o.sqlite", bound)
        counters, alerts = Counters(), []
        intake = Intake(Verifier({NODE: KEY, OTHER: KEY}, seen=box), box, counters,
                        lambda: 7, alerts.append)
        if not runs:
            intake._run = lambda *args: False
        # Both nodes start at their first record, so that later chunks can be runs.
        acks = [intake.receive(frames([1, 2])), intake.receive(Chunk.of(
            frame.Decoder().feed(frame.record_frame(record.make(
                record.ZERO, OTHER, 1, 0, 1, record.TQ_UNSET, None, indication=0, e=5,
                unit="g"), KEY))))]
        acks += [intake.receive(FastDecoder().feed_chunk(b"".join(step))) for step in script]
        state = (acks, counters.snapshot(), alerts, box.depth, intake.acks.marks,
                 box.take_pending(10_000).records, intake.verifier.counts)
        box.close()
        return state
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        assert play(Path(a), True) == play(Path(b), False)


def test_after_a_restart_a_replay_is_a_duplicate_and_other_bytes_a_forgery(tmp_path):
    intake, box, _, _ = make(tmp_path)
    intake.receive(frames(range(1, 301)))  # digests on disk, in blocks
    box.close()
    intake, box, counters, alerts = make(tmp_path)  # restarted: nothing in memory
    (ack,) = intake.receive(frames([120, 121]))  # the same bytes again: harmless
    assert ack.seq == 300 and box.depth == 300
    intake.receive(frames([7], net=5))  # a used seq, other bytes
    intake.receive(frames([150]) + frames([151], net=9))  # both in one chunk
    snapshot = counters.snapshot()
    assert snapshot["duplicate"] == 3 and snapshot["rejected"] == {"forgery": 2}
    assert [(a.kind, a.seq) for a in alerts] == [("forgery", 7), ("forgery", 151)]
    assert box.depth == 300  # neither stored again
