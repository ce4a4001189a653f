"""Byte templates in the gateway's fast path (fastrecord.py, templates.py): a record laid
out like one vouched for is read by that record's template and accepted only when the
firmware's decoder accepts it, with the same fields; the templates kept stay bounded."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metrotrace.firmware.metro.wire import record
from metrotrace.gateway import fastrecord, templates
from metrotrace.gateway.fastrecord import Templates, decode_raws, named, raw_of
from metrotrace.tools import simnode
from tests.test_wire_properties import records

T = 1_763_884_800_000
NODE = bytes(range(1, 9))


def firmware(rec: bytes) -> dict | None:
    try:
        return record.decode(rec)
    except (ValueError, TypeError, KeyError, IndexError):
        return None


def by_template(known: Templates, rec: bytes) -> dict | None:
    """What the templates alone make of rec (no cbor2): its fields, or None."""
    x = int.from_bytes(rec, "big")
    for mask, expect, read in known.by_length.get(len(rec), ()):
        if x & mask == expect:
            raw = read(rec)
            if raw is not None:
                return raw
    return None


def learnt_from(good: bytes) -> Templates:
    known = Templates()
    assert decode_raws([good], known) == [raw_of(record.decode(good))]
    return known


EVERY_KIND = {
    "weighing": record.make(record.WEIGHING, NODE, 1000, 999, T, record.TQ_NTP, "scale-1",
                            gross=-5, tare=300, net=-305, e=5, unit="g",
                            flags=record.F_STABLE, raw=8388608, link=7),
    "weighing-edges": record.make(record.WEIGHING, NODE[:1], 24, 23, 5, record.TQ_UNSET,
                                  gross=record.MAX_I64, tare=0, net=record.MIN_I64, e=1,
                                  unit="kg", flags=0),
    "dispense": record.make(record.DISPENSE, NODE, 70000, 65536, T, record.TQ_GATEWAY,
                            "nozzle-3", volume=-40000, pulses=2**40, kfactor=100000,
                            t_start=T - 60000, unit="mL", d=10, flags=3, link=300),
    "check": record.make(record.CHECK, NODE, 5, 4, T, record.TQ_NTP, "Waage-ä",
                         indication=10005, reference=10000, e=5, unit="g", raw=-70000,
                         ref_id="TW-10kg-0042"),
    "zero": record.make(record.ZERO, NODE, 2**32, 2**32 - 1, T, record.TQ_NTP, "scale-1",
                        indication=-3, e=5, unit="g", raw=-(2**40)),
    "scan": record.make(record.SCAN, NODE, 77, 76, T, record.TQ_NTP, "scanner-1",
                        code=b"]E0\x1d2012345", symbology="]E0", link=76),
    "event": record.make(record.EVENT, NODE, 9, 8, T, record.TQ_NTP, code="clock_set"),
    "status": record.make(record.STATUS, NODE, 300, 299, record.MAX_U64, record.TQ_NTP,
                          fw="metro 0.1 ✓", uptime_s=86400, mem_free=40000, backlog=0,
                          signal=-70),
}
# Boundaries of CBOR heads (0x17/0x18, 0x1b/0x1c, 0x1f, major types), of UTF-8 (0x80,
# 0xc0, 0xed, 0xff), simple values and floats (0xf4..0xf9), tags (0xc0..0xdb).
BYTES_TO_TRY = (0x00, 0x01, 0x02, 0x03, 0x05, 0x17, 0x18, 0x19, 0x1A, 0x1B, 0x1C, 0x1F,
                0x20, 0x37, 0x38, 0x3B, 0x40, 0x41, 0x57, 0x5F, 0x60, 0x61, 0x7F, 0x80,
                0x9F, 0xA0, 0xBF, 0xC0, 0xC2, 0xDB, 0xED, 0xF4, 0xF5, 0xF6, 0xF9, 0xFF)


@pytest.mark.parametrize("good", EVERY_KIND.values(), ids=EVERY_KIND.keys())
def test_every_single_byte_change_is_read_as_the_firmware_reads_it(good):
    known = learnt_from(good)
    assert len(known) == 1 and by_template(known, good) == raw_of(record.decode(good))
    growing = learnt_from(good)  # the whole fast path, learning as it goes
    taken = 0
    for i in range(len(good)):
        for b in {*BYTES_TO_TRY, good[i] ^ 1, good[i] ^ 0x80, (good[i] + 1) % 256}:
            changed = good[:i] + bytes([b]) + good[i + 1:]
            expected = firmware(changed)
            fields = by_template(known, changed)
            if fields is not None:
                assert named(fields) == expected, (i, b)
                taken += 1
            (fields,) = decode_raws([changed], growing)
            assert fields is None or named(fields) == expected, (i, b)
    assert taken > len(good)  # the template did take the changed values it could


def test_an_event_with_a_detail_map_has_no_template_and_still_decodes():
    good = record.make(record.EVENT, NODE, 1, 0, T, record.TQ_NTP, code="power_up",
                       detail={"reset": "PWRON", "fw": "metro 0.1"})
    known = Templates()
    assert decode_raws([good], known) == [None]  # a map value: the firmware's own path
    assert len(known) == 0


@st.composite
def under_template(draw):
    """A valid record, and bytes of its length carrying its template's structure: the
    record with a few bytes changed, or random bytes, in either case with the structural
    bytes put back under the template's mask."""
    good = record.encode(draw(records()))
    if draw(st.booleans()):
        noise = bytearray(good)
        for _ in range(draw(st.integers(1, 6))):
            noise[draw(st.integers(0, len(good) - 1))] = draw(st.integers(0, 255))
    else:
        noise = bytearray(draw(st.binary(min_size=len(good), max_size=len(good))))
    return good, bytes(noise)


@settings(max_examples=400)
@given(under_template())
def test_a_template_learnt_from_one_record_takes_only_what_the_firmware_accepts(case):
    good, noise = case
    t = templates.walk(good)
    known = Templates()
    decode_raws([good], known)
    if t is None:  # an event with a detail map
        assert len(known) == 0
        return
    assert len(known) == 1
    x = (int.from_bytes(noise, "big") & ~t.mask) | t.expect
    candidate = x.to_bytes(len(good), "big")
    fields = by_template(known, candidate)
    expected = firmware(candidate)
    assert fields is None or named(fields) == expected
    if candidate == good:
        assert named(fields) == expected


def test_a_value_written_longer_than_needed_is_refused():
    good = record.make(record.ZERO, NODE, 5, 4, T, record.TQ_NTP, indication=-3, e=300,
                       unit="g")
    known = learnt_from(good)
    at = good.index(bytes([0x19, 0x01, 0x2C]))  # e = 300, two-byte argument
    short_enough = good[:at + 1] + b"\x00\x05" + good[at + 3:]  # 5 needs no argument
    with pytest.raises(ValueError, match="non-shortest"):
        record.decode(short_enough)
    assert by_template(known, short_enough) is None
    assert decode_raws([short_enough], known) == [None]
    fine = good[:at + 1] + b"\x01\x00" + good[at + 3:]  # 256 needs two bytes
    assert named(by_template(known, fine)) == record.decode(fine)


def test_records_laid_out_like_known_ones_never_reach_cbor2(monkeypatch):
    first = list(simnode.records(b"\x01" * 8, 400, T, 3))[1:]  # [0]: an event with detail
    known = Templates()
    for i in range(0, len(first), 50):  # chunks, as a port delivers them
        batch = first[i:i + 50]
        assert decode_raws(batch, known) == [raw_of(record.decode(r)) for r in batch]
    assert 0 < len(known) < 40

    def no_cbor2(rec):
        raise AssertionError("a record took the cbor2 path")

    monkeypatch.setattr(fastrecord, "_decoded", no_cbor2)
    other_node = list(simnode.records(b"\x02" * 8, 400, T, 3))[1:]  # same layouts
    assert decode_raws(other_node, known) == [raw_of(record.decode(r)) for r in other_node]


def scans(count: int, start: int = 0) -> list[bytes]:
    """Scans whose code and symbology lengths vary: many record lengths, and several
    layouts per length."""
    return [record.make(record.SCAN, NODE, 100 + i, 99 + i, T, record.TQ_NTP,
                        code=b"c" * (1 + i % 6), symbology="s" * (1 + i // 6))
            for i in range(start, start + count)]


def test_templates_kept_are_bounded_and_the_oldest_forgotten(monkeypatch):
    known = Templates(limit=6, per_length=2, walks=3)
    learnt = []
    monkeypatch.setattr(known, "learn", lambda rec, learn=known.learn: (
        learnt.append(rec), learn(rec)))
    batch = scans(30)
    assert decode_raws(batch, known) == [raw_of(record.decode(r)) for r in batch]
    assert len(learnt) == 3 and len(known) == 3  # at most `walks` records walked a call
    for start in range(0, 60, 5):
        batch = scans(5, start)
        assert decode_raws(batch, known) == [raw_of(record.decode(r)) for r in batch]
        assert len(known) <= 6
        assert all(len(kept) <= 2 for kept in known.by_length.values())
        assert sum(map(len, known.by_length.values())) == len(known)
    assert by_template(known, scans(1)[0]) is None  # the first learnt: forgotten
    decode_raws(scans(1), known)
    assert by_template(known, scans(1)[0]) == raw_of(record.decode(scans(1)[0]))  # again


def test_compiled_checks_are_bounded(monkeypatch):
    monkeypatch.setattr(fastrecord, "_code", {})
    monkeypatch.setattr(fastrecord, "_MAX_CODE", 4)
    monkeypatch.setattr(fastrecord, "_shapes", {})
    monkeypatch.setattr(fastrecord, "_MAX_SHAPES", 3)
    known = Templates()
    batch = scans(60) + list(EVERY_KIND.values())
    assert decode_raws(batch, known) == [raw_of(record.decode(r)) for r in batch]
    assert len(fastrecord._code) <= 4 and len(fastrecord._shapes) <= 3


def test_text_over_512_characters_is_refused_though_its_bytes_fit_a_template():
    def check(ref_id: str) -> bytes:
        return record.make(record.CHECK, NODE, 5, 4, T, record.TQ_NTP, indication=1,
                           reference=1, e=1, unit="g", ref_id=ref_id)

    good = check("ä" * 300)  # 600 bytes, 300 characters
    known = learnt_from(good)
    too_long = good.replace("ä".encode() * 300, b"a" * 600)  # make() refuses to build it
    fine = check("ä" * 200 + "a" * 200)
    assert len(too_long) == len(fine) == len(good)
    with pytest.raises(ValueError, match="ref_id: text too long"):
        record.decode(too_long)
    assert by_template(known, too_long) is None
    assert named(by_template(known, fine)) == record.decode(fine)


def test_bounds_below_one_are_refused_by_name():
    for kwargs, name in (({"limit": 0}, "limit"), ({"per_length": 0}, "per_length"),
                         ({"walks": -1}, "walks")):
        with pytest.raises(ValueError, match=f"^{name}: must be at least"):
            Templates(**kwargs)
    never = Templates(walks=0)  # learns nothing: every record takes cbor2
    good = EVERY_KIND["zero"]
    assert decode_raws([good, good], never) == [raw_of(record.decode(good))] * 2
    assert len(never) == 0


@given(records())
def test_value_range_holds_every_value_its_reader_lets_through(rec):
    """What a template's checks leave out rests on value_range: every field of a record
    read by its own template lies within it, shortest or not."""
    good = record.encode(rec)
    t = templates.walk(good)
    if t is None:
        return
    raw = raw_of(record.decode(good))
    for f in t.fields:
        value = raw[f.key]
        measure = len(value) if isinstance(value, str | bytes) else value
        for shortest in (False, True):
            low, high = templates.value_range(f, shortest)
            assert low <= measure <= high, (f, shortest)
