# Protocol test vectors, run unchanged by pytest under CPython and by mprun.py under
# the MicroPython unix port: plain functions, bare asserts, no pytest imports.
# vectors.json pins the byte format that docs/protocol.md describes.

import json

from metro.core.seq import SeqCounter
from metro.wire import cbor, cobs, frame, record
from metro.wire.crc import crc32, crc32_soft
from metro.wire.tag import equal, hmac_sha256


def _here():
    path = __file__
    return path[: path.rfind("/") + 1] if "/" in path else ""


def _vectors():
    with open(_here() + "vectors.json") as f:
        return json.load(f)


def _h(s):
    return bytes.fromhex(s.replace(" ", ""))


# RFC 4231 §4.2-4.8, HMAC-SHA-256 (test case 5 is truncated output, not applicable).
RFC4231 = (
    ("0b" * 20, "4869205468657265",
     "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
    ("4a656665", "7768617420646f2079612077616e7420666f72206e6f7468696e673f",
     "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
    ("aa" * 20, "dd" * 50,
     "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"),
    ("0102030405060708090a0b0c0d0e0f10111213141516171819", "cd" * 50,
     "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"),
    ("aa" * 131,
     "54657374205573696e67204c6172676572205468616e20426c6f636b2d53697a65204b6579"
     "202d2048617368204b6579204669727374",
     "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
    ("aa" * 131,
     "5468697320697320612074657374207573696e672061206c6172676572207468616e20626c6f"
     "636b2d73697a65206b657920616e642061206c6172676572207468616e20626c6f636b2d7369"
     "7a6520646174612e20546865206b6579206e6565647320746f20626520686173686564206265"
     "666f7265206265696e6720757365642062792074686520484d414320616c676f726974686d2e",
     "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"),
)


def test_hmac_rfc4231():
    for key, data, mac in RFC4231:
        assert hmac_sha256(_h(key), _h(data)) == _h(mac)


def test_tag_compare():
    assert equal(b"abc", b"abc")
    assert not equal(b"abc", b"abd")
    assert not equal(b"abc", b"ab")


def test_crc32_check_value():
    # The CRC-32/ISO-HDLC check value of the catalogue of parametrised CRCs.
    assert crc32(b"123456789") == 0xCBF43926
    assert crc32_soft(b"123456789") == 0xCBF43926
    assert crc32(b"") == 0


def test_cobs_examples():
    # Examples from Cheshire & Baker's paper, as listed in most COBS references.
    cases = (
        ("00", "0101"),
        ("0000", "010101"),
        ("11220033", "0311220233"),
        ("11223344", "0511223344"),
        ("11000000", "0211010101"),
    )
    for raw, enc in cases:
        assert cobs.encode(_h(raw)) == _h(enc)
        assert cobs.decode(_h(enc)) == _h(raw)
    long_run = bytes(range(1, 255))
    assert cobs.encode(long_run) == b"\xff" + long_run + b"\x01"
    assert cobs.decode(cobs.encode(long_run)) == long_run


def test_cbor_deterministic():
    assert cbor.encode(0) == b"\x00"
    assert cbor.encode(23) == b"\x17"
    assert cbor.encode(24) == b"\x18\x18"
    assert cbor.encode(-1) == b"\x20"
    assert cbor.encode(-500) == b"\x39\x01\xf3"
    assert cbor.encode(2**64 - 1) == b"\x1b" + b"\xff" * 8
    assert cbor.encode({10: 1, 2: 0, "b": 1, "a": 2}) == _h("a4 02 00 0a 01 61 61 02 61 62 01")


def test_cbor_rejects_non_canonical():
    bad = (
        "1817",  # 23 in a one-byte head
        "190017",  # 23 in a two-byte head
        "5f41ff",  # indefinite byte string
        "f93c00",  # half float 1.0
        "c100",  # tag 1
        "a2020001",  # truncated map
        "a20a010200",  # keys out of order
        "a2010001 01",  # duplicate key
        "0000",  # trailing byte
        "62c328",  # invalid UTF-8
    )
    for hexed in bad:
        try:
            cbor.decode(_h(hexed))
        except ValueError:
            continue
        raise AssertionError("accepted " + hexed)


def _fields(vec):
    rec = {"v": 1, "node": _h(_vectors()["node"])}
    for name in vec["fields"]:
        value = vec["fields"][name]
        if name.endswith("_hex"):
            rec[name[:-4]] = _h(value)
        else:
            rec[name] = value
    return rec


def test_record_vectors():
    for vec in _vectors()["records"]:
        rec = _fields(vec)
        assert record.encode(rec) == _h(vec["record"]), vec["fields"]["kind"]
        assert record.decode(_h(vec["record"])) == rec


def test_record_errors_name_the_field():
    good = _fields(_vectors()["records"][0])
    cases = (
        ("net", "1250", "net: expected integer"),
        ("unit", "lb", "unit: not a base unit"),
        ("kind", 99, "kind: unknown"),
        ("seq", 0, "seq: 0 is reserved"),
        ("prev", 5000, "prev: must be below seq"),
        ("extra", 1, "extra: not a field"),
    )
    for name, value, message in cases:
        rec = dict(good)
        rec[name] = value
        err = record.validate(rec)
        assert err is not None and err.startswith(message), err
    rec = dict(good)
    del rec["gross"]
    assert record.validate(rec) == "gross: missing"


def test_frame_vectors():
    v = _vectors()
    key = _h(v["key"])
    for vec in v["records"]:
        assert frame.record_frame(_h(vec["record"]), key) == _h(vec["frame"])
    node = _h(v["node"])
    assert frame.ack_frame(node, 1007, key) == _h(v["ack_1007"])
    assert frame.time_frame(node, v["records"][0]["fields"]["t"], key) == _h(v["time_frame"])


def test_decoder_stream():
    v = _vectors()
    stream = b"".join(_h(vec["frame"]) for vec in v["records"])
    noisy = b"\x13\x37noise" + stream[:20] + stream + b"\x00\x00"
    dec = frame.Decoder()
    out = []
    for i in range(0, len(noisy), 7):  # UART-sized pieces
        out.extend(dec.feed(noisy[i : i + 7]))
    frames = [o for o in out if isinstance(o, frame.Frame)]
    rejects = [o for o in out if isinstance(o, frame.Reject)]
    assert [f.fields["seq"] for f in frames] == list(range(1001, 1008))
    assert len(rejects) == 2 and sum(dec.counts.values()) == 2


def test_decoder_rejects_by_reason():
    key = _h(_vectors()["key"])
    good = _h(_vectors()["records"][0]["frame"])
    dec = frame.Decoder()
    flipped = good[:10] + bytes([good[10] ^ 1]) + good[11:]
    dec.feed(flipped)
    dec.feed(b"\x00")
    for _ in range(30):  # a runaway sender: 3000 bytes without a delimiter
        dec.feed(b"\x01" * 100)
    dec.feed(b"\x00")
    dec.feed(frame.encode(0x5A, b"hello"))
    dec.feed(frame.encode(frame.RECORD, b"\x01" * 40))
    dec.feed(frame.record_frame(b"\xa0", key))
    dec.feed(b"\x00\x02\x01\x00")
    assert dec.counts == {"crc": 1, "oversize": 1, "frame_type": 1, "record": 2, "short": 1}
    assert [type(o).__name__ for o in dec.feed(good)] == ["Frame"]


def test_control_frames():
    v = _vectors()
    key, node = _h(v["key"]), _h(v["node"])
    (ack,) = frame.Decoder().feed(_h(v["ack_1007"]))
    assert frame.parse_control(ack, node, key) == 1007
    for wrong_key, wrong_node in ((b"other key", node), (key, b"\x01\x02")):
        rejected = frame.parse_control(ack, wrong_node, wrong_key)
        assert isinstance(rejected, frame.Reject) and rejected.reason == "control"
    (time_frame,) = frame.Decoder().feed(_h(v["time_frame"]))
    assert frame.parse_control(time_frame, node, key) == v["records"][0]["fields"]["t"]


class _Store:
    def __init__(self):
        self.data = None
        self.writes = 0

    def read(self):
        return self.data

    def write(self, data):
        self.data = data
        self.writes += 1


def test_seq_survives_reboots():
    store = _Store()
    seen = []
    for _ in range(5):  # five boots, a few records each
        counter = SeqCounter(store, block=4)
        for _ in range(3):
            seen.append(counter.next())
    assert len(set(seen)) == len(seen) and seen == sorted(seen)
    assert store.writes == 5


def test_seq_refuses_damaged_lease():
    store = _Store()
    SeqCounter(store, block=10)
    store.data = store.data[:-1] + bytes([store.data[-1] ^ 0xFF])
    try:
        SeqCounter(store)
    except ValueError:
        return
    raise AssertionError("a damaged lease restarted the sequence")
