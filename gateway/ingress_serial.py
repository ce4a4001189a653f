"""Boards on serial ports: bytes in, records stored, acknowledgement frames out.

One thread per port. Bytes go to a fresh decoder (fastwire.FastDecoder, the firmware's
frame.Decoder in effect, at C speed), its chunk of record columns to Intake (verify,
store, commit), and the acknowledgement frames go back on the same port only after
the commit. Whatever the port delivered at once is one chunk and one commit, so a
gateway that falls behind commits larger groups instead of more often.

A port that vanishes (USB unplugged, board reset, pty closed) is closed and reopened
with back-off until it returns; the half frame it was in is dropped by the decoder's
leading-delimiter rule and the node resends whatever was not acknowledged.

Invariant: an acknowledgement is written only for records whose commit has returned.
"""

from __future__ import annotations

import threading

import serial

from metrotrace.firmware.metro.wire import frame as wire_frame

from .counters import Counters, log_event
from .fastwire import FastDecoder
from .intake import Intake
from .window import Backoff


class SerialIngress:
    def __init__(self, port: str, baud: int, intake: Intake, counters: Counters) -> None:
        self.port = port
        self.baud = baud
        self.intake = intake
        self.counters = counters
        self.opened = threading.Event()  # set while the port is open (tests wait on it)

    def _serve(self, ser: serial.Serial, stop: threading.Event) -> None:
        decoder = FastDecoder()
        while not stop.is_set():
            data = ser.read(1)
            if not data:
                continue
            waiting = ser.in_waiting
            if waiting:
                data += ser.read(waiting)
            acks = self.intake.receive(decoder.feed_chunk(data))
            out = []
            for a in acks:
                if a.time is not None:  # set the node's clock before it stamps more records
                    out.append(wire_frame.time_frame(a.node, a.time, a.key))
                out.append(wire_frame.ack_frame(a.node, a.seq, a.key))
            if out:
                ser.write(b"".join(out))

    def run(self, stop: threading.Event) -> None:
        backoff = Backoff(0.1, 5.0)
        while not stop.is_set():
            try:
                # A device path, or a pyserial URL (socket://, rfc2217://) for remote rigs.
                ser = serial.serial_for_url(self.port, baudrate=self.baud, timeout=0.05,
                                            write_timeout=5)
            except (serial.SerialException, OSError) as e:
                log_event("serial_open_failed", port=self.port, error=str(e))
                stop.wait(backoff.delay())
                continue
            backoff.reset()
            log_event("serial_open", port=self.port)
            self.opened.set()
            try:
                self._serve(ser, stop)
            except (serial.SerialException, OSError) as e:
                self.counters.add("port_lost")
                log_event("serial_lost", port=self.port, error=str(e))
            finally:
                self.opened.clear()
                ser.close()
