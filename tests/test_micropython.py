"""The firmware's plain test functions, run under the real MicroPython interpreter."""

import pytest

from tests import micropython

pytestmark = pytest.mark.micropython


def test_wire_vectors_pass_under_micropython_with_64k_heap():
    done = micropython.run(
        ["firmware/tests/mprun.py", "test_wire"],
        path=[micropython.FIRMWARE, micropython.FIRMWARE / "tests"],
        cwd=micropython.REPO,
    )
    out = done.stdout.decode()
    assert done.returncode == 0, out + done.stderr.decode()
    assert " 0 failed" in out and "FAIL" not in out


def test_micropython_is_the_real_interpreter():
    done = micropython.run(["-c", "import sys; print(sys.implementation.name)"])
    assert done.stdout.decode().strip() == "micropython"
