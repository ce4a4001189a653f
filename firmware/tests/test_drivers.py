# Drivers against fake buses that behave like the chips (fakes.py): plain functions
# for pytest under CPython and mprun.py under the MicroPython unix port.

from fakes import TICKS_PERIOD, FakeHX711, FakeIrqPin, FakeUart, ticks_diff

from metro.drivers import scaleproto
from metro.drivers.hx711 import HX711
from metro.drivers.indicator import Indicator
from metro.drivers.lines import LineReader, UartLines
from metro.drivers.pulse import IrqCounter


def _driver(chip, gain=128):
    hx = HX711(chip.sck, chip.dout, gain=gain)
    return hx


def test_hx711_reads_twos_complement_msb_first():
    values = [0, 1, -1, 8400, -8400, 0x123456, -0x400000]
    chip = FakeHX711(values)
    hx = _driver(chip)
    got = []
    for _ in values:
        got.append(hx.read())
        chip.settle()
    assert got == values and chip.errors == 0


def test_hx711_gain_selects_the_next_conversion():
    chip = FakeHX711([10, 20, 30])
    hx = _driver(chip, gain=64)
    hx.read()
    chip.settle()
    hx.read()
    chip.settle()
    assert chip.gains_used == [128, 64]  # power-up default, then what 27 pulses chose
    assert _driver(FakeHX711([]), gain=32).pulses == 26


def test_hx711_not_ready_and_saturation_are_errors():
    chip = FakeHX711([])
    hx = _driver(chip)
    try:
        hx.read()
    except OSError as e:
        assert "not ready" in str(e)
    else:
        raise AssertionError("read from a chip with no conversion")
    chip = FakeHX711([0x7FFFFF])
    try:
        _driver(chip).read()
    except ValueError as e:
        assert "saturated" in str(e)
    else:
        raise AssertionError("a saturated conversion passed as a weight")


def test_hx711_power_down_needs_more_than_60us_high():
    chip = FakeHX711([5, 6])
    hx = _driver(chip)

    def sleep_us(us):
        chip.now_us += us

    hx.sleep_us = sleep_us
    hx.power_down()
    chip.sck.value(0)
    assert not chip.powered and not hx.ready()
    chip.wake()
    hx.power_up()
    assert hx.read() == 6  # the conversion cut by power-down is gone


def test_mt_sics_lines():
    assert scaleproto.parse_sics(b"S S     1.234 kg\r\n") == (1234, True, "ok")
    assert scaleproto.parse_sics("S D    -0.015 kg") == (-15, False, "ok")
    assert scaleproto.parse_sics("S S   250.5 g", base="mg") == (250500, True, "ok")
    assert scaleproto.parse_sics("S +") == (0, False, "overload")
    assert scaleproto.parse_sics("S -")[2] == "underload"
    for bad in ("S S  1.2.3 kg", "S S 1.0005 kg", "S I", "ES", "hello", "S S 1 lb"):
        try:
            scaleproto.parse_sics(bad)
        except scaleproto.ProtocolError:
            continue
        raise AssertionError("accepted garbled " + bad)


def test_continuous_print_lines():
    assert scaleproto.parse_print(b"ST,GS,+0001.234kg\r\n") == (1234, True, "ok")
    assert scaleproto.parse_print("US,NT,-0000.020kg") == (-20, False, "ok")
    assert scaleproto.parse_print("OL,GS,+9999.999kg")[2] == "overload"
    assert scaleproto.parse_print(b"ST,GS,+  1.234kg\r\n") == (1234, True, "ok")
    assert scaleproto.parse_print("US,NT,-   0.020 kg") == (-20, False, "ok")
    for bad in ("ST,GS,+01.2x4kg", "XX,GS,1kg", "ST,GS", "\xff\xfe", b"ST,GS,\xff1kg",
                "ST,GS,+ 1 .234kg", "ST,GS,+ -1.234kg", "ST,GS,+  kg"):
        try:
            scaleproto.parse_print(bad)
        except scaleproto.ProtocolError:
            continue
        raise AssertionError("accepted garbled " + bad)


def test_scanner_lines_keep_gs_and_drop_overlong():
    r = LineReader(max_len=40)
    lines = r.feed(b"]C10109506000134352\x1d10LOT1\r\n]E04006381")
    assert lines == [b"]C10109506000134352\x1d10LOT1"]
    assert r.feed(b"333931\r\n") == [b"]E04006381333931"]
    assert r.feed(b"x" * 50 + b"\r\nok\n") == [b"ok"] and r.dropped == 1
    uart = UartLines(FakeUart([b"]E0400", b"6381333931\r\n]E", None, b"0123\n"]))
    got = [uart.readline() for _ in range(5)]
    assert got == [None, b"]E04006381333931", None, b"]E0123", None]


def test_irq_counter_only_counts():
    pin = FakeIrqPin()
    counter = IrqCounter(pin, trigger=1)
    pin.pulse(1234)
    assert counter.value() == 1234


def test_hx711_timeout_across_a_wrap_of_the_ms_counter():
    chip = FakeHX711([])  # never ready
    now = [TICKS_PERIOD - 200]

    def ticks_ms():
        now[0] = (now[0] + 100) % TICKS_PERIOD
        return now[0]

    hx = HX711(chip.sck, chip.dout, ticks_ms=ticks_ms, timeout_ms=500, ticks_diff=ticks_diff)
    try:
        hx.read()  # plain subtraction would spin here for ~12 days
    except OSError as e:
        assert "does not respond" in str(e)
    assert 500 <= now[0] < 1000  # gave up 500 ms after it began, past the wrap


def _indicator(protocol, chunks):
    return Indicator(UartLines(FakeUart(chunks)), protocol, "g")


def _reads(ind, n):
    out = []
    for _ in range(n):
        try:
            out.append((ind.read(), ind.stable))
        except scaleproto.OutOfRange as e:
            out.append(e.state)
        except scaleproto.ProtocolError as e:
            out.append("error: " + str(e).split(":")[0])
    return out


def test_indicator_reads_value_and_its_own_motion_flag_over_a_uart():
    ind = _indicator("sics", [b"S D     1.2", b"30 kg\r\nS S     1.235 kg\r\n", None,
                              b"S +\r\nS -\r\nS S  1.2?5 kg\r\n\xff\xfe\x00\r\n"])
    assert _reads(ind, 8) == [(None, False), (1230, False), (1235, True), (None, True),
                              "overload", "underload", "error: value",
                              "error: not a text line"]
    assert ind.stable is False  # a bad line never leaves an old "stable" behind
    ind = _indicator("print", [b"ST,GS,+  1.234kg\r\nUS,GS,+  1.240kg\r\nOL,GS,+9999.999kg\n"])
    assert _reads(ind, 3) == [(1234, True), (1240, False), "overload"]
