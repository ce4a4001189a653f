"""The gateway's fast frame/record decoder is the firmware's frame.Decoder in effect:
for any byte stream and any chunking, the same frames (type, payload, fields), the same
rejects (reason, detail), in the same order, with the same counts."""

import struct
import zlib

import cbor2
from cobs import cobs as c_cobs
from hypothesis import given, settings
from hypothesis import strategies as st

from metrotrace.firmware.metro.wire import cobs, frame, record
from metrotrace.gateway.fastrecord import decode_raws, named, record_fields
from metrotrace.gateway.fastwire import FastDecoder

KEY = bytes(range(32))
I64 = st.integers(record.MIN_I64, record.MAX_I64)
U64 = st.integers(0, record.MAX_U64)
EDGE = st.sampled_from([0, 1, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32,
                        record.MAX_U64, record.MAX_U64 + 1, -1, -24, -25, -257,
                        record.MIN_I64, record.MIN_I64 - 1, -(2**64), 2**70])


def sometimes(usual, odd):
    """Mostly `usual`, now and then `odd` (edges and wrong values)."""
    return st.integers(0, 2**16).flatmap(lambda n: odd if n % 23 == 11 else usual)


VALUE = {record.INT: sometimes(I64, EDGE), record.UINT: sometimes(U64, EDGE),
         record.TEXT: sometimes(st.text(max_size=30), st.text(min_size=510, max_size=514)),
         record.BYTES: st.binary(max_size=40),
         record.MAP: st.dictionaries(st.text(max_size=8),
                                     st.one_of(I64, st.text(max_size=8), st.binary(max_size=8),
                                               st.none(), st.booleans()), max_size=4)}


@st.composite
def raw_records(draw):
    """An int-keyed record map, mostly valid, often not (a field off, a type wrong)."""
    kind = draw(sometimes(st.sampled_from(sorted(record.BODY)), st.sampled_from([0, 8])))
    raw = {0: draw(sometimes(st.just(1), st.sampled_from([2, True, None]))), 1: kind,
           2: draw(sometimes(st.binary(min_size=1, max_size=16), st.binary(max_size=18))),
           3: draw(sometimes(st.integers(1, record.MAX_U64), EDGE)),
           4: draw(U64), 5: draw(sometimes(st.sampled_from([0, 1, 2]), st.just(3)))}
    seq = raw[3] if isinstance(raw[3], int) and raw[3] > 0 else 1
    raw[7] = draw(sometimes(st.integers(0, seq - 1), EDGE))
    for key, name, typ, required in record.HEADER[6:] + record.BODY.get(kind, ()):
        if name == "unit":
            raw[key] = draw(sometimes(st.sampled_from(record.UNITS), st.just("lb")))
        elif required or draw(st.booleans()):
            raw[key] = draw(VALUE[typ])
    if draw(st.integers(0, 2**16)) % 13 == 5:  # a wrong type, an unknown key, a null
        key = draw(st.integers(-1, 17))
        raw[key] = draw(st.one_of(st.none(), st.booleans(), st.text(max_size=3),
                                  st.lists(st.integers(0, 3), max_size=2), I64))
    if draw(st.integers(0, 2**16)) % 13 == 5 and len(raw) > 1:  # a field missing
        del raw[draw(st.sampled_from(sorted(raw, key=repr)))]
    return raw


def head(major, n, extra):
    """A CBOR head, shortest unless `extra` asks for a longer form than needed."""
    sizes = [s for s, limit in ((0, 24), (1, 1 << 8), (2, 1 << 16), (4, 1 << 32),
                                (8, 1 << 64)) if n < limit]
    size = sizes[min(extra, len(sizes) - 1)]
    if size == 0:
        return bytes([major << 5 | n])
    code = {1: 24, 2: 25, 4: 26, 8: 27}[size]
    return bytes([major << 5 | code]) + n.to_bytes(size, "big")


def loose_encode(obj, defect: str, at: int, count: list[int]) -> bytes:
    """CBOR that cbor2 reads as obj, in deterministic form except for one `defect`
    (a longer head, an indefinite length, keys swapped or made bools, a tag) at item
    number `at`."""
    count[0] += 1
    here = count[0] == at
    extra = 1 if here and defect == "long" else 0
    if obj is None or isinstance(obj, bool) or (isinstance(obj, int) and not
                                                 -(2**64) <= obj < 2**64):
        return cbor2.dumps(obj)
    if isinstance(obj, int):
        out = head(0, obj, extra) if obj >= 0 else head(1, -1 - obj, extra)
    elif isinstance(obj, bytes | str):
        data = obj if isinstance(obj, bytes) else obj.encode("utf-8", "surrogatepass")
        major = 2 if isinstance(obj, bytes) else 3
        out = head(major, len(data), extra) + data
        if here and defect == "indefinite":  # one chunk
            out = bytes([major << 5 | 31]) + out + b"\xff"
    elif isinstance(obj, list):
        out = head(4, len(obj), extra) + b"".join(
            loose_encode(x, defect, at, count) for x in obj)
    else:
        pairs = sorted((loose_encode(k, defect, at, count), loose_encode(v, defect, at, count))
                       for k, v in obj.items())
        if here and defect == "swap" and len(pairs) > 1:
            pairs[0], pairs[-1] = pairs[-1], pairs[0]
        if here and defect == "boolkey":  # key 0 or 1 as False or True (f4, f5)
            pairs = [({b"\x00": b"\xf4", b"\x01": b"\xf5"}.get(k, k), v) for k, v in pairs]
        body = b"".join(k + v for k, v in pairs)
        out = (b"\xbf" + body + b"\xff" if here and defect == "indefinite"
               else head(5, len(pairs), extra) + body)
    return b"\xc1" + out if here and defect == "tag" else out


@st.composite
def record_bytes(draw):
    choice = draw(st.integers(0, 2**16)) % 10
    if choice == 0:
        return draw(st.binary(max_size=80))  # garbage
    raw = draw(raw_records())
    if choice <= 4:
        try:
            return cbor2.dumps(raw, canonical=True)
        except (ValueError, TypeError):
            return b"\xa0"
    defect = draw(st.sampled_from(["long", "indefinite", "swap", "tag", "byte",
                                   "boolkey"]))
    # item 1 is the record's map itself
    at = 1 if defect in ("swap", "boolkey") else draw(st.integers(1, 2 * len(raw) + 1))
    data = loose_encode(raw, defect, at, [0])
    if defect == "byte" and len(data) > 4:  # a byte changed: bad UTF-8, a float, a break
        i = draw(st.integers(0, len(data) - 1))
        data = data[:i] + bytes([draw(st.sampled_from([0xFF, 0xF9, 0xC0, 0x80, 0xED,
                                                       0x7F, 0x1F, 0x00]))]) + data[i + 1:]
    return data


@st.composite
def frames(draw):
    choice = draw(st.integers(0, 2**16)) % 13
    if choice == 0:
        return draw(st.binary(max_size=60))  # line noise, zeros included
    if choice == 1:
        run = draw(st.binary(min_size=1020, max_size=1100)).replace(b"\x00", b"\x01")
        return b"\x00" + run + b"\x00"  # oversize, or just under
    if choice == 2:
        return frame.ack_frame(b"\x01\x02", draw(U64), KEY)
    if choice == 3:  # any type byte, any payload, good CRC
        body = bytes([draw(st.integers(0, 255))]) + draw(st.binary(max_size=40))
        return b"\x00" + cobs.encode(body + struct.pack("<I", frame.crc32(body))) + b"\x00"
    rec = draw(record_bytes())
    tag = b"" if choice == 4 else draw(st.binary(min_size=32, max_size=32))
    data = frame.encode(frame.RECORD, rec + tag)
    if choice == 5:  # damaged on the line: one byte, or CRC
        i = draw(st.integers(1, len(data) - 2))
        data = data[:i] + bytes([draw(st.integers(1, 255))]) + data[i + 1:]
    if choice == 6:  # non-canonical COBS: a long run split by an explicit 0xFF block
        data = b"\x00" + b"\xff" + bytes(range(1, 255)) + data[1:]
    return data


def outputs(items):
    return [("F", i.type, i.payload, i.fields) if isinstance(i, frame.Frame)
            else ("R", i.reason, i.detail) for i in items]


@settings(max_examples=300)
@given(st.lists(frames(), max_size=12), st.lists(st.integers(0, 4000), max_size=8))
def test_fast_decoder_equals_firmware_decoder_for_any_stream_and_chunking(parts, cuts):
    stream = b"".join(parts)
    bounds = sorted({0, len(stream), *[c % (len(stream) + 1) for c in cuts]})
    chunks = [stream[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    slow, fast = frame.Decoder(), FastDecoder()
    for chunk in chunks:
        assert outputs(fast.feed(chunk)) == outputs(slow.feed(chunk))
    assert fast.counts == slow.counts


@settings(max_examples=300)
@given(st.lists(frames(), max_size=12), st.lists(st.integers(0, 4000), max_size=8))
def test_feed_chunk_gives_the_same_records_as_feed(parts, cuts):
    stream = b"".join(parts)
    bounds = sorted({0, len(stream), *[c % (len(stream) + 1) for c in cuts]})
    by_items, by_chunk = FastDecoder(), FastDecoder()
    for a, b in zip(bounds, bounds[1:], strict=False):
        items = by_items.feed(stream[a:b])
        chunk = by_chunk.feed_chunk(stream[a:b])
        frames_ = [i for i in items if isinstance(i, frame.Frame) and i.type == frame.RECORD]
        assert [f.payload for f in frames_] == [
            r + t for r, t in zip(chunk.records, chunk.tags, strict=True)]
        assert [f.fields for f in frames_] == [named(raw) for raw in chunk.raws]
        assert outputs(chunk.others) == outputs([i for i in items if i not in frames_])
    assert by_items.counts == by_chunk.counts


def check_records(recs):
    for rec, raw in zip(recs, decode_raws(recs), strict=True):
        try:
            expected = record.decode(rec)
        except (ValueError, TypeError, KeyError, IndexError):
            assert raw is None
            continue
        assert raw is None or named(raw) == expected
        assert record_fields(rec) == expected


@settings(max_examples=300)
@given(st.lists(record_bytes(), max_size=10))
def test_fast_record_decoding_takes_only_what_the_firmware_accepts_identically(recs):
    check_records(recs)


@st.composite
def mostly_canonical(draw):
    """Canonical bytes of records that are mostly valid (each teaches its byte template,
    so later records laid out alike are read by it and its compiled checks decide), now
    and then one record with a defect."""
    if draw(st.integers(0, 2**16)) % 17 == 3:
        return draw(record_bytes())
    try:
        return cbor2.dumps(draw(raw_records()), canonical=True)
    except (ValueError, TypeError):
        return b"\xa0"


@settings(max_examples=300)
@given(st.lists(mostly_canonical(), min_size=1, max_size=30))
def test_chunks_of_canonical_records_are_checked_like_the_firmware(recs):
    check_records(recs)


@given(st.binary(min_size=4, max_size=300), st.binary(min_size=4, max_size=4))
def test_crc_residue_holds_exactly_when_the_trailer_is_the_crc(body, trailer):
    good = body[:-4] + zlib.crc32(body[:-4]).to_bytes(4, "little")
    assert zlib.crc32(good) == 0x2144DF1C
    other = body[:-4] + trailer
    assert (zlib.crc32(other) == 0x2144DF1C) == (trailer == good[-4:])


@given(st.binary(max_size=600))
def test_c_cobs_encodes_like_the_firmware(data):
    assert c_cobs.encode(data) == cobs.encode(data)


def test_valid_records_take_the_fast_path():
    from metrotrace.tools import simnode
    recs = list(simnode.records(b"\x01" * 8, 300, 1_763_884_800_000, 3))
    decoded = decode_raws(recs)
    # all but the first record (an event with a detail map: the firmware's own path)
    assert sum(f is None for f in decoded) == 1
    assert [named(raw) for raw in decoded[1:]] == [record.decode(r) for r in recs[1:]]


def test_a_real_stream_decodes_as_the_firmware_decodes_it():
    from metrotrace.tools import simnode
    key = bytes(range(32))
    stream = b"".join(frame.record_frame(r, key)
                      for r in simnode.records(b"\x02" * 8, 2000, 1_763_884_800_000, 5))
    stream = stream[:30_000] + b"\x00noise\x00" + stream[30_000:]
    slow, fast = frame.Decoder(), FastDecoder()
    for i in range(0, len(stream), 7000):
        assert outputs(fast.feed(stream[i:i + 7000])) == outputs(slow.feed(stream[i:i + 7000]))
    assert fast.counts == slow.counts


def test_odd_records_among_good_ones_are_left_to_the_firmware():
    from metrotrace.tools import simnode
    good = list(simnode.records(b"\x01" * 8, 40, 1_763_884_800_000, 3))[1:]
    base = cbor2.loads(good[0])
    odd = [cbor2.dumps({**base, 1: [1]}),  # an unhashable kind
           cbor2.dumps({False: 1, True: base[1], **{k: v for k, v in base.items() if k > 1}}),
           cbor2.dumps({**base, 8: 1.5}),  # a float
           cbor2.dumps({**base, 3: 2**64}),  # a bignum (tag 2)
           cbor2.dumps({**base, 6: None})]  # a null
    for at in range(len(odd)):
        recs = good[:10] + odd[at:at + 1] + good[10:]
        check_records(recs)
        assert decode_raws(recs)[10] is None and None not in decode_raws(good)
