"""Batches: when they are due, live and backfill never mixed, envelopes that open."""

from metrotrace.gateway.batcher import Batcher
from metrotrace.gateway.envelope import open_envelope
from metrotrace.gateway.keys import KeyRing
from metrotrace.gateway.pending import Pending
from metrotrace.gateway.window import Backoff, Window

TOPIC = "metrotrace/v1/gw/g/up"
NOW = 10_000_000


def run(*recs):
    """A Pending run of (i, received, t, tq)."""
    return Pending([b"rec%d" % r[0] for r in recs], [bytes([r[0]]) * 32 for r in recs],
                   [r[2] for r in recs], [r[3] for r in recs], [r[1] for r in recs])


def rec(i, received=NOW, t=NOW, tq=1):
    return (i, received, t, tq)


def test_due_on_size_or_age(tmp_path):
    b = Batcher("g", TOPIC, KeyRing.create(tmp_path, 0), max_records=10, window_ms=200)
    assert not b.due(0, None, NOW)
    assert b.due(10, NOW, NOW)
    assert not b.due(3, NOW - 100, NOW) and b.due(3, NOW - 200, NOW)


def test_live_and_backfill_records_go_in_separate_batches(tmp_path):
    ring = KeyRing.create(tmp_path, 0)
    b = Batcher("g", TOPIC, ring, max_records=10, window_ms=0, backfill_after_ms=60_000)
    old = NOW - 120_000
    rows = run(rec(1, received=old), rec(2, t=old), rec(3), rec(4, t=old, tq=0))
    first = b.seal(rows, 7, NOW)
    assert first.backfill and first.records.records == [b"rec1", b"rec2"]
    second = b.seal(rows[2:], 8, NOW)  # tq 0: the node's clock was never set; not old
    assert not second.backfill and second.records.records == [b"rec3", b"rec4"]
    key = ring.signing(NOW).key.public_key()
    opened = open_envelope(first.envelope, TOPIC, lambda kid: key)
    assert opened.batch.seq == 7 and opened.batch.backfill
    assert opened.batch.records == ((b"rec1", b"\x01" * 32), (b"rec2", b"\x02" * 32))


def test_window_bounds_what_is_in_flight_and_forgets_it_on_reset():
    w = Window(2)
    w.sent(11, 1, 500)
    w.sent(12, 2, 500)
    assert w.room() == 0 and w.cursor == 2
    assert w.acked(11) == (1, 500) and w.acked(11) is None and w.room() == 1
    assert w.refused(12) == 2 and w.refused(12) is None
    assert w.take_retry() == 2 and w.take_retry() is None
    w.reset()
    assert w.room() == 2 and w.cursor == 0


def test_backoff_doubles_to_a_cap_and_resets():
    b = Backoff(0.5, 3)
    assert [b.delay() for _ in range(5)] == [0.5, 1, 2, 3, 3]
    b.reset()
    assert b.delay() == 0.5
