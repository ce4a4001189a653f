# One MQTT 3.1.1 connection under asyncio, in the spirit of Peter Hinch's mqtt_as:
# non-blocking sockets, a reader task, keepalive by PINGREQ, QoS 1 publications whose
# PUBACKs are tracked, and an optional TLS wrap. It does not reconnect: a dead
# connection says so through trouble() and the caller (uplink.py) builds a new one.
#
# Invariants: one writer at a time (a lock around write + drain, so a PUBACK sent by
# the reader task never interleaves with a PUBLISH); a connection is declared dead
# when the broker is silent for a whole keepalive period although we pinged it, or a
# PUBACK is later than ack_timeout_ms: no publication waits for ever (the QoS 1 loss
# mode of umqtt.robust, research/iot.md §4.1).

import asyncio
import time

from . import mqtt


class Client:
    def __init__(self, host, port, client_id, keepalive_s=60, will=None, user=None,
                 password=None, ssl=None, on_message=None, ack_timeout_ms=10000):
        self.host = host
        self.port = port
        self.client_id = client_id
        self.keepalive_ms = keepalive_s * 1000
        self.will = will  # (topic, message, qos, retain)
        self._user = user
        self._password = password
        self.ssl = ssl  # an ssl.SSLContext, or None for plain TCP
        self.on_message = on_message  # on_message(topic, payload)
        self.ack_timeout_ms = ack_timeout_ms
        self.inflight = {}  # pid -> ticks_ms when the QoS 1 PUBLISH was sent
        self.subacks = {}  # pid -> granted QoS of SUBACKs received
        self.dead = None  # why the connection ended, once it has
        self._pid = 0
        self._lock = asyncio.Lock()
        self._parser = mqtt.Parser()
        self._reader = self._writer = self._task = None
        self.last_rx = self.last_ping = time.ticks_ms()

    def _next_pid(self):
        self._pid = self._pid % 65535 + 1  # 1..65535, never 0 (§2.3.1)
        return self._pid

    async def _send(self, data):
        writer = self._writer
        if writer is None:  # not connected (yet): an OSError, so callers reconnect
            raise mqtt.MQTTError("send: not connected")
        async with self._lock:
            writer.write(data)
            await writer.drain()

    async def _read(self):
        reader = self._reader
        if reader is None:
            raise mqtt.MQTTError("read: not connected")
        data = await reader.read(512)
        if not data:
            raise mqtt.MQTTError("broker closed the connection")
        self.last_rx = time.ticks_ms()
        return self._parser.feed(data)

    async def connect(self, timeout_ms=10000):
        """Open, CONNECT, await CONNACK; raises OSError (MQTTError) on failure."""
        opening = asyncio.open_connection(self.host, self.port, ssl=self.ssl)
        self._reader, self._writer = await asyncio.wait_for_ms(opening, timeout_ms)
        await self._send(mqtt.connect(self.client_id, self.keepalive_ms // 1000, True,
                                      self.will, self._user, self._password))
        packets = await asyncio.wait_for_ms(self._read(), timeout_ms)  # type: list
        if not packets or packets[0][0] != mqtt.CONNACK:
            raise mqtt.MQTTError("connect: no CONNACK")
        mqtt.connack_code(packets[0][2])
        self._task = asyncio.create_task(self._reader_loop(packets[1:]))

    async def _reader_loop(self, packets):
        try:
            while True:
                for ptype, flags, body in packets:
                    await self._handle(ptype, flags, body)
                packets = await self._read()
        except OSError as err:  # MQTTError included: the connection is over
            self.dead = str(err) or "connection lost"

    async def _handle(self, ptype, flags, body):
        if ptype == mqtt.PUBACK:
            self.inflight.pop(mqtt.packet_id(body), None)
        elif ptype == mqtt.SUBACK:
            self.subacks[mqtt.packet_id(body)] = body[2] if len(body) > 2 else 0x80
        elif ptype == mqtt.PUBLISH:
            topic, pid, qos, payload = mqtt.parse_publish(flags, body)
            if self.on_message:
                self.on_message(topic, payload)
            if qos:  # acknowledged once handled: a crash before this gets it again
                await self._send(mqtt.puback(pid))
        elif ptype != mqtt.PINGRESP:
            raise mqtt.MQTTError("unexpected packet type %d" % ptype)

    async def subscribe(self, topic, qos=1, timeout_ms=10000):
        pid = self._next_pid()
        await self._send(mqtt.subscribe(pid, topic, qos))
        waited = 0
        while pid not in self.subacks:
            if self.dead or waited > timeout_ms:
                raise mqtt.MQTTError("subscribe %s: no SUBACK" % topic)
            await asyncio.sleep_ms(10)
            waited += 10
        if self.subacks.pop(pid) == 0x80:
            raise mqtt.MQTTError("subscribe %s: refused by the broker" % topic)

    async def publish(self, topic, payload, qos=1, retain=False):
        """Send one PUBLISH; QoS 1 ones stay in `inflight` until their PUBACK."""
        pid = self._next_pid() if qos else 0
        if qos:
            self.inflight[pid] = time.ticks_ms()
        await self._send(mqtt.publish(topic, payload, pid, qos, retain))
        return pid

    def trouble(self, now):
        """Why this connection must be dropped, or None while it is healthy."""
        if self.dead:
            return self.dead
        if time.ticks_diff(now, self.last_rx) > self.keepalive_ms:
            return "broker silent for %d ms" % time.ticks_diff(now, self.last_rx)
        for pid in self.inflight:
            if time.ticks_diff(now, self.inflight[pid]) > self.ack_timeout_ms:
                return "no PUBACK for packet %d" % pid
        return None

    async def keep(self, now):
        """PINGREQ when the broker has been quiet for a quarter keepalive (§3.1.2.10)."""
        quarter = self.keepalive_ms // 4
        if (time.ticks_diff(now, self.last_rx) >= quarter
                and time.ticks_diff(now, self.last_ping) >= quarter):
            self.last_ping = now
            await self._send(mqtt.PINGREQ_PACKET)

    async def close(self, graceful=False):
        """End the connection; graceful sends DISCONNECT, so the Last Will is dropped."""
        if self._task:
            self._task.cancel()
        if self._writer:
            try:
                if graceful and not self.dead:
                    await self._send(mqtt.DISCONNECT_PACKET)
                self._writer.close()
                await self._writer.wait_closed()
            except OSError:
                pass  # it is going away in any case
        self.dead = self.dead or "closed"
