# Driven stimulus for host runs ("sim": {"driven": true}): the simulated instruments do
# what the test's JSON-lines commands on stdin say (app/console.py reads them), and
# nothing on their own. Commands (docs/firmware.md, "Driven host runs"):
#   {"load": G}                 load on the cell in the scale's base unit; 0 empties it
#   {"nozzle": "up"|"down"}     the nozzle switch
#   {"pulses": N, "hz": F}      exactly N pulses at F Hz into the counting path, nozzle up
#   {"scan": "TEXT"}            one scanner line (AIM id included, GS as \u001d)
#   {"hang": true}              the stimulus loop stops its passes: watchdog starves
# Invariants: every commanded pulse reaches the counter exactly once, through
# Pin.irq -> drivers.pulse.IrqCounter as on an RP2040; pulses are emitted in proportion
# to the time elapsed when the counter is read, so the node measures the commanded rate
# (within one pulse); a "nozzle" command waits for the pulse train before it, and the
# flow poll sees every nozzle state and the end of every train.

import asyncio
import time


class SimPin:
    """The pulser's output wired to the node's counting input (Pin.irq)."""

    def __init__(self):
        self.handler = None

    def irq(self, handler=None, trigger=None):
        self.handler = handler


class Pulser:
    def __init__(self, pin):
        self.pin = pin
        self.lifted = False
        self.queue = []  # ("nozzle", bool) or ("pulses", (n, milli_hz))
        self.train = None  # [n, milli_hz, start_ms, sent]
        self.emitted = 0

    def command(self, what, value):
        self.queue.append((what, value))

    def step(self, now=None):
        """Called by the flow poll only, so that the poll sees every nozzle state: a
        step ends after one nozzle change, and after the pulse train it completes."""
        if now is None:
            now = time.ticks_ms()
        tr = self.train
        if tr:
            due = max(tr[3], min(tr[0], time.ticks_diff(now, tr[2]) * tr[1] // 1000000))
            for _ in range(due - tr[3]):
                self.pin.handler(self.pin)
            self.emitted += due - tr[3]
            tr[3] = due
            if due == tr[0]:
                self.train = None
            return
        while self.queue:
            what, value = self.queue.pop(0)
            if what == "pulses":
                self.train = [value[0], value[1], now, 0]
                value = True
            changed = value != self.lifted
            self.lifted = value
            if changed or self.train:
                return

    def nozzle(self):
        return self.lifted


class LineQueue:
    """A scanner that sends the lines it is given (readline() as drivers.lines)."""

    def __init__(self):
        self.lines = []

    def readline(self):
        return self.lines.pop(0) if self.lines else None


def _number(cmd, name, low):
    value = cmd.get(name)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value < low:
        raise ValueError("%s: a number >= %d" % (name, low))
    return value


class Stimulus:
    def __init__(self, cell=None, pulser=None, scanner=None):
        self.cell = cell
        self.pulser = pulser
        self.scanner = scanner
        self.hung = False

    def _need(self, part, what):
        if part is None:
            raise ValueError("%s: this node has no %s" % (what, what))
        return part

    def command(self, cmd):
        """One decoded command (console extra); None, or why it was refused."""
        if "load" in cmd:
            load = cmd["load"]
            if not isinstance(load, int) or isinstance(load, bool):
                return "load: an integer in the scale's base unit"
            self._need(self.cell, "load cell").load = load
        elif "nozzle" in cmd:
            if cmd["nozzle"] not in ("up", "down"):
                return "nozzle: up or down"
            self._need(self.pulser, "pulser").command("nozzle", cmd["nozzle"] == "up")
        elif "pulses" in cmd:
            n = _number(cmd, "pulses", 0)
            hz = _number(cmd, "hz", 0)
            if int(n) != n or not hz:
                return "pulses: a whole number, at hz > 0"
            self._need(self.pulser, "pulser").command("pulses", (int(n), int(hz * 1000)))
        elif "scan" in cmd:
            if not isinstance(cmd["scan"], str):
                return "scan: the scanner line as text"
            self._need(self.scanner, "scanner").lines.append(cmd["scan"].encode())
        elif "hang" in cmd:
            self.hung = bool(cmd["hang"])
        else:
            return "command: unknown %s" % ", ".join(cmd)
        return None

    async def loop(self, health, period_ms):
        """The stimulus' own pass, watched by the health check like an instrument loop."""
        health.register("stimulus", period_ms)
        while True:
            if not self.hung:
                health.beat("stimulus")
            await asyncio.sleep_ms(period_ms)
