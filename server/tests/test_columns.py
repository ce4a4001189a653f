"""The server's fast record decoder agrees with the firmware's own decoder."""

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from metrotrace.firmware.metro.wire import record
from metrotrace.server.ingest import RecordError
from metrotrace.server.ingest.columns import decode, decode_many
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
