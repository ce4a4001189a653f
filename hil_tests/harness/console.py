"""A line console with spec-like expects: a node's console, or the stimulus board's.

Bytes arrive from a source thread (a process's stdout, a serial port) through `feed`;
`expect(pattern)` waits for a regular expression in what has not been consumed yet and
consumes up to the end of the match, as pytest-embedded's `dut.expect` does. The
JSON-lines protocol of the node's console and of the stimulus board sits on top:
`send({...})` writes one line, `expect_json(where)` waits for a JSON line that matches.

Invariant: nothing is lost between expects: every byte ever fed stays in `log`, and a
failed expect raises ExpectTimeout quoting the unconsumed buffer and the log's tail.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable

import serial


class ExpectTimeout(AssertionError):
    """An expected line or record did not come in time; says what came instead."""


class Console:
    def __init__(self, name: str, write: Callable[[bytes], None] | None = None) -> None:
        self.name = name
        self._write = write
        self._buf = bytearray()
        self.log = bytearray()
        self._cond = threading.Condition()

    # --- the source side -------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        with self._cond:
            self._buf += data
            self.log += data
            self._cond.notify_all()

    def break_line(self) -> None:
        """A reset: the line the device was printing is cut, and what the next boot
        prints starts a line of its own (not glued to a REPL prompt or half a record)."""
        with self._cond:
            if self._buf and not self._buf.endswith(b"\n"):
                self._buf += b"\n"
                self.log += b"\n"

    def attach_writer(self, write: Callable[[bytes], None] | None) -> None:
        self._write = write

    # --- the test side ---------------------------------------------------------------
    def write(self, data: bytes) -> None:
        if self._write is None:
            raise ExpectTimeout(f"{self.name}: nothing to write to (is the device down?)")
        self._write(data)

    def send(self, command: dict) -> None:
        """One JSON-lines command."""
        self.write(json.dumps(command).encode() + b"\n")

    def expect(self, pattern: str | bytes, timeout: float = 10.0) -> re.Match:
        regex = re.compile(pattern.encode() if isinstance(pattern, str) else pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = regex.search(bytes(self._buf))  # a copy: the match outlives the cut
                if found:
                    del self._buf[: found.end()]
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ExpectTimeout(
                        f"{self.name}: no match for {regex.pattern!r} within {timeout} s;"
                        f" unconsumed: {bytes(self._buf[-600:])!r};"
                        f" log tail: {bytes(self.log[-1500:])!r}")
                self._cond.wait(min(left, 0.1))

    def expect_json(self, where: Callable[[dict], bool] | None = None, key: str | None = None,
                    timeout: float = 10.0) -> dict:
        """The next JSON-object line (having `key`, satisfying `where`); earlier lines
        that do not match are consumed."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                line = self.expect(rb"[^\r\n]*\r?\n", max(left, 0.0))
            except ExpectTimeout as exc:
                raise ExpectTimeout(f"{self.name}: no JSON line with {key or 'a match'}"
                                    f" within {timeout} s. {exc}") from None
            try:
                obj = json.loads(line.group(0))
            except ValueError:
                continue  # a plain text line (a banner, a log message)
            if not isinstance(obj, dict) or key is not None and key not in obj:
                continue
            if where is None or where(obj):
                return obj

    def lines(self) -> list[str]:
        return bytes(self.log).decode(errors="replace").splitlines()


class SerialReader:
    """Feeds a console from a pyserial port in a thread; the console writes to it."""

    def __init__(self, url: str, console: Console, baudrate: int = 115200) -> None:
        self.port = serial.serial_for_url(url, baudrate=baudrate, timeout=0.05)
        self.console = console
        console.attach_writer(self._write)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"console-{url}", daemon=True)
        self._thread.start()

    def _write(self, data: bytes) -> None:
        self.port.write(data)
        self.port.flush()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.port.read(4096)
            except (serial.SerialException, OSError):
                return  # the port went away (the board reset on USB); close() follows
            if data:
                self.console.feed(data)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.port.close()
