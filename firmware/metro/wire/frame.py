# UART framing between a node and its gateway, and the streaming decoder.
#
# On the wire a frame is  00 | COBS(type | payload | CRC-32 LE of type+payload) | 00 .
# The leading delimiter ends any partial frame left by a reset or a cut cable, so one
# damaged frame never swallows the good frame after it. Frame types:
#   'R' record:  payload = record bytes | HMAC-SHA256 tag (32)          node -> gateway
#   'A' ack:     payload = CBOR {0: v, 2: node, 3: seq} | tag           gateway -> node
#   'T' time:    payload = CBOR {0: v, 2: node, 4: t}   | tag           gateway -> node
# The ack carries the highest sequence the gateway has stored durably; it is tagged
# with the node's key so that nothing but the gateway can make a node forget records.
#
# Invariant: Decoder.feed() never raises. Every byte sequence ends as frames or as
# rejects, each reject counted by reason in Decoder.counts.

import struct

from . import cbor, cobs, record
from .crc import crc32
from .tag import TAG_LEN, equal, hmac_sha256

RECORD = 0x52
ACK = 0x41
TIME = 0x54
TYPES = (RECORD, ACK, TIME)

MAX_FRAME = 1024  # decoded bytes: type + payload + CRC
_MAX_ENCODED = MAX_FRAME + MAX_FRAME // 254 + 2

# Reject reasons, counted by Decoder.
OVERSIZE = "oversize"
BAD_COBS = "cobs"
SHORT = "short"
BAD_CRC = "crc"
BAD_TYPE = "frame_type"
BAD_RECORD = "record"
BAD_CONTROL = "control"  # returned by parse_control, on the node


class Frame:
    def __init__(self, ftype, payload):
        self.type = ftype
        self.payload = payload
        self.fields = None  # decoded record fields, for RECORD frames

    def split_tag(self):
        """(body, tag) of a tagged payload."""
        return self.payload[:-TAG_LEN], self.payload[-TAG_LEN:]


class Reject:
    def __init__(self, reason, detail=""):
        self.reason = reason
        self.detail = detail

    def __repr__(self):
        return "Reject(%s: %s)" % (self.reason, self.detail)


def encode(ftype, payload):
    body = bytes([ftype]) + payload
    return b"\x00" + cobs.encode(body + struct.pack("<I", crc32(body))) + b"\x00"


def record_frame(record_bytes, key):
    return encode(RECORD, record_bytes + hmac_sha256(key, record_bytes))


def _control(ftype, fields, key):
    body = cbor.encode(fields)
    return encode(ftype, body + hmac_sha256(key, body))


def ack_frame(node, seq, key):
    return _control(ACK, {0: record.VERSION, 2: node, 3: seq}, key)


def time_frame(node, t, key):
    return _control(TIME, {0: record.VERSION, 2: node, 4: t}, key)


def parse_control(frame, node, key):
    """Check a gateway->node frame: its seq (ack) or t (time), or a Reject saying why."""
    if frame.type not in (ACK, TIME):
        return Reject(BAD_CONTROL, "not an ack or time frame")
    if len(frame.payload) <= TAG_LEN:
        return Reject(BAD_CONTROL, "too short")
    body, tag = frame.split_tag()
    if not equal(hmac_sha256(key, body), tag):
        return Reject(BAD_CONTROL, "bad tag")
    try:
        fields = cbor.decode(body)
    except ValueError as e:
        return Reject(BAD_CONTROL, str(e))
    want = 3 if frame.type == ACK else 4
    if not isinstance(fields, dict) or sorted(fields) != [0, 2, want]:
        return Reject(BAD_CONTROL, "wrong fields")
    if fields[0] != record.VERSION or fields[2] != node:
        return Reject(BAD_CONTROL, "wrong version or node")
    value = fields[want]
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        return Reject(BAD_CONTROL, "value must be an unsigned integer")
    return value


class Decoder:
    """Byte stream in, frames out. Feed it whatever the UART delivers."""

    def __init__(self):
        self.counts = {}
        self._buf = bytearray()
        self._dropping = False

    def _reject(self, out, reason, detail=""):
        self.counts[reason] = self.counts.get(reason, 0) + 1
        out.append(Reject(reason, detail))

    def feed(self, data):
        out = []
        start = 0
        n = len(data)
        while start < n:
            end = data.find(b"\x00", start)
            chunk_end = n if end < 0 else end
            if not self._dropping:
                self._buf.extend(data[start:chunk_end])
                if len(self._buf) > _MAX_ENCODED:
                    self._buf = bytearray()
                    self._dropping = True
                    self._reject(out, OVERSIZE, "frame longer than %d bytes" % MAX_FRAME)
            if end < 0:
                break
            if self._dropping:
                self._dropping = False
            elif self._buf:
                self._frame(bytes(self._buf), out)
                self._buf = bytearray()
            start = end + 1
        return out

    def _frame(self, encoded, out):
        try:
            body = cobs.decode(encoded)
        except ValueError as e:
            self._reject(out, BAD_COBS, str(e))
            return
        if len(body) < 5:
            self._reject(out, SHORT, "%d bytes" % len(body))
            return
        (want,) = struct.unpack("<I", body[-4:])
        body = body[:-4]
        if crc32(body) != want:
            self._reject(out, BAD_CRC)
            return
        ftype = body[0]
        if ftype not in TYPES:
            self._reject(out, BAD_TYPE, "type 0x%02x" % ftype)
            return
        frame = Frame(ftype, body[1:])
        if ftype == RECORD:
            if len(frame.payload) <= TAG_LEN:
                self._reject(out, BAD_RECORD, "no room for record and tag")
                return
            rec_bytes, _ = frame.split_tag()
            try:
                frame.fields = record.decode(rec_bytes)
            except (ValueError, TypeError, KeyError, IndexError) as e:
                self._reject(out, BAD_RECORD, str(e))
                return
        out.append(frame)
