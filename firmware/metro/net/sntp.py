# SNTP version 4 client packets (RFC 4330), sans-IO: the request a node sends and the
# check of the server's reply, giving UTC milliseconds at the moment it arrived.
#
# Invariant: a reply is believed only when it answers our request (its Originate
# Timestamp is the 8 random bytes we sent, §5: defeats stale and off-path replies),
# comes from a synchronised server (mode 4, stratum 1-15, leap indicator not 3) and
# carries a transmit time; anything else raises SNTPError naming the field.
#
# Timestamps are 32.32 fixed-point seconds since 1900-01-01. RFC 4330 §3: a seconds
# field with its top bit clear lies in era 1 (from 2036-02-07), so the node keeps the
# right time across the 2036 wrap.

import struct

NTP_TO_UNIX_S = 2208988800  # 1900-01-01 to 1970-01-01
PACKET = 48


class SNTPError(ValueError):
    pass


def request(stamp):
    """LI 0, VN 4, mode 3 (client); stamp (8 bytes) in Transmit Timestamp (§5)."""
    return b"\x23" + bytes(39) + stamp


def to_unix_ms(raw):
    secs, frac = struct.unpack(">II", raw)
    if not secs & 0x80000000:
        secs += 0x100000000  # era 1 (RFC 4330 §3)
    return (secs - NTP_TO_UNIX_S) * 1000 + ((frac * 1000 + 0x80000000) >> 32)  # rounded


def from_unix_ms(ms):
    """The 8-byte NTP timestamp of a UTC ms time (a server's side; tests)."""
    secs = ms // 1000 + NTP_TO_UNIX_S
    return struct.pack(">II", secs & 0xFFFFFFFF, ((ms % 1000) << 32) // 1000)


def parse(reply, stamp, sent_ms, received_ms):
    """(UTC ms at received_ms, round-trip delay ms) from a reply to request(stamp).

    sent_ms and received_ms are the node's own ms clock when the request left and
    the reply came (T1, T4 of §5); the server's T2 (receive) and T3 (transmit) give
    delay = (T4 - T1) - (T3 - T2), and the time at T4 is T3 + delay / 2."""
    if len(reply) < PACKET:
        raise SNTPError("reply: %d bytes, at least %d" % (len(reply), PACKET))
    leap, mode, stratum = reply[0] >> 6, reply[0] & 7, reply[1]
    if mode != 4:
        raise SNTPError("mode: %d, expected 4 (server)" % mode)
    if stratum == 0:  # kiss-o'-death (§8): the code says why, e.g. RATE, DENY
        raise SNTPError("stratum: 0, kiss code %s" % bytes(reply[12:16]).decode())
    if stratum > 15:
        raise SNTPError("stratum: %d, server not synchronised" % stratum)
    if leap == 3:
        raise SNTPError("leap indicator: 3, server clock not synchronised")
    if bytes(reply[24:32]) != bytes(stamp):
        raise SNTPError("originate timestamp: not our request")
    if not any(reply[40:48]):
        raise SNTPError("transmit timestamp: zero")
    t2, t3 = to_unix_ms(reply[32:40]), to_unix_ms(reply[40:48])
    delay = received_ms - sent_ms - (t3 - t2)
    if delay < 0:
        delay = 0  # the server's processing time exceeds our ms resolution
    return t3 + delay // 2, delay
