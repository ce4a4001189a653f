"""Expose a host node's TCP link as a serial port: a pty path or a socket:// URL.

The firmware on the MicroPython unix port talks to its gateway over TCP where a board
would use a UART. A bridge accepts that connection and presents it the way a rig
presents a board's UART: as a pty (like a USB-serial adapter, /dev/pts/N, which the
real gateway opens with pyserial) or as a pyserial `socket://` URL (like a remote rig
served by ser2net). Everything that reads the link opens it with pyserial, so the same
code runs against the unix port and a real board.

Invariants: bytes pass through unchanged in both directions (the pty is raw, so the
line discipline never rewrites a 0x0d or swallows a 0x03); while the node is down (a
reset) bytes sent to it are dropped, as a UART drops them, and the node's next
connection is carried on the same port. The socket:// side behaves like a serial port
that programs open and close in turn: one client at a time (a second one waits until
the first hangs up), and after a hang-up the next client gets the same link; while no
client is connected what the node sends is dropped, as a UART with nothing attached.
"""

from __future__ import annotations

import os
import select
import socket
import threading
import time
import tty


def _listener() -> socket.socket:
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.setblocking(False)
    return srv


class Bridge:
    """Accepts the node's TCP connection on `device_port`; serves it at `url`."""

    KINDS = ("pty", "socket")
    STALL_S = 1.0  # how long the node's bytes wait for a serial side that does not read

    def __init__(self, kind: str = "pty") -> None:
        if kind not in self.KINDS:
            raise ValueError(f"kind: expected 'pty' or 'socket', got {kind!r}")
        self.kind = kind
        self._device_srv = _listener()
        self.device_port = self._device_srv.getsockname()[1]
        self._stop = threading.Event()
        self.connections = 0  # node connections carried so far (one per boot)
        self.clients = 0  # socket:// clients served so far (one per open of the URL)
        self._device: socket.socket | None = None
        self._client: socket.socket | None = None
        if kind == "pty":
            self._master, self._slave = os.openpty()
            tty.setraw(self._slave)
            os.set_blocking(self._master, False)
            self.url = os.ttyname(self._slave)
        else:
            self._client_srv = _listener()
            self.url = f"socket://127.0.0.1:{self._client_srv.getsockname()[1]}"
        self._thread = threading.Thread(target=self._run, name=f"bridge-{kind}", daemon=True)
        self._thread.start()

    # --- the serial side: the pty master, or the socket:// client of the moment ---------
    def _side(self):
        return self._master if self.kind == "pty" else self._client

    def _side_read(self, side) -> bytes | None:
        """What the serial side sent; b"" when it hung up, None when nothing came."""
        try:
            return os.read(side, 65536) if self.kind == "pty" else side.recv(65536)
        except BlockingIOError:
            return None
        except OSError:
            return b""

    def _side_write(self, side, data: bytes) -> None:
        """Write all of it, waiting up to STALL_S for room; past that the rest is dropped,
        as a USB-serial adapter drops what nobody reads."""
        view = memoryview(data)
        deadline = time.monotonic() + self.STALL_S
        while view and not self._stop.is_set() and time.monotonic() < deadline:
            try:
                n = os.write(side, view) if self.kind == "pty" else side.send(view)
            except BlockingIOError:
                select.select([], [side], [], 0.05)
                continue
            view = view[n:]

    def _drop_client(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _drop_device(self) -> None:
        if self._device is not None:
            self._device.close()
            self._device = None

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._turn()
        finally:
            self._drop_device()
            self._drop_client()

    def _turn(self) -> None:
        side = self._side()
        watch = [self._device if self._device is not None else self._device_srv]
        if side is not None:
            watch.append(side)
        elif self.kind == "socket":
            watch.append(self._client_srv)  # a second client waits in the backlog
        ready, _, _ = select.select(watch, [], [], 0.1)
        if self._device_srv in ready:
            try:
                self._device, _ = self._device_srv.accept()
                self._device.setblocking(True)
                self.connections += 1
            except BlockingIOError:
                pass
        if self.kind == "socket" and self._client_srv in ready:
            try:
                self._client, _ = self._client_srv.accept()
                self._client.setblocking(False)
                self.clients += 1
            except BlockingIOError:
                pass
        if self._device is not None and self._device in ready:
            try:
                data = self._device.recv(65536)
            except OSError:  # the node was killed mid-transfer
                data = b""
            if not data:
                self._drop_device()  # the node reset: wait for its next connection
            elif side is not None:
                try:
                    self._side_write(side, data)
                except OSError:  # the client went away while we wrote
                    self._drop_client()
        if side is not None and side in ready:
            data = self._side_read(side)
            if data == b"" and self.kind == "socket":
                self._drop_client()  # hung up: the next client gets the link
            elif data and self._device is not None:
                try:
                    self._device.sendall(data)
                except OSError:
                    self._drop_device()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._device_srv.close()
        if self.kind == "pty":
            os.close(self._master)
            os.close(self._slave)
        else:
            self._client_srv.close()

    def __enter__(self) -> Bridge:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
