"""The server's fast record decoder agrees with the firmware's own decoder."""

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from metrotrace.firmware.metro.wire import record
from metrotrace.server.ingest import RecordError
from metrotrace.server.ingest.columns import _fast, _row, decode, decode_many
from metrotrace.server.ingest.synth import Site
from metrotrace.server.store.rows import RecordRow
from tests.test_wire_properties import records

TAG = b"t" * 32
BIG = (1 << 63) - 1


@given(records())
def test_valid_records_decode_like_the_firmware(rec):
    data = record.encode(rec)
    big = any(rec.get(n, 0) > BIG for n in ("seq", "t", "prev", "e", "d", "flags", "link"))
    if big:  # the store keeps these as BIGINT: refused, and the error names the field
        with pytest.raises(RecordError, match="beyond the store's signed 64-bit range"):
            decode(data, TAG)
        return
    row = decode(data, TAG)
    fields = record.decode(data)
    assert (row.node, row.seq, row.kind, row.t, row.tq, row.prev) == (
        fields["node"], fields["seq"], fields["kind"], fields["t"], fields["tq"], fields["prev"])
    assert row.inst == fields.get("inst") and row.unit == fields.get("unit")
    assert row.e == fields.get("e", fields.get("d"))
    assert row.record == data and row.tag == TAG


@given(st.dictionaries(st.integers(-1, 17), st.one_of(
    st.integers(-(1 << 64), 1 << 64), st.text(max_size=5), st.binary(max_size=17), st.none(),
    st.booleans(), st.floats(), st.lists(st.integers(), max_size=2)), max_size=16))
def test_any_cbor_map_is_accepted_only_if_the_firmware_accepts_it(raw):
    data = cbor2.dumps(dict(sorted(raw.items())))  # canonical key order: compare fields only
    try:
        fields = record.decode(data)
    except ValueError:
        fields = None
    try:
        row = decode(data, TAG)
    except RecordError:
        row = None
    if fields is None:
        assert row is None
    elif all(fields.get(n, 0) <= BIG for n in ("seq", "t", "prev")):
        assert row is not None and row.seq == fields["seq"]


def test_decode_many_yields_errors_in_place():
    good = record.make(record.ZERO, b"\x01", 5, 4, 1000, 1, indication=-5, e=5, unit="g")
    out = decode_many([(good, TAG), (b"\xa1\x00", TAG), (good, TAG)])
    assert [type(x).__name__ for x in out] == ["RecordRow", "RecordError", "RecordRow"]
    assert str(out[1]) == "record: not CBOR"


# -- the shape fast path: it only ever accepts, and then exactly as the slow path does ----

def _slow(raw, data):
    try:
        return _row(raw, data, TAG)
    except RecordError:
        return None


def _assert_fast_agrees(raw, data=b"d"):
    fast = _fast(raw, data, TAG)
    if fast is not None:
        assert fast == _slow(raw, data) and type(fast) is RecordRow
    return fast


ANY_VALUE = st.one_of(st.integers(-(1 << 65), 1 << 65), st.integers(-3, 20), st.text(max_size=4),
                      st.binary(max_size=17), st.none(), st.booleans(), st.floats(),
                      st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
                      st.sampled_from(["g", "kg", "lb", "x" * 513, b"n" * 17]))


@given(records())
def test_fast_path_equals_the_slow_path_on_valid_records(rec):
    data = record.encode(rec)
    raw = cbor2.loads(data)
    fast = _assert_fast_agrees(raw, data)
    small = all(v <= BIG for v in raw.values() if type(v) is int)
    if small and all(v is not None and type(v) is not dict for v in raw.values()):
        assert fast is not None  # the fast path takes every plain record


@given(records(), st.data())
def test_fast_path_equals_the_slow_path_on_mutated_records(rec, data):
    raw = cbor2.loads(record.encode(rec))
    for _ in range(data.draw(st.integers(1, 3))):
        action = data.draw(st.sampled_from(["set", "drop", "add", "shuffle", "boolkey"]))
        keys = list(raw)
        if action == "set":
            raw[data.draw(st.sampled_from(keys))] = data.draw(ANY_VALUE)
        elif action == "drop" and keys:
            del raw[data.draw(st.sampled_from(keys))]
        elif action == "add":
            raw[data.draw(st.integers(-2, 20))] = data.draw(ANY_VALUE)
        elif action == "shuffle":
            raw = dict(data.draw(st.permutations(list(raw.items()))))
        elif action == "boolkey" and 1 in raw:
            raw = {(True if k == 1 else k): v for k, v in raw.items()}
    _assert_fast_agrees(raw)


@given(st.dictionaries(st.integers(-1, 17), ANY_VALUE, max_size=16))
def test_fast_path_equals_the_slow_path_on_any_map(raw):
    _assert_fast_agrees(raw)


@given(st.lists(records(), min_size=1, max_size=30), st.data())
def test_decode_many_equals_decoding_one_by_one(recs, data):
    pairs = [(record.encode(r), TAG) for r in recs]
    for i in data.draw(st.lists(st.integers(0, len(pairs) - 1), max_size=3)):
        d = pairs[i][0]
        cut = data.draw(st.integers(0, len(d)))
        pairs[i] = (d[:cut] + data.draw(st.binary(max_size=3)) + d[cut:], TAG)
    expected = []
    for d, t in pairs:
        try:
            expected.append(decode(d, t))
        except RecordError as e:
            expected.append(str(e))
    got = [str(x) if isinstance(x, RecordError) else x for x in decode_many(pairs)]
    assert got == expected


def test_fast_path_takes_the_synthetic_stream():
    site = Site(nodes=3)
    pairs = [site.weighing(i % 3, 1000 + i, 500 + i) for i in range(20)]
    pairs += [site.check(0, 2000, 1000, 1000)]
    assert all(_fast(cbor2.loads(d), d, t) is not None for d, t in pairs)
    assert decode_many(pairs) == [decode(d, t) for d, t in pairs]


def test_a_record_boundary_shift_cannot_lend_one_record_the_columns_of_another():
    site = Site(nodes=2)
    (a, ta), (_, tb) = site.weighing(0, 1000, 500), site.weighing(1, 1001, 600)
    # b"\x00" + a is two CBOR items and b"" none: counted together they still make two.
    out = decode_many([(b"\x00" + a, ta), (b"", tb)])
    assert [str(x) for x in out] == ["record: trailing bytes", "record: not CBOR"]
    with pytest.raises(RecordError, match="trailing bytes"):
        decode(a + b"\x00", ta)
    with pytest.raises(ValueError, match="trailing bytes"):  # as the firmware says
        record.decode(a + b"\x00")
