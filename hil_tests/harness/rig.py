"""A rig described as data: which DUT pin is wired to which stimulus pin (YAML).

    board: esp32                 # firmware/boards/<board>/config.json is the DUT template
    link: /dev/ttyUSB1           # the DUT's gateway UART adapter (any pyserial URL)
    stimulus: {port: /dev/ttyACM0}
    wiring:
      pulses:    {stimulus: 2, dut: 34}
      nozzle:    {stimulus: 3, dut: 35}
      load_cell: {stimulus_dout: 4, stimulus_sck: 5, dut_dout: 19, dut_sck: 18,
                  zero_raw: 8400, counts_per_unit: 42}
      scanner:   {stimulus_tx: 8, uart: 1, baud: 9600, dut_rx: 5}
      reset:     {stimulus: 22, dut: EN}
    wifi: {ssid: bench, password: ..., broker: 192.168.7.1, port: 1883}   # optional

Invariants: a Rig that exists is consistent (every wiring names the pins it needs; no
stimulus pin and no DUT pin is used twice; the DUT pins agree with the DUT's
configuration); an error names the field (`wiring.pulses.dut: missing`). The
capabilities of the bench are exactly what the wiring provides.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import yaml

BOARDS = Path(__file__).resolve().parents[2] / "firmware" / "boards"
# wiring entry -> (capability, fields it must name, its stimulus pins, its DUT pins).
# An indicator line gives load_cell too: the stimulus board prints the commanded load on
# it as the indicator would (stimulus/indline.py), so `stim.load(g)` works on either.
WIRING = {
    "pulses": ("pulse_input", ("stimulus", "dut"), ("stimulus",), ("dut",)),
    "nozzle": ("pulse_input", ("stimulus", "dut"), ("stimulus",), ("dut",)),
    "load_cell": ("load_cell", ("stimulus_dout", "stimulus_sck", "dut_dout", "dut_sck",
                                "zero_raw", "counts_per_unit"),
                  ("stimulus_dout", "stimulus_sck"), ("dut_dout", "dut_sck")),
    "indicator": ("load_cell", ("stimulus_tx", "uart", "baud", "dut_rx", "protocol"),
                  ("stimulus_tx",), ("dut_rx",)),
    "scanner": ("scanner", ("stimulus_tx", "uart", "baud", "dut_rx"), ("stimulus_tx",),
                ("dut_rx",)),
    "reset": ("power_cut", ("stimulus", "dut"), ("stimulus",), ()),
    "seal": ("seal_switch", ("stimulus", "dut"), ("stimulus",), ("dut",)),
}
# DUT config paths that a wiring's DUT pins must agree with
DUT_PINS = {
    ("pulses", "dut"): ("dispenser", "pins", "pulse"),
    ("nozzle", "dut"): ("dispenser", "pins", "nozzle"),
    ("load_cell", "dut_dout"): ("scale", "pins", "dout"),
    ("load_cell", "dut_sck"): ("scale", "pins", "sck"),
    ("indicator", "dut_rx"): ("scale", "uart", "rx"),
    ("scanner", "dut_rx"): ("scanner", "uart", "rx"),
}


class RigError(ValueError):
    """The rig file is inconsistent; the message names the field."""


@dataclass(frozen=True)
class Rig:
    path: Path
    board: str
    link: str | None
    stimulus_port: str | None
    wiring: dict
    wifi: dict | None

    @property
    def capabilities(self) -> frozenset[str]:
        caps = {WIRING[name][0] for name in self.wiring}
        if "pulses" in caps and "nozzle" not in self.wiring:
            caps.discard("pulse_input")
        if self.wifi:
            caps.add("wifi")
        return frozenset(caps)

    def template(self) -> dict:
        """The DUT's board configuration (firmware/boards/<board>/config.json)."""
        return json.loads((BOARDS / self.board / "config.json").read_text())

    def stimulus_setup(self) -> dict:
        """The stimulus board's pin map: the first command it gets, {"setup": ...}."""
        keep = ("uart", "baud", "zero_raw", "counts_per_unit", "protocol", "unit")
        out = {}
        for name, entry in self.wiring.items():
            part = {}
            for k, v in entry.items():
                if k == "stimulus":
                    part["pin"] = v
                elif k.startswith("stimulus_"):
                    part[k.removeprefix("stimulus_")] = v
                elif k in keep:
                    part[k] = v
            out[name] = part
        return out

    @classmethod
    def load(cls, path: Path) -> Rig:
        try:
            data = yaml.safe_load(path.read_text())
        except FileNotFoundError:
            raise RigError(f"{path}: no such file") from None
        except yaml.YAMLError as e:
            raise RigError(f"{path}: not YAML: {e}") from None
        if not isinstance(data, dict):
            raise RigError(f"{path}: expected a mapping at the top")
        return cls.parse(data, path)

    @classmethod
    def parse(cls, data: dict, path: Path = Path("<rig>")) -> Rig:
        board = data.get("board")
        if not isinstance(board, str) or not (BOARDS / board / "config.json").exists():
            known = sorted(p.name for p in BOARDS.iterdir() if (p / "config.json").exists())
            raise RigError(f"board: expected one of {known}, got {board!r}")
        wiring = data.get("wiring") or {}
        if not isinstance(wiring, dict):
            raise RigError("wiring: expected a mapping of wiring entries")
        stim_used: dict[object, str] = {}
        dut_used: dict[object, str] = {}
        for name, entry in wiring.items():
            if name not in WIRING:
                raise RigError(f"wiring.{name}: unknown (one of {', '.join(WIRING)})")
            if not isinstance(entry, dict):
                raise RigError(f"wiring.{name}: expected a mapping")
            _, needed, stim_pins, dut_pins = WIRING[name]
            for key in needed:
                if key not in entry:
                    raise RigError(f"wiring.{name}.{key}: missing")
            for key in stim_pins:
                _claim(stim_used, entry[key], f"wiring.{name}.{key}", "stimulus")
            for key in dut_pins:
                _claim(dut_used, entry[key], f"wiring.{name}.{key}", "DUT")
        stim = data.get("stimulus") or {}
        wifi = data.get("wifi")
        if wifi is not None:
            _check_wifi(wifi)
        rig = cls(path, board, data.get("link"), stim.get("port"), wiring, wifi)
        rig._check_dut_pins()
        if wiring and rig.stimulus_port is None:
            raise RigError("stimulus.port: missing (the stimulus board's serial port)")
        return rig

    def _check_dut_pins(self) -> None:
        cfg = self.template()
        for (name, key), where in DUT_PINS.items():
            if name not in self.wiring:
                continue
            value: object = cfg
            for part in where:
                value = value.get(part) if isinstance(value, dict) else None
            if value != self.wiring[name][key]:
                raise RigError(f"wiring.{name}.{key}: DUT pin {self.wiring[name][key]} but "
                               f"boards/{self.board}/config.json has {'.'.join(where)} = "
                               f"{value}")


def _check_wifi(wifi: object) -> None:
    if not isinstance(wifi, dict):
        raise RigError("wifi: expected {ssid, password, broker, port}")
    for name in ("ssid", "broker"):
        if not isinstance(wifi.get(name), str) or not wifi[name]:
            raise RigError(f"wifi.{name}: missing (the DUT's network and the broker it "
                           "reaches, also reachable from this machine)")
    if not isinstance(wifi.get("password", ""), str):
        raise RigError("wifi.password: expected text")
    port = wifi.get("port", 1883)
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise RigError("wifi.port: an integer from 1 to 65535")


def _claim(used: dict, pin: object, field: str, side: str) -> None:
    if pin in used:
        raise RigError(f"{field}: {side} pin {pin} is already wired by {used[pin]}")
    used[pin] = field
