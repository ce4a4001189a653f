"""`metrotrace demo` and `metrotrace wire decode`, run as a user would."""

import json
import os
import subprocess
import sys
from pathlib import Path

from metrotrace.tools import demo
from tests import micropython

BIN = Path(sys.executable).parent


def test_demo_stores_every_record_once_and_counts_each_attack():
    result = demo.run(count=400)
    assert result["interpreter"] == "MicroPython"
    assert result["accepted"] == 400 and result["final_ack"] == 400
    assert result["first_ack"] < 400  # the frame lost to line noise held the ack
    verdicts = result["verdicts"]
    assert verdicts["forgery"] == verdicts["bad_tag"] == verdicts["unknown_node"] == 1
    assert sum(result["frame_rejects"].values()) == 2


def test_demo_command_exits_zero_and_reports():
    done = subprocess.run([BIN / "metrotrace", "demo", "--records", "300"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "records stored: 300 of 300 - none lost, none duplicated" in done.stdout


def test_simulated_node_is_byte_identical_on_micropython_and_cpython():
    args = [str(demo.SIMNODE), demo.NODE.hex(), demo.KEY.hex(), "200", "1763884800000", "7"]
    mp = micropython.run(args)
    env = dict(os.environ, PYTHONPATH="")
    cp = subprocess.run([sys.executable, *args], capture_output=True, env=env, timeout=60)
    assert mp.returncode == 0 and cp.returncode == 0, mp.stderr + cp.stderr
    assert mp.stdout == cp.stdout and len(mp.stdout) > 10_000


def test_wire_decode_prints_records_and_counts_rejects(tmp_path):
    vectors = json.loads((micropython.FIRMWARE / "tests" / "vectors.json").read_text())
    stream = b"".join(bytes.fromhex(v["frame"]) for v in vectors["records"])
    capture = tmp_path / "uart.bin"
    capture.write_bytes(b"\x00junk" + stream)
    done = subprocess.run([BIN / "metrotrace", "wire", "decode", str(capture)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert lines[0] == {"reject": "cobs", "detail": lines[0]["detail"]}
    assert [line["seq"] for line in lines[1:]] == list(range(1001, 1008))
    assert json.loads(done.stderr) == {"rejects": {"cobs": 1}}
