"""The outbox keeps what it accepted across reopen, moves records into batches whole,
and refuses beyond its bound."""

import hashlib

import pytest

from metrotrace.gateway.outbox import Outbox

NODE = b"\x01" * 8


def fill(box, seqs, node=NODE):
    with box.transaction():
        for seq in seqs:
            rec = b"record %d" % seq
            box.remember(node, seq, hashlib.sha256(rec).digest())
            box.add(node, seq, rec, b"t" * 32, 1000 + seq, 2000 + seq, 1)


def test_committed_records_survive_reopen_and_a_rolled_back_chunk_leaves_nothing(tmp_path):
    box = Outbox(tmp_path / "o.sqlite", 100)
    fill(box, [1, 2, 3])
    with pytest.raises(RuntimeError), box.transaction():
        box.remember(NODE, 4, b"d" * 32)
        box.add(NODE, 4, b"record 4", b"t" * 32, 0, 0, 1)
        raise RuntimeError("killed mid-chunk")
    assert box.depth == 3
    box.close()
    again = Outbox(tmp_path / "o.sqlite", 100)
    assert again.depth == 3 and again.digest(NODE, 4) is None
    assert again.digest(NODE, 2) == hashlib.sha256(b"record 2").digest()
    assert again.take_pending(10).records == [b"record 1", b"record 2", b"record 3"]


def test_sealing_moves_records_and_only_a_puback_deletes(tmp_path):
    box = Outbox(tmp_path / "o.sqlite", 100)
    fill(box, range(1, 6))
    rows = box.take_pending(3)
    box.sealed(box.next_batch_seq(), b"envelope-1", rows, backfill=False)
    assert (box.pending_count, box.depth) == (2, 5)
    assert [b.seq for b in box.batches_after(0, 10)] == [1]
    box.close()
    box = Outbox(tmp_path / "o.sqlite", 100)  # after a restart: still there, same bytes
    assert box.batch(1).envelope == b"envelope-1" and box.next_batch_seq() == 2
    assert box.delete_batch(1) == 3 and box.depth == 2
    assert box.delete_batch(1) == 0  # a second PUBACK for it changes nothing


def test_room_shrinks_to_zero_at_the_bound(tmp_path):
    box = Outbox(tmp_path / "o.sqlite", 4)
    fill(box, [1, 2, 3])
    assert box.room() == 1
    fill(box, [4])
    assert box.room() == 0


def test_marks_and_firmware_persist(tmp_path):
    box = Outbox(tmp_path / "o.sqlite", 4)
    with box.transaction():
        box.save_marks({NODE: 41})
        box.set_firmware(NODE, "metro 0.1.0")
    box.close()
    box = Outbox(tmp_path / "o.sqlite", 4)
    assert box.marks() == {NODE: 41} and box.firmware() == {NODE: "metro 0.1.0"}


def sealed_in_order(box, n):
    """Seal the oldest n pending records as one batch; return their bytes."""
    with box.transaction(acked=False):
        run = box.take_pending(n)
        box.sealed(box.next_batch_seq(), b"env", run, backfill=False)
    return run.records


def test_pending_records_come_back_in_order_from_memory_disk_and_past_the_memory_bound(
        tmp_path):
    box = Outbox(tmp_path / "o.sqlite", 100, cache_records=5)
    for first in (1, 5, 9):  # three commits of four: only the first fits in memory
        fill(box, range(first, first + 4))
    assert sealed_in_order(box, 6) == [b"record %d" % s for s in range(1, 7)]
    assert (box.pending_count, box.depth) == (6, 12)
    box.close()
    box = Outbox(tmp_path / "o.sqlite", 100, cache_records=5)  # restarted: from disk
    assert box.pending_count == 6 and box.oldest_pending() == 1007
    fill(box, [13])
    assert box.take_pending(100).records == [b"record %d" % s for s in range(7, 14)]
    assert sealed_in_order(box, 4) == [b"record %d" % s for s in range(7, 11)]
    assert sealed_in_order(box, 10) == [b"record %d" % s for s in range(11, 14)]
    assert box.pending_count == 0 and box.depth == 13 and box.oldest_pending() is None


def test_a_sealing_transaction_that_fails_changes_nothing(tmp_path):
    box = Outbox(tmp_path / "o.sqlite", 100)
    fill(box, range(1, 6))
    with pytest.raises(RuntimeError), box.transaction(acked=False):
        box.sealed(1, b"env", box.take_pending(3), backfill=False)
        raise RuntimeError("killed mid-seal")
    assert (box.pending_count, box.depth, box.batches_after(0, 9)) == (5, 5, [])
    assert sealed_in_order(box, 9) == [b"record %d" % s for s in range(1, 6)]


def test_an_outbox_of_the_old_layout_is_carried_over(tmp_path):
    """One `pending` and one `seen` row per record, SHA-256 digests: what outboxes held
    before the inbox and seen blocks."""
    import sqlite3
    db = sqlite3.connect(tmp_path / "o.sqlite")
    db.executescript("""
        CREATE TABLE seen (node BLOB NOT NULL, seq INTEGER NOT NULL, digest BLOB NOT NULL,
            at INTEGER NOT NULL, PRIMARY KEY (node, seq)) WITHOUT ROWID;
        CREATE TABLE pending (id INTEGER PRIMARY KEY, node BLOB NOT NULL, seq INTEGER NOT NULL,
            record BLOB NOT NULL, tag BLOB NOT NULL, received INTEGER NOT NULL,
            t INTEGER NOT NULL, tq INTEGER NOT NULL);""")
    for seq in (1, 2, 3):
        rec = b"record %d" % seq
        db.execute("INSERT INTO seen VALUES (?, ?, ?, 5)",
                   (NODE, seq, hashlib.sha256(rec).digest()))
        if seq > 1:  # record 1 was already forwarded
            db.execute("INSERT INTO pending (node, seq, record, tag, received, t, tq) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?)", (NODE, seq, rec, b"t" * 32, 9, 9, 1))
    db.commit()
    db.close()
    box = Outbox(tmp_path / "o.sqlite", 100)
    assert box.pending_count == 2 and box.take_pending(9).records == [b"record 2",
                                                                      b"record 3"]
    assert box.digest(NODE, 1) == hashlib.sha256(b"record 1").digest()
    assert box.highest(NODE) == 3 and box.digest(NODE, 4) is None
