# The stimulus board (a Raspberry Pi Pico): JSON-lines commands on its USB serial, one
# answer line each ({"ok": NAME, ...} or {"error": "..."}), hil_tests/harness/stimulus.py
# on the other end. The first command is {"setup": {...}}: the rig's pin map
# (hil_tests/rigs/*.yaml, harness/rig.py Rig.stimulus_setup).
# Invariant: a pulses command answers only once the PIO has sent the last pulse, so the
# test knows the train is complete; a refused command changes nothing. A load goes to
# whatever the rig wires for it: the HX711 emulation answers the DUT's clock with its
# counts, and an indicator line prints it (continuous output, every PRINT_MS).

import json
import select
import sys
import time

import commands
import hx711code
import indline
import machine
import pio
import pulseplan
import rp2

PRINT_MS = 100  # an indicator's continuous output rate (10 lines/s)
MOVING_LINES = 2  # lines marked "moving" after a load change, as an indicator settles


class Rig:
    def __init__(self):
        self.pins = {}
        self.pulse_pin = None  # StateMachine 0 makes pulse trains on it
        self.cell = None  # StateMachine 1: HX711 emulation
        self.cal = (0, 1)
        self.load = 0
        self.uarts = {}
        self.indicator = None  # (protocol, unit) when an indicator line is wired
        self.printed_at = time.ticks_ms()
        self.moving = 0

    def setup(self, parts):
        if "pulses" in parts:
            self.pulse_pin = machine.Pin(parts["pulses"]["pin"], machine.Pin.OUT, value=0)
        for name in ("nozzle", "reset", "seal"):
            if name in parts:  # open drain: high-impedance = released / nozzle hung up
                self.pins[name] = machine.Pin(parts[name]["pin"], machine.Pin.OPEN_DRAIN,
                                              value=1)
        if "load_cell" in parts:
            c = parts["load_cell"]
            dout = machine.Pin(c["dout"], machine.Pin.OUT, value=1)
            sck = machine.Pin(c["sck"], machine.Pin.IN)
            self.cal = (c["zero_raw"], c["counts_per_unit"])
            self.cell = rp2.StateMachine(1, pio.hx711, freq=125000000, out_base=dout,
                                         set_base=dout, in_base=sck)
            self.cell.active(1)
        for name in ("scanner", "indicator"):
            if name in parts:
                u = parts[name]
                self.uarts[name] = machine.UART(u["uart"], baudrate=u["baud"],
                                                tx=machine.Pin(u["tx"]))
        if "indicator" in parts:
            ind = parts["indicator"]
            if ind["protocol"] not in indline.PROTOCOLS:
                raise commands.CommandError("setup.indicator.protocol: one of %s"
                                            % ", ".join(indline.PROTOCOLS))
            self.indicator = (ind["protocol"], ind.get("unit", "g"))

    def feed(self):
        self.feed_cell()
        self.print_indicator()

    def print_indicator(self):
        """The present load on the indicator line, every PRINT_MS."""
        now = time.ticks_ms()
        if self.indicator is None or time.ticks_diff(now, self.printed_at) < PRINT_MS:
            return
        self.printed_at = now
        stable = self.moving == 0
        self.moving = max(0, self.moving - 1)
        self.uarts["indicator"].write(indline.line(self.indicator[0], self.load,
                                                   self.indicator[1], stable))

    def feed_cell(self):
        """Keep one word of the present load queued: a new load shows from the next
        conversion but one (a deeper FIFO would replay stale loads)."""
        if self.cell is not None and self.cell.tx_fifo() == 0:
            raw = hx711code.counts(self.load, self.cal[0], self.cal[1])
            self.cell.put(hx711code.left_aligned(raw))

    def pulses(self, n, hz):
        if self.pulse_pin is None or "nozzle" not in self.pins:
            raise commands.CommandError("pulses: no pulses/nozzle pins in setup")
        self.pins["nozzle"].value(0)  # lifted
        if n == 0:
            return
        sm_hz, word = pulseplan.plan(n, hz)
        train = rp2.StateMachine(0, pio.pulse_train, freq=sm_hz, set_base=self.pulse_pin)
        train.active(1)
        train.put(word)
        deadline = time.ticks_add(time.ticks_ms(), pulseplan.duration_ms(n, hz) + 1000)
        try:
            while train.rx_fifo() == 0:  # the program pushes once the last pulse is out
                self.feed()
                if time.ticks_diff(deadline, time.ticks_ms()) < 0:
                    raise commands.CommandError("pulses: the train did not finish")
            train.get()
        finally:
            train.active(0)

    def do(self, name, value):
        if name == "setup":
            self.setup(value)
        elif name == "load":
            if self.cell is None and self.indicator is None:
                raise commands.CommandError("load: no load_cell or indicator in setup")
            self.load = value
            self.moving = MOVING_LINES
        elif name == "nozzle":
            self.pins["nozzle"].value(0 if value == "up" else 1)
        elif name == "pulses":
            self.pulses(value[0], value[1])
        elif name in ("scan", "line"):
            part = "scanner" if name == "scan" else "indicator"
            if part not in self.uarts:
                raise commands.CommandError("%s: no %s UART in setup" % (name, part))
            self.uarts[part].write(value.encode() + b"\r\n")
        elif name in ("reset", "seal") and name not in self.pins:
            raise commands.CommandError("%s: no %s pin in setup" % (name, name))
        elif name == "reset":
            self.pins["reset"].value(0)
            time.sleep_ms(value)
            self.pins["reset"].value(1)
        elif name == "seal":
            self.pins["seal"].value(0 if value == "open" else 1)


def main():
    rig = Rig()
    poll = select.poll()
    poll.register(sys.stdin, select.POLLIN)
    line = ""
    print(json.dumps({"ready": "stimulus"}))
    while True:
        rig.feed()
        if not poll.poll(1):
            continue
        ch = sys.stdin.read(1)
        if ch != "\n":
            line += ch
            continue
        text, line = line.strip(), ""
        if not text:
            continue
        try:
            name, value = commands.parse(json.loads(text))
            rig.do(name, value)
            print(json.dumps({"ok": name}))
        except (ValueError, KeyError) as err:  # CommandError, PlanError, bad JSON, no pin
            print(json.dumps({"error": str(err)}))


main()
