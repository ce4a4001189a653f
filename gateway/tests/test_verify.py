"""The gateway's record checks: tag, node, sequence; every rejection has a reason."""

import hashlib

import pytest

from metrotrace.firmware.metro.wire import frame, record
from metrotrace.firmware.metro.wire.tag import hmac_sha256
from metrotrace.gateway.verify import (
    ACCEPTED,
    BAD_TAG,
    DUPLICATE,
    FORGERY,
    REJECTED,
    UNKNOWN_NODE,
    MemorySeen,
    Verifier,
)

NODE = bytes.fromhex("0102030405060708")
KEY = b"k" * 32


def weighing(seq, net=1000, node=NODE):
    return record.make(record.WEIGHING, node, seq, seq - 1, 1_700_000_000_000 + seq,
                       record.TQ_NTP, "S1", gross=net, tare=0, net=net, e=5, unit="g",
                       flags=record.F_STABLE)


def as_frame(rec_bytes, key=KEY):
    (decoded,) = frame.Decoder().feed(frame.record_frame(rec_bytes, key))
    return decoded


def test_good_record_is_accepted_once_then_a_harmless_duplicate():
    v = Verifier({NODE: KEY})
    first = v.check(as_frame(weighing(1)))
    again = v.check(as_frame(weighing(1)))
    assert (first.status, first.reason) == (ACCEPTED, None)
    assert (again.status, again.reason) == (DUPLICATE, None) and again.ok
    assert v.counts == {"accepted": 1, "duplicate": 1}


def test_wrong_tag_is_rejected():
    v = Verifier({NODE: KEY})
    verdict = v.check(as_frame(weighing(1), key=b"not the node key"))
    assert (verdict.status, verdict.reason) == (REJECTED, BAD_TAG) and not verdict.ok


def test_tampered_value_with_old_tag_is_rejected():
    good = as_frame(weighing(1, net=1000))
    tampered_bytes = weighing(1, net=900)
    tag = good.split_tag()[1]
    (tampered,) = frame.Decoder().feed(frame.encode(frame.RECORD, tampered_bytes + tag))
    assert Verifier({NODE: KEY}).check(tampered).reason == BAD_TAG


def test_unknown_node_is_rejected():
    stranger = bytes.fromhex("ffffffff")
    verdict = Verifier({NODE: KEY}).check(as_frame(weighing(1, node=stranger)))
    assert (verdict.status, verdict.reason) == (REJECTED, UNKNOWN_NODE)


def test_reused_sequence_with_other_bytes_is_a_forgery():
    v = Verifier({NODE: KEY})
    v.check(as_frame(weighing(7, net=1000)))
    verdict = v.check(as_frame(weighing(7, net=5)))
    assert (verdict.status, verdict.reason) == (REJECTED, FORGERY)
    # the good record is still the one remembered, and new records keep flowing
    assert v.seen.digest(NODE, 7) == as_frame(weighing(7, net=1000)).split_tag()[1]
    assert v.check(as_frame(weighing(8))).status == ACCEPTED
    assert v.counts == {"accepted": 2, FORGERY: 1}


def test_seen_store_is_shared_across_verifier_restarts():
    seen = MemorySeen()
    Verifier({NODE: KEY}, seen).check(as_frame(weighing(3)))
    assert Verifier({NODE: KEY}, seen).check(as_frame(weighing(3, net=1))).reason == FORGERY


def test_check_refuses_non_record_frames():
    (ack,) = frame.Decoder().feed(frame.ack_frame(NODE, 1, KEY))
    with pytest.raises(ValueError, match="record frames"):
        Verifier({NODE: KEY}).check(ack)


def test_stdlib_hmac_in_gateway_equals_firmware_hmac():
    rec = weighing(1)
    assert as_frame(rec).split_tag()[1] == hmac_sha256(KEY, rec)


@pytest.mark.parametrize("key_len", [0, 1, 32, 64, 65, 200])
def test_tagger_is_hmac_sha256_for_any_key_length(key_len):
    import hmac

    from metrotrace.gateway.verify import Tagger
    key = bytes(range(256))[:key_len]
    messages = [b"", b"x", weighing(1), bytes(range(256)) * 3]
    expected = [hmac.digest(key, m, "sha256") for m in messages]
    assert Tagger(key).tags(messages) == expected
    assert [Tagger(key).tag(m) for m in messages] == expected


def test_a_run_is_accepted_whole_or_not_at_all():
    records = [weighing(s) for s in (1, 2, 3)]
    tags = [hmac_sha256(KEY, r) for r in records]
    v = Verifier({NODE: KEY})
    bad = tags[:1] + [b"\x00" * 32] + tags[2:]
    assert not v.accept_run(NODE, [1, 2, 3], records, bad)  # one bad tag: nothing decided
    assert not v.accept_run(NODE, [1, 3, 2], records, tags)  # not rising: one by one
    assert not v.accept_run(NODE, [1, 2, 3], records, tags, floor=1)  # at or below the mark
    assert not v.accept_run(b"\x09" * 8, [1, 2, 3], records, tags)  # unknown node
    assert v.seen.highest(NODE) == -1 and v.counts == {}
    assert v.accept_run(NODE, [1, 2, 3], records, tags)
    assert v.counts == {"accepted": 3} and v.seen.digest(NODE, 2) == tags[1]
    assert not v.accept_run(NODE, [3, 4], records[2:] + [weighing(4)],
                            tags[2:] + [hmac_sha256(KEY, weighing(4))])  # 3 seen: a resend
    assert v.judge(NODE, 3, records[2], tags[2]) == (DUPLICATE, None)


def test_replay_and_forgery_are_told_apart_by_a_sha256_digest_on_file_too():
    """Outboxes before tag digests kept SHA-256 of the record: still recognised."""
    seen = MemorySeen()
    seen.remember(NODE, 5, hashlib.sha256(weighing(5)).digest())
    v = Verifier({NODE: KEY}, seen)
    assert v.check(as_frame(weighing(5))).status == DUPLICATE
    assert v.check(as_frame(weighing(5, net=7))).reason == FORGERY
