"""The stimulus board's firmware: its pure parts under CPython and under the MicroPython
unix port (the same answers), and every file compiles with mpy-cross for the Pico."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path

import pytest

from metrotrace.tools import hostnode
from tests import micropython

STIMULUS = Path(__file__).resolve().parent.parent


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"stimulus_{name}", STIMULUS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


commands = _load("commands")
hx711code = _load("hx711code")
pulseplan = _load("pulseplan")
indline = _load("indline")


def test_commands_are_the_host_nodes_vocabulary_plus_the_rigs_own():
    assert commands.parse({"load": 1250}) == ("load", 1250)
    assert commands.parse({"nozzle": "up"}) == ("nozzle", "up")
    assert commands.parse({"pulses": 4000, "hz": 2000}) == ("pulses", (4000, 2000))
    assert commands.parse({"scan": "]E04006381333931"}) == ("scan", "]E04006381333931")
    assert commands.parse({"reset": 100}) == ("reset", 100)
    assert commands.parse({"setup": {"pulses": {"pin": 2}}})[0] == "setup"


@pytest.mark.parametrize(("cmd", "message"), [
    ({"nozzle": "sideways"}, "nozzle: one of up, down"),
    ({"pulses": -1, "hz": 10}, "pulses: an integer"),
    ({"pulses": 10, "hz": 0}, "hz: a number"),
    ({"load": True}, "load: an integer"),
    ({"setup": {"laser": {}}}, "setup.laser: unknown part"),
    ({"dance": 1}, "command: unknown dance"),
])
def test_a_bad_command_is_refused_naming_the_field(cmd, message):
    with pytest.raises(commands.CommandError, match=message):
        commands.parse(cmd)


def test_hx711_words_decode_back_to_the_counts_and_saturate_like_the_chip():
    for load in (0, 1, 1250, 15000, -300):
        raw = hx711code.counts(load, 8400, 42)
        assert raw == 8400 + 42 * load
        assert hx711code.decode(hx711code.word(raw)) == raw
        assert hx711code.left_aligned(raw) >> 8 == hx711code.word(raw)
    assert hx711code.counts(10**6, 8400, 42) == 0x7FFFFF
    assert hx711code.word(-1) == 0xFFFFFF and hx711code.decode(0x800000) == -0x800000


def test_indicator_lines_are_what_the_duts_parsers_read_back_exactly():
    from metrotrace.firmware.metro.drivers import scaleproto

    for load in (0, 5, 1250, 15000, -40):
        assert scaleproto.parse_sics(indline.line("sics", load)) == (load, True, "ok")
        assert scaleproto.parse_print(indline.line("print", load, "g", False)) == (
            load, False, "ok")
    assert scaleproto.parse_sics(indline.line("sics", 1250, "kg"), "g") == (1250000, True, "ok")
    with pytest.raises(indline.LineError, match="protocol: one of sics, print"):
        indline.line("morse", 5)
    with pytest.raises(indline.LineError, match="load: an integer"):
        indline.line("sics", 1.5)


def test_a_pulse_plan_loads_n_minus_1_and_clocks_32_cycles_per_pulse():
    assert pulseplan.plan(4000, 2000) == (64000, 3999)
    assert pulseplan.plan(1, 60) == (1920, 0)
    with pytest.raises(pulseplan.PlanError, match="hz: at least 60"):
        pulseplan.plan(10, 59)
    with pytest.raises(pulseplan.PlanError, match="hz: at most"):
        pulseplan.plan(10, 10**7)
    assert pulseplan.duration_ms(4000, 2000) == 2000


@pytest.mark.micropython
def test_the_pure_parts_give_the_same_answers_under_micropython():
    script = ("import json, commands, hx711code, pulseplan\n"
              "print(json.dumps([commands.parse({'pulses': 4000, 'hz': 2000}),"
              " hx711code.left_aligned(hx711code.counts(-300, 8400, 42)),"
              " pulseplan.plan(4000, 2000), pulseplan.duration_ms(7, 3)]))\n")
    done = micropython.run(["-c", script], path=[STIMULUS])
    assert done.returncode == 0, done.stderr.decode()
    got = json.loads(done.stdout)
    assert got == [["pulses", [4000, 2000]],
                   hx711code.left_aligned(hx711code.counts(-300, 8400, 42)),
                   list(pulseplan.plan(4000, 2000)), pulseplan.duration_ms(7, 3)]


@pytest.mark.parametrize("source", sorted(p.name for p in STIMULUS.glob("*.py")))
def test_every_stimulus_file_compiles_with_mpy_cross(source, tmp_path):
    cross = hostnode.executable("mpy-cross", "mpy-cross")
    done = subprocess.run([cross, "-o", str(tmp_path / "out.mpy"), str(STIMULUS / source)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out.mpy").stat().st_size > 0
