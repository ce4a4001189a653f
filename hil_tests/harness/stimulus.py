"""Instruments driven by the test: the same JSON-lines commands on every bench.

    stim.load(1250)           a known load on the cell, in the scale's base unit
    stim.nozzle("up")         the nozzle switch
    stim.pulses(10000, 2000)  exactly N pulses at F Hz (the nozzle goes up first)
    stim.scan("]E0...")       one scanner line

On the unix DUT the commands go to the node's own console (its simulated instruments
obey them, firmware/metro/sim/driven.py); on a rig they go to the stimulus board's
serial port (hil_tests/stimulus/, a Pico that makes the pulses with PIO, answers the
HX711's clock, and replays scanner and indicator lines), which answers each command
with one line {"ok": ...} or {"error": ...}.

Invariant: a refused command is a test failure naming the command and the reason,
never a silent no-op.
"""

from __future__ import annotations

from .console import Console, ExpectTimeout


class StimulusRefused(AssertionError):
    pass


class ConsoleStimulus:
    """Commands to the node's console (unix DUT); refusals come back as {"error"}."""

    capabilities = frozenset({"load_cell", "pulse_input", "scanner"})

    def __init__(self, console: Console) -> None:
        self.console = console

    def command(self, cmd: dict) -> None:
        self.console.send(cmd)

    def load(self, value: int) -> None:
        self.command({"load": value})

    def nozzle(self, state: str) -> None:
        self.command({"nozzle": state})

    def pulses(self, n: int, hz: float) -> None:
        # The node queues the train; a later "nozzle" command waits for it to end.
        self.command({"pulses": n, "hz": hz})

    def scan(self, text: str) -> None:
        self.command({"scan": text})

    def check_no_error(self, within: float = 0.2) -> None:
        """Fail if the console refused a command in the last moments."""
        try:
            err = self.console.expect_json(key="error", timeout=within)
        except ExpectTimeout:
            return
        raise StimulusRefused(f"the node refused a command: {err['error']}")


class BoardStimulus(ConsoleStimulus):
    """Commands to a stimulus board on its own serial port; each one is answered."""

    def __init__(self, console: Console, capabilities: frozenset[str]) -> None:
        super().__init__(console)
        self.capabilities = capabilities

    def command(self, cmd: dict, timeout: float = 5.0) -> dict:
        self.console.send(cmd)
        reply = self.console.expect_json(lambda r: "ok" in r or "error" in r, timeout=timeout)
        if "error" in reply:
            raise StimulusRefused(f"stimulus board refused {cmd}: {reply['error']}")
        return reply

    def pulses(self, n: int, hz: float) -> None:
        # The board answers once the PIO has sent the last pulse.
        self.command({"pulses": n, "hz": hz}, timeout=5.0 + n / hz)

    def reset_dut(self, ms: int = 100) -> None:
        """Pull the DUT's reset line (EN / RUN) low for `ms`: a power cut."""
        self.command({"reset": ms})
