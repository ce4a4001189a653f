# NTP time for Wi-Fi boards: one SNTP query over UDP (sntp.py) now and then, and the
# node's clock set with time quality 1 (docs/protocol.md §1, tq). The gateway's tagged
# T frame sets tq 2; before either, records carry tq 0 and ms since boot.
#
# Invariants: a failed query never changes the clock (driver_error event, once per
# streak) and is retried sooner than the regular period; the socket is non-blocking
# and polled, so a server that never answers costs timeout_ms, not the node.

import asyncio
import os
import socket
import time

from ..core.clock import TQ_NTP
from . import sntp


async def query(host, port=123, timeout_ms=2000):
    """(UTC ms, the local ticks_ms it was true at, delay ms); OSError / SNTPError."""
    addr = socket.getaddrinfo(host, port, 0, socket.SOCK_DGRAM)[0][-1]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        stamp = os.urandom(8)
        sent = time.ticks_ms()
        sock.sendto(sntp.request(stamp), addr)
        while True:
            try:
                reply = sock.recv(sntp.PACKET + 64)
                break
            except OSError:  # EAGAIN: nothing yet
                if time.ticks_diff(time.ticks_ms(), sent) > timeout_ms:
                    raise sntp.SNTPError("no reply from %s:%d in %d ms"
                                         % (host, port, timeout_ms))
                await asyncio.sleep_ms(10)
        got = time.ticks_ms()
        utc, delay = sntp.parse(reply, stamp, sent, got)
        return utc, got, delay
    finally:
        sock.close()


async def ntp_loop(node, host, port=123, every_s=3600, first_retry_s=10):
    retry_s = first_retry_s
    while True:
        try:
            utc, at, _ = await query(host, port)
        except (OSError, ValueError) as err:  # unreachable, or a reply we do not believe
            node.driver_error("ntp", err)
            await asyncio.sleep(retry_s)
            retry_s = min(retry_s * 2, every_s)
            continue
        node.driver_ok("ntp")
        node.set_time(utc + time.ticks_diff(time.ticks_ms(), at), TQ_NTP)
        retry_s = first_retry_s
        await asyncio.sleep(every_s)
