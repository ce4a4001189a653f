# boards/main.py, the board entry point, imported against fake `machine` modules shaped
# like the real ports': it must load on a Raspberry Pi Pico (rp2 defines only
# PWRON_RESET and WDT_RESET) as well as on an ESP32. Plain functions for pytest
# (CPython) and mprun.py (MicroPython); `import main` does not start the node.

import sys

from fakes import FakeUart

from metro.drivers.indicator import Indicator


def _boards():
    path = __file__
    return (path[: path.rfind("/") + 1] if "/" in path else "") + "../boards"


class _Pin:
    IN = 0
    OUT = 1
    PULL_UP = 1

    def __init__(self, pin_id, mode=-1, pull=-1):
        self.id = pin_id
        self.level = 1

    def value(self, v=None):
        if v is None:
            return self.level
        self.level = v
        return None


class _Uart:
    def __init__(self, uart_id, baudrate=9600, tx=None, rx=None):
        self.id = uart_id
        self.fake = FakeUart([b"S S     1.235 kg\r\n"])

    def read(self):
        return self.fake.read()


class Rp2Machine:
    """What MicroPython's rp2 port offers that main.py reads (machine module docs)."""

    PWRON_RESET = 1
    WDT_RESET = 3
    Pin = _Pin
    UART = _Uart

    @staticmethod
    def reset_cause():
        return 3

    @staticmethod
    def unique_id():
        return b"\xe6\x61\x41\x03\xe7\x51\x3a\x2f"

    @staticmethod
    def disable_irq():
        return 0

    @staticmethod
    def enable_irq(state):
        pass


class Esp32Machine(Rp2Machine):
    PWRON_RESET = 1
    HARD_RESET = 2
    WDT_RESET = 3
    DEEPSLEEP_RESET = 4
    SOFT_RESET = 5


class _StateMachine:
    def __init__(self, sm_id, program, in_base=None):
        self.execs = []
        self.on = False

    def exec(self, instr):
        self.execs.append(instr)

    def active(self, on):
        self.on = bool(on)

    def get(self):
        return (-1234) & 0xFFFFFFFF  # X counted down 1234 times from 0


class _Rp2:
    StateMachine = _StateMachine

    @staticmethod
    def asm_pio(**kw):
        return lambda fn: fn  # the PIO assembler itself is the port's business


def _with_main(machine, test):
    """test(main) with main.py imported while the fake port modules are installed."""
    saved = {name: sys.modules.get(name) for name in ("machine", "rp2")}
    sys.modules["machine"] = machine
    sys.modules["rp2"] = _Rp2
    sys.modules.pop("main", None)
    sys.path.insert(0, _boards())
    try:
        test(__import__("main"))  # an AttributeError here is a board that never boots
    finally:
        sys.path.remove(_boards())
        sys.modules.pop("main", None)
        for name in saved:
            if saved[name] is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = saved[name]


def test_main_imports_on_a_pico_and_names_its_reset_causes():
    _with_main(Rp2Machine, _pico_resets)


def _pico_resets(main):
    assert main.reset_name(Rp2Machine.reset_cause()) == "WDT"
    assert main.reset_name(1) == "PWRON"
    assert main.reset_name(2) == "OTHER"  # no HARD_RESET on rp2: not mistaken for one
    assert main.reset_name(None) == "OTHER"


def test_main_on_an_esp32_names_every_reset_cause():
    _with_main(Esp32Machine, _esp32_resets)


def _esp32_resets(main):
    got = [main.reset_name(c) for c in (1, 2, 3, 4, 5, 99)]
    assert got == ["PWRON", "HARD", "WDT", "DEEPSLEEP", "SOFT", "OTHER"]


def test_main_builds_the_pico_drivers_from_the_config():
    _with_main(Rp2Machine, _pico_drivers)


def _pico_drivers(main):
    counter, bits = main.pulse_counter({"pins": {"pulse": 14, "nozzle": 15}})
    assert bits == 32 and counter.value() == 1234  # PIO path (not an ESP32)
    assert counter.sm.on and counter.sm.execs[0] == "set(x, 0)"
    source = main.scale_source({"source": "sics", "unit": "g",
                                "uart": {"id": 1, "tx": 4, "rx": 5}})
    assert isinstance(source, Indicator)
    assert source.read() == 1235 and source.stable is True
    fw, fw_hash, why = main.identify()  # the modules are files here: a real hash
    assert why is None and len(fw_hash) == 64 and fw.endswith("+" + fw_hash[:16])
