"""The stimulus program itself (main.py) under the MicroPython unix port, its pins and
UARTs played by fakes that print what they are made to do (fakehw/): a load on an
indicator-wired rig comes out as the indicator lines the DUT's own parser reads back,
the commands answer one line each, and a command the rig cannot carry out is refused."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from metrotrace.firmware.metro.drivers import scaleproto
from metrotrace.tools import hostnode

STIMULUS = Path(__file__).resolve().parent.parent
FAKE_HW = Path(__file__).resolve().parent / "fakehw"

pytestmark = pytest.mark.micropython


class Program:
    """main.py running under micropython; send() a command, read its JSON lines."""

    def __init__(self) -> None:
        env = dict(os.environ, MICROPYPATH=f"{FAKE_HW}:{STIMULUS}")
        self.proc = subprocess.Popen([hostnode.micropython(), str(STIMULUS / "main.py")],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        os.set_blocking(self.proc.stdout.fileno(), False)
        self.lines: list[dict] = []
        self._buf = b""
        assert self.until(lambda x: "ready" in x) == {"ready": "stimulus"}

    def _read(self) -> None:
        chunk = self.proc.stdout.read()
        if chunk:
            self._buf += chunk
            *done, self._buf = self._buf.split(b"\n")
            self.lines += [json.loads(x) for x in done if x.strip()]

    def until(self, match, timeout: float = 5.0, start: int = 0) -> dict:
        """The first line from `start` on that matches."""
        deadline, seen = time.monotonic() + timeout, start
        while time.monotonic() < deadline:
            self._read()
            for line in self.lines[seen:]:
                seen += 1
                if match(line):
                    return line
            time.sleep(0.01)
        raise AssertionError(f"no matching line within {timeout} s: {self.lines[-10:]}")

    def send(self, cmd: dict) -> dict:
        """The command's answer ({"ok": ...} or {"error": ...})."""
        start = len(self.lines)
        self.proc.stdin.write(json.dumps(cmd).encode() + b"\n")
        self.proc.stdin.flush()
        return self.until(lambda x: "ok" in x or "error" in x, start=start)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.proc.stdin.close()
        self.proc.stdout.close()


@pytest.fixture
def program():
    p = Program()
    yield p
    p.close()


PARSE = {"sics": scaleproto.parse_sics, "print": scaleproto.parse_print}


@pytest.mark.parametrize("protocol", sorted(PARSE))
def test_a_load_on_an_indicator_rig_prints_lines_the_duts_parser_reads_back(program,
                                                                           protocol):
    setup = {"indicator": {"tx": 8, "uart": 1, "baud": 9600, "protocol": protocol}}
    assert program.send({"setup": setup}) == {"ok": "setup"}
    for load in (1250, -35):
        start = len(program.lines)
        assert program.send({"load": load}) == {"ok": "load"}
        program.until(lambda x, load=load: "tx" in x and str(abs(load)) in x["tx"]
                      and PARSE[protocol](x["tx"])[1], start=start)  # settled: stable
        printed = [PARSE[protocol](x["tx"]) for x in program.lines[start:] if "tx" in x]
        assert [value for value, _, _ in printed] == [load] * len(printed)
        assert [stable for _, stable, _ in printed][:3] == [False, False, True]
        assert {state for _, _, state in printed} == {scaleproto.OK}


def test_a_load_without_a_cell_or_an_indicator_is_refused_and_other_commands_work(program):
    assert program.send({"load": 1250}) == {
        "error": "load: no load_cell or indicator in setup"}
    assert program.send({"setup": {"scanner": {"tx": 8, "uart": 1, "baud": 9600},
                                   "pulses": {"pin": 2}, "nozzle": {"pin": 3}}}) == {
        "ok": "setup"}
    assert program.send({"scan": "]E04006381333931"}) == {"ok": "scan"}
    assert {"uart": 1, "tx": "]E04006381333931\r\n"} in program.lines
    assert program.send({"pulses": 4000, "hz": 2000}) == {"ok": "pulses"}
    assert {"pin": 3, "value": 0} in program.lines  # the nozzle lifted first
    assert {"pio": 0, "freq": 64000, "word": 3999} in program.lines
    assert program.send({"reset": 100})["error"] == "reset: no reset pin in setup"
    assert program.send({"setup": {"indicator": {"tx": 9, "uart": 0, "baud": 9600,
                                                 "protocol": "morse"}}}) == {
        "error": "setup.indicator.protocol: one of sics, print"}
