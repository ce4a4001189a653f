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


# Node logic and drivers (firmware/tests). Each module runs in its own interpreter:
# the modules are compiled from source at import, which needs heap of its own;
# test_node imports the whole node and gets 128k for that (tests/test_firmware_resets.py
# measures the deployed, precompiled node). mp_flash (MicroPython only: littlefs on a
# RAM block device as the data dir) fills the flash for real: flash_full, then recovery;
# mp_wear measures flash wear per record on littlefs with 4 KiB blocks; mp_tasks (real
# asyncio) runs the instrument and status loops on fakes. test_boards imports
# boards/main.py against fake Pico and ESP32 `machine` modules. The larger heaps hold
# test_node or main.py's imports, compiled from source, and mp_wear's 96 KiB of flash.
FIRMWARE_MODULES = (("test_outbox", "64k"), ("test_metrology", "64k"),
                    ("test_drivers", "64k"), ("test_config", "64k"), ("test_net", "64k"),
                    ("test_node", "128k"), ("test_boards", "128k"), ("mp_flash", "160k"),
                    ("mp_tasks", "160k"), ("mp_wear", "192k"))


@pytest.mark.parametrize(("module", "heap"), FIRMWARE_MODULES)
def test_firmware_logic_passes_under_micropython(module, heap):
    done = micropython.run(
        ["firmware/tests/mprun.py", module], heap=heap,
        path=[micropython.FIRMWARE, micropython.FIRMWARE / "tests"],
        cwd=micropython.REPO,
    )
    out = done.stdout.decode()
    assert done.returncode == 0, out + done.stderr.decode()
    assert " 0 failed" in out and "FAIL" not in out


def test_micropython_is_the_real_interpreter():
    done = micropython.run(["-c", "import sys; print(sys.implementation.name)"])
    assert done.stdout.decode().strip() == "micropython"
