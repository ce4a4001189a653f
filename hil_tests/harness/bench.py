"""The bench a HIL run has: what it offers, read from the command line and the rig file.

    (no option)                  the unix-interpreter DUT: every capability (wifi: a
                                 Mosquitto of its own that the node's MQTT uplink reaches)
    --board PORT [--link URL]    a real board, its UART link through an adapter
    --rig rig.yaml               which DUT pin is wired to which stimulus pin; the
                                 capabilities are what the rig wires (harness/rig.py)

Tests ask for a capability with a marker (`@pytest.mark.pulse_input`); a bench that
lacks it skips the test and says what is missing and how to add it. Invariant: only a
missing capability skips; a bench that has it runs the test, and a failure fails.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from .rig import Rig

# capability -> how a rig gets it (the skip reason says so)
CAPABILITIES = {
    "load_cell": "wire the stimulus board's HX711 emulation (rig: load_cell) or an "
                 "indicator line (rig: indicator) to the DUT",
    "pulse_input": "wire a stimulus pin to the DUT's pulse input (rig: pulses)",
    "scanner": "wire a stimulus UART TX to the DUT's scanner RX (rig: scanner)",
    "power_cut": "wire a stimulus pin to the DUT's EN/RUN pin (rig: reset)",
    "wifi": "a DUT with Wi-Fi and a broker it can reach (rig: wifi: {ssid, password, "
            "broker, port}); on the unix bench, install mosquitto",
}
UNIX = frozenset({"load_cell", "pulse_input", "scanner", "power_cut"})


def unix_capabilities() -> frozenset[str]:
    # The unix node's Wi-Fi uplink is its MQTT client on the host's network: all it
    # needs is a broker, which the bench starts (hil_tests/conftest.py, site_broker).
    return UNIX | {"wifi"} if shutil.which("mosquitto") else UNIX


@dataclass
class Bench:
    kind: str  # "unix" or "board"
    capabilities: frozenset[str]
    transport: str = "pty"  # unix DUT: how its link is presented (pty or socket)
    board_port: str | None = None
    link_url: str | None = None
    rig: Rig | None = None
    notes: list[str] = field(default_factory=list)

    def lacks(self, capability: str) -> str | None:
        """None when the bench has the capability, else the reason to skip."""
        if capability in self.capabilities:
            return None
        where = f"rig {self.rig.path}" if self.rig else f"the {self.kind} bench"
        return f"bench lacks {capability}: {where} does not provide it ({CAPABILITIES[capability]})"


def from_options(board: str | None, link: str | None, rig_path: str | None,
                 transport: str = "pty") -> Bench:
    rig = Rig.load(Path(rig_path)) if rig_path else None
    if board is None:
        if link is not None:
            raise ValueError("--link: names a board's UART link; give --board PORT as well")
        return Bench("unix", unix_capabilities(), transport=transport, rig=rig)
    if rig is None:
        raise ValueError("--board: give --rig rig.yaml too (which pins the stimulus drives);"
                         " hil_tests/rigs/example.yaml is a template")
    link = link or rig.link
    if link is None:
        raise ValueError("--board: give --link URL (the board's UART link adapter) or set"
                         " `link:` in the rig file")
    return Bench("board", rig.capabilities, board_port=board, link_url=link, rig=rig)
