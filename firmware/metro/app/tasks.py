# The asyncio tasks that drive a Node: one per instrument, the link, status, watchdog.
#
# Invariants: a loop that fails reports the failure as an event and retries after a
# pause (no crash loop); the watchdog is fed only while every registered loop has
# completed a pass within its deadline (research/iot.md §4.5: "feed only after
# verifying that everything is functioning correctly").

import asyncio
import gc
import time

from ..wire import frame as wire_frame


class Health:
    """A loop with period p is healthy while it completes a pass within slack + 4 p."""

    def __init__(self, slack_ms=5000):
        self.slack_ms = slack_ms
        self.deadline = {}
        self.last = {}

    def register(self, name, period_ms, slack_times=1):
        self.deadline[name] = slack_times * self.slack_ms + 4 * period_ms
        self.last[name] = time.ticks_ms()

    def beat(self, name):
        self.last[name] = time.ticks_ms()

    async def idle(self, name, ms):
        """Wait ms while beating `name`: waiting for a peer (a gateway, a broker) is
        not a hang, so an outage must not starve the watchdog."""
        while ms > 0:
            self.beat(name)
            step = min(ms, 100)
            await asyncio.sleep_ms(step)
            ms -= step
        self.beat(name)

    def healthy(self):
        now = time.ticks_ms()
        for name in self.deadline:
            if time.ticks_diff(now, self.last[name]) > self.deadline[name]:
                return False
        return True


class HeapProbe:
    """Heap use under MicroPython: gc.mem_alloc() right after gc.collect()."""

    def __init__(self, every=4):
        self.every = every  # sample one pass in `every`: gc.collect() is not free
        self.passes = 0
        self.peak_live = 0
        self.samples = 0

    def sample(self):
        self.passes += 1
        if self.passes % self.every:
            return
        gc.collect()
        live = gc.mem_alloc()
        self.samples += 1
        if live > self.peak_live:
            self.peak_live = live


async def wdt_loop(health, wdt, period_ms):
    while True:
        if health.healthy():
            wdt.feed()
        await asyncio.sleep_ms(period_ms)


async def scale_loop(node, device, period_ms, health, probe=None):
    health.register("scale", period_ms)
    while True:
        try:
            raw = device.read()
            if raw is not None:  # None: an indicator that has sent no new line yet
                node.driver_ok("scale")
                # an indicator's own motion flag; an HX711 has none (None)
                node.weigh(raw, time.ticks_ms(), getattr(device, "stable", None))
        except (OSError, ValueError) as err:  # driver failure or garbled indicator
            state = getattr(err, "state", None)  # drivers.scaleproto.OutOfRange
            if state:  # the indicator works and says overload/underload: not an error
                node.driver_ok("scale")
                node.out_of_range(state, time.ticks_ms())
            else:
                node.driver_error("scale", err)
                await asyncio.sleep_ms(500)
        health.beat("scale")
        if probe:
            probe.sample()
        await asyncio.sleep_ms(period_ms)


async def flow_loop(node, counter, extender, nozzle, period_ms, health, step=None):
    health.register("flow", period_ms)
    while True:
        now = time.ticks_ms()
        try:
            if step:  # host: the simulated pulser catches up to `now`
                step(now)
            node.flow(extender.update(counter.value()), nozzle(), now)
            node.driver_ok("flow")
        except (OSError, ValueError) as err:  # counter or nozzle input failed
            # The Extender keeps its last reading, so the pulses counted meanwhile
            # are taken whole by the next good read: none is lost or counted twice.
            node.driver_error("flow", err)
            await asyncio.sleep_ms(500)
        health.beat("flow")
        await asyncio.sleep_ms(period_ms)


async def scan_loop(node, scanner, period_ms, health):
    health.register("scan", period_ms)
    while True:
        try:
            line = scanner.readline()
            if line:
                node.scanned(line, time.ticks_ms())
        except (OSError, ValueError) as err:  # UART failure or undecodable line
            node.driver_error("scan", err)
            await asyncio.sleep_ms(500)
        health.beat("scan")
        await asyncio.sleep_ms(period_ms)


async def status_loop(node, interval_s):
    while True:
        await asyncio.sleep(interval_s)
        gc.collect()
        node.status(gc.mem_free())


async def tx_loop(node, writer, health, period_ms, probe=None, rx=None):
    """Send due records; returns when the receiving task `rx` has ended."""
    sender = node.sender
    health.register("link", period_ms, 2)
    while rx is None or not rx.done():
        now = time.ticks_ms()
        for event in sender.poll(now):
            node.producer.event(event["code"], event["detail"])
        for _, payload in sender.due(now):
            writer.write(wire_frame.encode(wire_frame.RECORD, payload))
        await writer.drain()
        health.beat("link")
        if probe:
            probe.sample()
        await asyncio.sleep_ms(period_ms)


async def rx_loop(node, reader, key):
    """Feed acknowledgements and time to the node; returns when the link closes."""
    decoder = wire_frame.Decoder()
    while True:
        try:
            data = await reader.read(256)
        except OSError:
            return
        if not data:
            return
        for item in decoder.feed(data):
            if isinstance(item, wire_frame.Frame):
                node.control(item, key, time.ticks_ms())
