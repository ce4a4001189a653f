# MQTT 3.1.1 packets (OASIS standard, 2014), sans-IO: functions that build the packets
# a node sends and a Parser that turns received bytes into packets. Only what a node
# needs: CONNECT/CONNACK, PUBLISH/PUBACK at QoS 0 and 1, SUBSCRIBE/SUBACK,
# PINGREQ/PINGRESP, DISCONNECT (no QoS 2: the node subscribes at QoS 1, so the broker
# never sends it more, §3.8.4).
#
# Invariant: Parser.feed() returns whole packets only, in order, whatever the chunking;
# a malformed or oversized packet raises MQTTError (the caller drops the connection),
# so no packet is ever half-interpreted.

import struct

CONNECT = 1
CONNACK = 2
PUBLISH = 3
PUBACK = 4
SUBSCRIBE = 8
SUBACK = 9
PINGREQ = 12
PINGRESP = 13
DISCONNECT = 14

MAX_PACKET = 4096  # a node receives acknowledgements (~80 bytes); more is an attack
REFUSED = ("", "unacceptable protocol version", "identifier rejected",
           "server unavailable", "bad user name or password", "not authorized")


class MQTTError(OSError):
    pass


def _varint(n):  # §2.2.3 remaining length: 7 bits a byte, at most 4 bytes
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | 0x80 if n else byte)
        if not n:
            return bytes(out)


def _str(s):  # §1.5.3 UTF-8 string, §3.1.3.3 binary data: u16 length, then the bytes
    b = s.encode() if isinstance(s, str) else bytes(s)
    return struct.pack(">H", len(b)) + b


def _packet(first, body):
    return bytes([first]) + _varint(len(body)) + body


def connect(client_id, keepalive_s, clean=True, will=None, user=None, password=None):
    """CONNECT (§3.1). will: (topic, message bytes, qos, retain) or None."""
    flags = 0x02 if clean else 0
    tail = _str(client_id)
    if will:
        topic, message, qos, retain = will
        flags |= 0x04 | (qos << 3) | (0x20 if retain else 0)
        tail += _str(topic) + _str(message)
    if user is not None:
        flags |= 0x80
        tail += _str(user)
        if password is not None:
            flags |= 0x40
            tail += _str(password)
    head = _str("MQTT") + bytes([4, flags]) + struct.pack(">H", keepalive_s)
    return _packet(CONNECT << 4, head + tail)


def publish(topic, payload, pid=0, qos=0, retain=False, dup=False):
    """PUBLISH (§3.3); pid only for QoS 1."""
    first = (PUBLISH << 4) | (qos << 1) | (0x08 if dup else 0) | (1 if retain else 0)
    body = _str(topic) + (struct.pack(">H", pid) if qos else b"") + payload
    return _packet(first, body)


def puback(pid):
    return _packet(PUBACK << 4, struct.pack(">H", pid))


def subscribe(pid, topic, qos=1):
    """SUBSCRIBE (§3.8): fixed header flags must be 0010."""
    return _packet((SUBSCRIBE << 4) | 2, struct.pack(">H", pid) + _str(topic) + bytes([qos]))


PINGREQ_PACKET = bytes([PINGREQ << 4, 0])
DISCONNECT_PACKET = bytes([DISCONNECT << 4, 0])


def connack_code(body):
    """CONNACK (§3.2): raise MQTTError unless the broker accepted; session present."""
    if len(body) != 2:
        raise MQTTError("connack: %d bytes, expected 2" % len(body))
    if body[1]:
        why = REFUSED[body[1]] if body[1] < len(REFUSED) else "code %d" % body[1]
        raise MQTTError("connack: refused, " + why)
    return bool(body[0] & 1)


def parse_publish(flags, body):
    """(topic, pid, qos, payload) of a received PUBLISH (§3.3)."""
    qos = (flags >> 1) & 3
    if qos > 1 or len(body) < 2:
        raise MQTTError("publish: qos %d or %d bytes" % (qos, len(body)))
    n = struct.unpack(">H", body[:2])[0]
    start = 2 + n + (2 if qos else 0)
    if start > len(body):
        raise MQTTError("publish: topic runs past the packet")
    pid = struct.unpack(">H", body[2 + n:start])[0] if qos else 0
    return bytes(body[2:2 + n]).decode(), pid, qos, bytes(body[start:])


def packet_id(body):
    """The packet identifier of a PUBACK or SUBACK."""
    if len(body) < 2:
        raise MQTTError("ack: %d bytes, no packet id" % len(body))
    return struct.unpack(">H", body[:2])[0]


class Parser:
    """Bytes in, (type, flags, body) out."""

    def __init__(self, max_packet=MAX_PACKET):
        self.max_packet = max_packet
        self._buf = b""

    def feed(self, data):
        buf = self._buf + data if self._buf else bytes(data)
        out = []  # type: list
        while len(buf) >= 2:
            n = shift = 0
            i = 1
            while True:
                if i >= len(buf):
                    self._buf = buf
                    return out  # length not complete yet
                byte = buf[i]
                n |= (byte & 0x7F) << shift
                i += 1
                if not byte & 0x80:
                    break
                shift += 7
                if shift > 21:
                    raise MQTTError("remaining length longer than 4 bytes")
            if n > self.max_packet:
                raise MQTTError("packet of %d bytes, at most %d" % (n, self.max_packet))
            if len(buf) < i + n:
                break
            out.append((buf[0] >> 4, buf[0] & 0x0F, buf[i:i + n]))
            buf = buf[i + n:]
        self._buf = buf
        return out
