"""Property tests of the node wire format (CPython; the vectors also run on MicroPython)."""

import contextlib
import hmac
import random

import cbor2
from hypothesis import given, settings
from hypothesis import strategies as st

from metrotrace.firmware.metro.wire import cbor, cobs, frame, record
from metrotrace.firmware.metro.wire.crc import crc32, crc32_soft
from metrotrace.firmware.metro.wire.tag import hmac_sha256

KEY = bytes(range(32))

_VALUE = {
    record.INT: st.integers(record.MIN_I64, record.MAX_I64),
    record.UINT: st.integers(0, record.MAX_U64),
    record.TEXT: st.text(max_size=40),
    record.BYTES: st.binary(max_size=60),
    record.MAP: st.dictionaries(
        st.text(max_size=12),
        st.one_of(st.integers(record.MIN_I64, record.MAX_I64), st.text(max_size=20),
                  st.binary(max_size=20)),
        max_size=5,
    ),
}


@st.composite
def records(draw, kind=None):
    """A valid named-field record of any kind, built from the schema tables."""
    kind = draw(st.sampled_from(sorted(record.BODY))) if kind is None else kind
    rec = {"v": record.VERSION, "kind": kind}
    rec["node"] = draw(st.binary(min_size=1, max_size=16))
    rec["seq"] = draw(st.integers(1, record.MAX_U64))
    rec["prev"] = draw(st.integers(0, rec["seq"] - 1))
    rec["t"] = draw(st.integers(0, record.MAX_U64))
    rec["tq"] = draw(st.sampled_from((record.TQ_UNSET, record.TQ_NTP, record.TQ_GATEWAY)))
    for _, name, typ, required in record.HEADER[6:] + record.BODY[kind]:
        if name in rec:
            continue
        if name == "unit":
            rec[name] = draw(st.sampled_from(record.UNITS))
        elif required or draw(st.booleans()):
            rec[name] = draw(_VALUE[typ])
    return rec


@given(records())
def test_record_round_trip_every_kind(rec):
    data = record.encode(rec)
    assert record.decode(data) == rec
    # An independent CBOR implementation reads the same map.
    assert cbor2.loads(data)[3] == rec["seq"]


@given(records())
def test_record_bytes_are_canonical_cbor(rec):
    data = record.encode(rec)
    raw = cbor2.loads(data)
    if "detail" not in rec:  # integer keys 0..23: length-first and bytewise order agree
        assert cbor2.dumps(raw, canonical=True) == data


@given(st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**64), 2**64 - 1), st.binary(),
              st.text()),
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(st.one_of(st.integers(-1000, 1000), st.text(max_size=5)), children,
                        max_size=5),
    ),
    max_leaves=20,
))
def test_cbor_round_trip_and_agrees_with_cbor2(obj):
    try:
        data = cbor.encode(obj)
    except ValueError:  # nesting beyond MAX_DEPTH
        return
    assert cbor.decode(data) == obj
    assert cbor2.loads(data) == obj


@given(st.binary(max_size=300))
def test_cbor_decode_raises_only_value_error(data):
    with contextlib.suppress(ValueError):
        cbor.decode(data)


@given(st.binary(max_size=1200))
def test_cobs_round_trip(data):
    encoded = cobs.encode(data)
    assert 0 not in encoded
    assert cobs.decode(encoded) == data


@given(st.binary(max_size=200))
def test_crc_fallback_matches_binascii(data):
    assert crc32_soft(data) == crc32(data)


@given(st.binary(max_size=100), st.binary(max_size=300))
def test_hmac_matches_stdlib(key, msg):
    assert hmac_sha256(key, msg) == hmac.new(key, msg, "sha256").digest()


def _decode_all(data, chunk=None):
    dec = frame.Decoder()
    out = []
    step = chunk or len(data) or 1
    for i in range(0, len(data), step):
        out.extend(dec.feed(data[i : i + step]))
    return out, dec


@given(records(), st.integers(1, 50))
def test_frame_round_trip_in_any_chunking(rec, chunk):
    data = frame.record_frame(record.encode(rec), KEY)
    out, dec = _decode_all(data, chunk)
    assert len(out) == 1 and out[0].fields == rec and not dec.counts
    assert out[0].split_tag()[1] == hmac_sha256(KEY, record.encode(rec))


def _only_original_or_rejected(damaged, original_rec):
    """A damaged frame must never decode to a record other than the original."""
    out, dec = _decode_all(damaged)
    frames = [o for o in out if isinstance(o, frame.Frame)]
    rejects = [o for o in out if isinstance(o, frame.Reject)]
    assert sum(dec.counts.values()) == len(rejects)
    for f in frames:
        assert f.fields == original_rec
    return frames, rejects


@given(records(), st.data())
def test_single_byte_corruption_is_detected(rec, data):
    good = frame.record_frame(record.encode(rec), KEY)
    i = data.draw(st.integers(1, len(good) - 2))  # inside the delimiters
    value = data.draw(st.integers(0, 255).filter(lambda b: b != good[i]))
    damaged = good[:i] + bytes([value]) + good[i + 1 :]
    frames, rejects = _only_original_or_rejected(damaged, rec)
    assert not frames and rejects


@given(records(), st.data())
def test_truncation_is_detected_and_next_frame_survives(rec, data):
    good = frame.record_frame(record.encode(rec), KEY)
    cut = data.draw(st.integers(2, len(good) - 2))
    stream = good[:cut] + good  # reset mid-frame, then the resend
    frames, rejects = _only_original_or_rejected(stream, rec)
    assert len(frames) == 1 and len(rejects) == 1


@given(records(), st.data())
def test_inserted_byte_is_detected(rec, data):
    good = frame.record_frame(record.encode(rec), KEY)
    i = data.draw(st.integers(1, len(good) - 1))
    value = data.draw(st.integers(0, 255))
    damaged = good[:i] + bytes([value]) + good[i:]
    frames, rejects = _only_original_or_rejected(damaged, rec)
    if value == 0 and i in (1, len(good) - 1):
        assert len(frames) == 1 and not rejects  # an extra delimiter at the edge is no harm
    else:
        assert not frames and rejects


@settings(deadline=None, max_examples=1)
@given(st.randoms(use_true_random=False))
def test_decoder_survives_100k_random_byte_strings(rng):
    dec = frame.Decoder()
    gen = random.Random(rng.random())
    frames = 0
    for _ in range(100_000):
        n = gen.randrange(0, 64)
        chunk = gen.randbytes(n)
        for item in dec.feed(chunk):
            assert isinstance(item, frame.Frame | frame.Reject)
            frames += isinstance(item, frame.Frame)
    assert sum(dec.counts.values()) > 1000  # it saw and counted rubbish
    # and it still reads a good frame afterwards
    good = frame.record_frame(record.make(record.ZERO, b"\x01", 1, 0, 0, 0, indication=0, e=1,
                                          unit="g"), KEY)
    assert [type(o) for o in dec.feed(b"\x00" + good)][-1] is frame.Frame


@given(records(), records())
def test_frames_back_to_back_with_garbage_between(a, b):
    stream = (frame.record_frame(record.encode(a), KEY) + b"\x55\xaa\x00\x07\x01"
              + frame.record_frame(record.encode(b), KEY))
    out, dec = _decode_all(stream, 13)
    frames = [o.fields for o in out if isinstance(o, frame.Frame)]
    assert frames == [a, b] and sum(dec.counts.values()) == 2  # "55 aa" and "07 01"


@given(st.sampled_from([frame.ACK, frame.TIME, frame.RECORD]), st.binary(max_size=120))
def test_parse_control_gives_a_value_or_a_reject_never_an_exception(ftype, payload):
    node = b"\x01\x02"
    result = frame.parse_control(frame.Frame(ftype, payload), node, KEY)
    assert isinstance(result, frame.Reject) and result.reason == "control"
    valid = frame.Decoder().feed(frame.ack_frame(node, len(payload), KEY))[0]
    assert frame.parse_control(valid, node, KEY) == len(payload)
