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
    assert [r.record for r in again.take_pending(10)] == [b"record 1", b"record 2",
                                                           b"record 3"]


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
