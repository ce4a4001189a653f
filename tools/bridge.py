"""Expose a host node's TCP link as a serial port: a pty path or a socket:// URL.

The firmware on the MicroPython unix port talks to its gateway over TCP where a board
would use a UART. A bridge accepts that connection and presents it the way a rig
presents a board's UART: as a pty (like a USB-serial adapter, /dev/pts/N, which the
real gateway opens with pyserial) or as a pyserial `socket://` URL (like a remote rig).
Everything that reads the link opens it with pyserial, so the same code runs against
the unix port and a real board.

Invariants: bytes pass through unchanged in both directions (the pty is raw, so the
line discipline never rewrites a 0x0d or swallows a 0x03); while the node is down (a
reset) bytes sent to it are dropped, as a UART drops them, and the node's next
connection is carried on the same port.
"""

from __future__ import annotations

import os
import select
import socket
import threading
import tty


def _listener() -> socket.socket:
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(0.1)
    return srv


class Bridge:
    """Accepts the node's TCP connection on `device_port`; serves it at `url`."""

    KINDS = ("pty", "socket")

    def __init__(self, kind: str = "pty") -> None:
        if kind not in self.KINDS:
            raise ValueError(f"kind: expected 'pty' or 'socket', got {kind!r}")
        self.kind = kind
        self._device_srv = _listener()
        self.device_port = self._device_srv.getsockname()[1]
        self._stop = threading.Event()
        self.connections = 0  # node connections carried so far (one per boot)
        self._client: socket.socket | None = None
        if kind == "pty":
            self._master, self._slave = os.openpty()
            tty.setraw(self._slave)
            self.url = os.ttyname(self._slave)
        else:
            self._client_srv = _listener()
            self.url = f"socket://127.0.0.1:{self._client_srv.getsockname()[1]}"
        self._thread = threading.Thread(target=self._run, name=f"bridge-{kind}", daemon=True)
        self._thread.start()

    # The serial side: the pty master, or the one client of the socket:// URL.
    def _side(self):
        if self.kind == "pty":
            return self._master
        while self._client is None and not self._stop.is_set():
            try:
                self._client, _ = self._client_srv.accept()
            except TimeoutError:
                continue
        return self._client

    def _side_read(self, side) -> bytes:
        return os.read(side, 65536) if self.kind == "pty" else side.recv(65536)

    def _side_write(self, side, data: bytes) -> None:
        if self.kind == "pty":
            view = memoryview(data)
            while view:
                view = view[os.write(side, view):]
        else:
            side.sendall(data)

    def _run(self) -> None:
        side = self._side()
        if side is None:
            return  # closed before anyone opened the socket:// URL
        while not self._stop.is_set():
            ready, _, _ = select.select([self._device_srv, side], [], [], 0.1)
            if side in ready and self._side_read(side) == b"" and self.kind == "socket":
                return  # the test side hung up: nothing more to carry
            if self._device_srv not in ready:
                continue  # no node connected: what the serial side sent is dropped
            try:
                device, _ = self._device_srv.accept()
            except TimeoutError:
                continue
            self.connections += 1
            with device:
                try:
                    if not self._pump(device, side):
                        return
                except OSError:
                    pass  # the node was killed mid-transfer; wait for it to reconnect

    def _pump(self, device: socket.socket, side) -> bool:
        """Copy until the node disconnects (True) or the test side hangs up (False)."""
        while not self._stop.is_set():
            ready, _, _ = select.select([device, side], [], [], 0.1)
            if device in ready:
                data = device.recv(65536)
                if not data:
                    return True
                self._side_write(side, data)
            if side in ready:
                data = self._side_read(side)
                if not data:
                    return False
                device.sendall(data)
        return False

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._device_srv.close()
        if self.kind == "pty":
            os.close(self._master)
            os.close(self._slave)
        else:
            if self._client is not None:
                self._client.close()
            self._client_srv.close()

    def __enter__(self) -> Bridge:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
