# MQTT 3.1.1 packets, SNTP packets, reconnect back-off and the mqtt/ntp configuration:
# plain functions for pytest (CPython) and mprun.py (MicroPython). Packet bytes are
# checked against the OASIS MQTT 3.1.1 layouts written out by hand.

from metro.app import config
from metro.net import mqtt, sntp
from metro.net.backoff import Backoff

KEY_HEX = "00" * 32


def _raises(fn, cls, start):
    try:
        fn()
    except cls as e:
        assert str(e).startswith(start), e
    else:
        raise AssertionError("no %s" % start)


def test_connect_packet_with_will_and_credentials():
    pkt = mqtt.connect("metro-1", 60, True, ("n/status", b"off", 1, True), "u", "pw")
    body = (b"\x00\x04MQTT\x04" + bytes([0x80 | 0x40 | 0x20 | 0x08 | 0x04 | 0x02])
            + b"\x00\x3c" + b"\x00\x07metro-1" + b"\x00\x08n/status" + b"\x00\x03off"
            + b"\x00\x01u" + b"\x00\x02pw")
    assert pkt == bytes([0x10, len(body)]) + body
    assert mqtt.connect("c", 5)[:12] == b"\x10\x0d\x00\x04MQTT\x04\x02\x00\x05"


def test_publish_subscribe_and_remaining_length_of_200_bytes():
    pkt = mqtt.publish("a/b", bytes(200), pid=7, qos=1)
    assert pkt[0] == 0x32 and pkt[1:3] == b"\xcf\x01"  # 207 = 0x4f | 0x80, 0x01
    assert pkt[3:10] == b"\x00\x03a/b\x00\x07"
    assert mqtt.publish("t", b"x", retain=True) == b"\x31\x04\x00\x01tx"
    assert mqtt.subscribe(3, "a/+", 1) == b"\x82\x08\x00\x03\x00\x03a/+\x01"
    assert mqtt.puback(258) == b"\x40\x02\x01\x02"


def test_parser_reassembles_packets_split_anywhere():
    stream = (b"\x20\x02\x00\x00" + mqtt.publish("n/ack", b"\x01" * 130, 9, 1)
              + b"\x90\x03\x00\x01\x01" + b"\xd0\x00")
    for cut in range(1, len(stream)):
        p = mqtt.Parser()
        got = p.feed(stream[:cut]) + p.feed(stream[cut:])
        assert [t for t, _, _ in got] == [mqtt.CONNACK, mqtt.PUBLISH, mqtt.SUBACK,
                                          mqtt.PINGRESP], cut
    _, flags, body = got[1]
    assert mqtt.parse_publish(flags, body) == ("n/ack", 9, 1, b"\x01" * 130)
    assert mqtt.packet_id(got[2][2]) == 1 and mqtt.connack_code(got[0][2]) is False


def test_bad_packets_raise_and_name_the_fault():
    _raises(lambda: mqtt.Parser(100).feed(b"\x30\xff\x01"), mqtt.MQTTError, "packet of 255")
    _raises(lambda: mqtt.Parser().feed(b"\x30\xff\xff\xff\xff\x01"), mqtt.MQTTError,
            "remaining length")
    _raises(lambda: mqtt.connack_code(b"\x00\x05"), mqtt.MQTTError,
            "connack: refused, not authorized")
    _raises(lambda: mqtt.parse_publish(2, b"\x00\x09ab"), mqtt.MQTTError, "publish: topic")
    assert issubclass(mqtt.MQTTError, OSError)  # one except clause reconnects on both


def test_backoff_doubles_to_the_cap_with_jitter_and_resets():
    b = Backoff(100, 1000, rand=lambda bits: 0)
    assert [b.next() for _ in range(6)] == [100, 200, 400, 800, 1000, 1000]
    b.reset()
    assert b.next() == 100
    jittered = Backoff(1000, 1000, rand=lambda bits: 255)
    assert jittered.next() == 1000 - 1000 * 255 // 1024  # never more than a quarter off


def _reply(stamp, t2_ms, t3_ms, first=0x24, stratum=2):
    return (bytes([first, stratum, 6, 0xEC]) + bytes(8) + b"GPS\x00" + bytes(8) + stamp
            + sntp.from_unix_ms(t2_ms) + sntp.from_unix_ms(t3_ms))


def test_sntp_request_and_the_time_at_arrival():
    stamp = b"\x11\x22\x33\x44\x55\x66\x77\x88"
    req = sntp.request(stamp)
    assert len(req) == 48 and req[0] == 0x23 and req[40:] == stamp  # LI 0, VN 4, mode 3
    t = 1763884800000
    # sent at local 1000, server got it at t and answered 4 ms later, back at local 1030:
    # delay = 30 - 4 = 26, time at arrival = t + 4 + 13
    assert sntp.parse(_reply(stamp, t, t + 4), stamp, 1000, 1030) == (t + 17, 26)


def test_sntp_era_1_after_2036():
    ms = 2240524800000  # 2041-01-01: NTP seconds wrapped past 2^32 (RFC 4330 §3)
    raw = sntp.from_unix_ms(ms)
    assert raw[0] < 0x80 and sntp.to_unix_ms(raw) == ms
    assert sntp.to_unix_ms(sntp.from_unix_ms(1763884800123)) == 1763884800123


def test_sntp_refuses_replies_it_must_not_believe():
    stamp = b"abcdefgh"
    t = 1763884800000
    for reply, why in ((_reply(stamp, t, t)[:47], "reply: 47 bytes"),
                       (_reply(stamp, t, t, first=0x23), "mode: 3"),
                       (_reply(stamp, t, t, stratum=0), "stratum: 0, kiss code GPS"),
                       (_reply(stamp, t, t, stratum=16), "stratum: 16"),
                       (_reply(stamp, t, t, first=0xE4), "leap indicator: 3"),
                       (_reply(b"stale!!!", t, t), "originate timestamp"),
                       (_reply(stamp, t, t)[:40] + bytes(8), "transmit timestamp")):
        _raises(lambda r=reply: sntp.parse(r, stamp, 0, 10), sntp.SNTPError, why)


def _cfg(link_extra, **top):
    text = '{"key": "%s", "link": {"kind": "mqtt"%s}%s}' % (
        KEY_HEX, link_extra, "".join(', "%s": %s' % kv for kv in top.items()))
    return lambda: config.parse(text)


def test_config_accepts_mqtt_and_ntp_and_names_bad_fields():
    cfg = _cfg(', "mqtt": {"broker": "gw.local", "port": 8883, "tls": {"ca": "/ca.pem"},'
               ' "password": "s3cret"}', ntp='{"host": "pool.ntp.org"}')()
    assert cfg["link"]["mqtt"]["broker"] == "gw.local"
    assert "s3cret" not in repr(config.redacted(cfg))
    for extra, top, why in ((", \"mqtt\": 5", {}, "link.mqtt: expected an object"),
                            (', "mqtt": {"port": 1}', {}, "link.mqtt.broker"),
                            (', "mqtt": {"broker": "b", "port": 0}', {}, "link.mqtt.port"),
                            (', "mqtt": {"broker": "b", "keepalive_s": 0}', {},
                             "link.mqtt.keepalive_s"),
                            (', "mqtt": {"broker": "b", "client_id": "%s"}' % ("x" * 24), {},
                             "link.mqtt.client_id"),
                            (', "mqtt": {"broker": "b", "tls": true}', {}, "link.mqtt.tls"),
                            (', "mqtt": {"broker": "b"}', {"ntp": '{"port": 1}'}, "ntp.host")):
        _raises(_cfg(extra, **top), config.ConfigError, why)
