# The asyncio loops of app/tasks.py with real asyncio, fed by fakes: an indicator on a
# fake UART through the scale loop, a pulse counter that fails in the flow loop, and
# the periodic status records. MicroPython only (CPython's asyncio has no sleep_ms and
# its time no ticks_ms): run by tests/test_micropython.py through mprun.py.

import asyncio

from fakes import FakeUart
from fsutil import fresh_dir, remove_tree
from test_node import _codes, _node, _records

from metro.app import tasks
from metro.core import weigh
from metro.core.scale import F_STABLE, Scale
from metro.drivers.indicator import Indicator
from metro.drivers.lines import UartLines
from metro.wire import record


def _run(ms, *coros):
    async def main():
        running = [asyncio.create_task(c) for c in coros]
        await asyncio.sleep_ms(ms)
        for t in running:
            t.cancel()
        await asyncio.sleep_ms(0)

    asyncio.run(main())


def test_indicator_lines_through_the_scale_loop_garbled_overload_and_motion():
    root = fresh_dir("tasks")
    try:
        node, _, _ = _node(root)
        node.scale = Scale(weigh.Calibration(0, 1, 1), e=5, max_load=15000, window=3)
        lines = [b"S S     0.000 kg\r\n"] * 4  # power-up zero
        lines += [b"S D     1.250 kg\r\n"] * 6  # a quiet window, but the indicator: motion
        lines += [b"S S  1.2?0 kg\r\n", b"S S     0.000 kg\r\n", OSError(5)]  # garbled, EIO
        lines += [b"S +\r\n", b"S +\r\n"]  # overload: one event
        lines += [b"S S     1.250 kg\r\n"] * 4  # settled: one weighing
        device = Indicator(UartLines(FakeUart(lines)), "sics", "g")
        health = tasks.Health(5000)
        _run(1400, tasks.scale_loop(node, device, 5, health))
        recs = _records(node)
        kinds = [r["code"] if r["kind"] == record.EVENT else record.KIND_NAMES[r["kind"]]
                 for r in recs]
        assert kinds == ["zero", "driver_error", "driver_error", "overload", "weighing"], kinds
        bad_line, bad_uart = [r["detail"] for r in recs if r.get("code") == "driver_error"]
        assert bad_line["what"] == "scale" and bad_line["why"].startswith("value: not a")
        assert bad_uart["count"] == 1  # a new streak after the good line between them
        assert recs[3]["detail"] == {"by": "indicator"}
        assert recs[4]["net"] == 1250 and recs[4]["flags"] & F_STABLE
        assert health.healthy()  # the loop went on through all of it
    finally:
        remove_tree(root)


class _FailingCounter:
    """A pulse counter whose reads fail now and then (an I2C/PIO fault)."""

    def __init__(self, script):
        self.script = list(script)
        self.last = 0

    def value(self):
        if self.script:
            got = self.script.pop(0)
            if isinstance(got, Exception):
                raise got
            self.last = got
        return self.last


def test_flow_loop_survives_a_failing_counter_and_loses_no_pulse():
    from metro.core.flow import Extender

    root = fresh_dir("tasks")
    try:
        node, _, _ = _node(root)
        node.dispenser.max_hz = 1000000  # polled every 5 ms: no rate flag here
        counter = _FailingCounter([0, 0, 100, OSError(110), 300, 300])
        states = [True] * 6 + [False]

        def nozzle():
            return states.pop(0) if len(states) > 1 else states[0]

        health = tasks.Health(5000)
        _run(800, tasks.flow_loop(node, counter, Extender(16), nozzle, 5, health))
        assert _codes(node) == ["driver_error"]
        (ev,) = [r for r in _records(node) if r["kind"] == record.EVENT]
        assert ev["detail"]["what"] == "flow" and "110" in ev["detail"]["why"]
        (d,) = [r for r in _records(node) if r["kind"] == record.DISPENSE]
        assert d["pulses"] == 300  # the pulses counted while the read failed are kept
        assert health.healthy() and node.errors["flow"] == 0
    finally:
        remove_tree(root)


def test_status_records_are_made_periodically_with_their_fields():
    root = fresh_dir("tasks")
    try:
        node, ticks, _ = _node(root)
        node.producer.event("power_up", {"reset": "PWRON"})
        ticks.ms = 61500  # the node's clock: 61.5 s up
        _run(330, tasks.status_loop(node, 0.1))
        recs = _records(node)
        status = [r for r in recs if r["kind"] == record.STATUS]
        assert 2 <= len(status) <= 4, len(status)
        for i, s in enumerate(status):
            assert s["fw"] == "metro test" and s["uptime_s"] == 61  # up to now, not stale
            assert s["mem_free"] > 0 and s["backlog"] == 1 + i  # the records before it
            assert "inst" not in s and s["prev"] == recs[i]["seq"]
    finally:
        remove_tree(root)
