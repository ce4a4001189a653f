"""The server's fast record decoder agrees with the firmware's own decoder."""

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from metrotrace.firmware.metro.wire import record
from metrotrace.gateway import templates
from metrotrace.server.ingest import RecordError, columns
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


# -- byte templates: a record laid out like a known one is read without a CBOR decoder ---

def _one_by_one(pairs):
    out = []
    for d, t in pairs:
        try:
            out.append(decode(d, t))
        except RecordError as e:
            out.append(str(e))
    return out


def _many(pairs):
    return [str(x) if isinstance(x, RecordError) else x for x in decode_many(pairs)]


def test_records_laid_out_like_a_known_one_skip_the_decoder(monkeypatch):
    # Templates are learnt per process and bounded: start from none, whatever earlier
    # tests (fuzzing among them) taught.
    monkeypatch.setattr(columns, "_templates", {})
    monkeypatch.setattr(columns, "_walks", {})
    monkeypatch.setattr(columns, "_templates_kept", 0)
    site = Site(nodes=2)
    pairs = [site.weighing(i % 2, 1000 + i, 500 + i) for i in range(60)]
    pairs += [site.check(1, 2000 + i, 1000 - i, 1000) for i in range(3)]
    assert _many(pairs) == _one_by_one(pairs)  # teaches their templates

    def no_decoder(_pairs):
        raise AssertionError("a record took the CBOR decoder")

    monkeypatch.setattr(columns, "_decode_stream", no_decoder)
    later = [site.weighing(i % 2, 3000 + i, 600 + 7 * i) for i in range(40)]
    assert decode_many(later) == [decode(d, t) for d, t in later]


BYTES_TO_TRY = (0x00, 0x01, 0x17, 0x18, 0x1B, 0x1F, 0x20, 0x37, 0x38, 0x40, 0x41, 0x5F, 0x60,
                0x61, 0x80, 0xA0, 0xBF, 0xC2, 0xF4, 0xF6, 0xFF)


def test_every_byte_changed_in_a_known_layout_reads_as_the_decoder_reads_it():
    site = Site(nodes=1)
    _forget_templates()
    for good in (site.weighing(0, 1000, 500)[0], site.check(0, 1001, -3, 0)[0],
                 record.make(record.ZERO, b"\x01", 5, 4, 1000, 1, indication=-5, e=5,
                             unit="g")):
        decode_many([(good, TAG)])
        assert columns._templates[len(good)]  # learnt: the changed bytes meet a template
        pairs = [(good[:i] + bytes([b]) + good[i + 1:], TAG)
                 for i in range(len(good)) for b in (*BYTES_TO_TRY, good[i] ^ 1)]
        assert _many(pairs) == _one_by_one(pairs)


def _forget_templates():
    columns._templates.clear()
    columns._walks.clear()
    columns._templates_kept = 0


@given(records(), st.data())
def test_a_template_reads_what_the_decoder_reads(rec, data):
    _forget_templates()  # so that this record's own template is learnt, whatever came before
    good = record.encode(rec)
    decode_many([(good, TAG)])  # teaches its template when its shape is a plain one
    changed = bytearray(good)
    for _ in range(data.draw(st.integers(1, 4))):
        changed[data.draw(st.integers(0, len(good) - 1))] = data.draw(st.integers(0, 255))
    pairs = [(good, TAG), (bytes(changed), TAG)]
    assert _many(pairs) == _one_by_one(pairs)


def test_walk_reads_only_plain_maps():
    zero = record.make(record.ZERO, b"\x01", 300, 299, 1000, 1, indication=-5, e=5, unit="g")
    t = templates.walk(zero)
    assert t is not None and [f.how for f in t.fields][:2] == [templates.CONST] * 2
    for not_plain in (zero + b"\x00", zero[:-1], b"", b"\xbf\x00\x01\xff",
                      cbor2.dumps({0: 1, 1: 4, 2: b"\x01", 20: {"a": 1}}),
                      cbor2.dumps({0: 1, 1: 4, 2: None}), cbor2.dumps({0: 1, 24: 1}),
                      cbor2.dumps({0: 1.5}), b"\xa2\x00\x01\x00\x01"):  # repeated key
        assert templates.walk(not_plain) is None, not_plain.hex()


def test_a_map_keyed_by_true_leaves_its_shape_on_the_fast_path():
    data, tag = Site(nodes=1).weighing(0, 1000, 500)
    raw = cbor2.loads(data)
    columns._shapes.clear()
    _fast({(True if k == 1 else k): v for k, v in raw.items()}, data, tag)
    assert _fast(raw, data, tag) is not None


def test_a_template_keeps_the_range_checks_its_field_widths_leave_open(monkeypatch):
    # 8-byte integers can leave the store's signed 64-bit range; the template must still
    # refuse those (the decoder then names the field), while 1- to 4-byte ones never can.
    _forget_templates()
    base = record.make(record.ZERO, b"\x01", 1 << 33, (1 << 33) - 1, 1 << 40, 1,
                       indication=-(1 << 40), e=5, unit="g", raw=1 << 35)
    decode_many([(base, TAG)])
    assert columns._templates[len(base)]
    raw = cbor2.loads(base)

    def variant(**changes):
        keys = {"seq": 3, "t": 4, "prev": 7, "indication": 8, "raw": 11}
        data = cbor2.dumps(raw | {keys[name]: v for name, v in changes.items()})
        assert len(data) == len(base)  # the same layout: the template reads it
        return data, TAG

    edge = [variant(t=BIG), variant(seq=BIG, prev=BIG - 1), variant(indication=-(1 << 63)),
            variant(raw=-(1 << 63)), variant(raw=BIG)]
    bad = [variant(t=BIG + 1), variant(t=(1 << 64) - 1), variant(seq=BIG + 1),
           variant(indication=-(1 << 63) - 1), variant(indication=-(1 << 64)),
           variant(raw=BIG + 1), variant(prev=1 << 33)]
    assert _many(edge + bad) == _one_by_one(edge + bad)
    assert all(isinstance(x, str) for x in _one_by_one(bad))

    def no_decoder(_pairs):
        raise AssertionError("a record took the CBOR decoder")

    monkeypatch.setattr(columns, "_decode_stream", no_decoder)
    assert decode_many(edge) == [decode(d, t) for d, t in edge]  # read by the template


def test_a_template_keeps_the_length_check_of_text_longer_than_it_may_be():
    # 600 bytes of text: 150 four-byte characters (allowed, 512 at most) or 600 ASCII ones
    # (too long) share one layout; the template must still count the characters.
    _forget_templates()
    raw = cbor2.loads(record.make(record.ZERO, b"\x01", 5, 4, 1000, 1, indication=-5, e=5,
                                  unit="g"))
    short, long = (cbor2.dumps(raw | {6: text}) for text in ("\U0001F600" * 150, "x" * 600))
    assert len(short) == len(long)
    decode_many([(short, TAG)])
    assert columns._templates[len(short)]
    pairs = [(short, TAG), (long, TAG), (short, TAG)]
    assert _many(pairs) == _one_by_one(pairs)
    assert _one_by_one(pairs)[1] == "inst: text too long"
    assert isinstance(_many(pairs)[0], RecordRow)
