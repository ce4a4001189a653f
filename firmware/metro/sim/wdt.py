# A software watchdog standing in for machine.WDT on the host, with the same rule: it is
# fed only by tasks.wdt_loop while every registered loop is healthy. When it starves for
# timeout_ms it calls on_expire() (host.py: note the cause "WDT" for the next boot, print
# a line, exit with code 3 so the supervisor restarts the node, as the chip would).

import asyncio
import os
import sys
import time

from ..app.tasks import wdt_loop

CAUSE = "/reset_cause"  # in the data dir: why the last run ended, for the next power_up
EXIT_WDT = 3  # exit code of a watchdog reset


class SoftWDT:
    def __init__(self, timeout_ms, on_expire):
        self.timeout_ms = timeout_ms
        self.on_expire = on_expire
        self.fed = time.ticks_ms()

    def feed(self):
        self.fed = time.ticks_ms()

    async def watch(self):
        while True:
            await asyncio.sleep_ms(max(10, self.timeout_ms // 8))
            if time.ticks_diff(time.ticks_ms(), self.fed) > self.timeout_ms:
                self.on_expire()


def reset_cause(data_dir, default):
    """"WDT" when the watchdog ended the last run, else default; read once."""
    try:
        with open(data_dir + CAUSE) as f:
            cause = f.read().strip()
        os.remove(data_dir + CAUSE)
        return cause
    except OSError:
        return default


def start(data_dir, timeout_ms, health):
    def expire():
        with open(data_dir + CAUSE, "w") as f:
            f.write("WDT")
        print('{"wdt": "expired"}')
        sys.exit(EXIT_WDT)

    wdt = SoftWDT(timeout_ms, expire)
    asyncio.create_task(wdt.watch())
    asyncio.create_task(wdt_loop(health, wdt, max(10, timeout_ms // 4)))
