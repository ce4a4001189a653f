"""Where numba caches the machine code of metrotrace's kernels: a directory named by the
sources it was compiled from.

Why: numba stamps a cached function with its own file's modification time only, so a
kernel whose inlined callees in another module changed loads its old machine code, and
nothing says so. A change to metrology/fold.py once ran the old lanes through the cache of
kernels.py, tests and benchmark included. Keyed on a hash of every module of the packages
that numba compiles (metrology and trace, which call `use` before defining a kernel),
any change compiles afresh. A NUMBA_CACHE_DIR set by the user wins. Directories of other
sources unused for KEEP_DAYS are removed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import time
from pathlib import Path

PACKAGES = ("metrology", "trace")
KEEP_DAYS = 7
_chosen: str | None = None


def sources_digest(root: Path) -> str:
    h = hashlib.sha256()
    for name in PACKAGES:
        for path in sorted((root / name).glob("*.py")):
            h.update(f"{name}/{path.name}\0".encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:16]


def use() -> None:
    """Point numba's cache at this version's directory; idempotent and cheap (a hash of
    about 60 small files, once per process)."""
    global _chosen
    if _chosen is not None:
        return
    user = os.environ.get("NUMBA_CACHE_DIR")
    if user:
        _chosen = user
        return
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    base = cache / "metrotrace" / "numba"
    here = base / sources_digest(Path(__file__).parent)
    try:
        here.mkdir(parents=True, exist_ok=True)
        os.utime(here)  # marks it used, for the pruning of other versions
        _prune(base, here)
    except OSError:
        return  # an unwritable home: numba's own default (beside the sources) stays
    _chosen = str(here)
    numba = sys.modules.get("numba")
    if numba is None:
        os.environ["NUMBA_CACHE_DIR"] = _chosen  # read when numba is first imported
    else:
        numba.config.CACHE_DIR = _chosen  # read when a cached function is defined


def _prune(base: Path, keep: Path) -> None:
    old = time.time() - KEEP_DAYS * 86400
    for path in base.iterdir():
        if path != keep and path.is_dir() and path.stat().st_mtime < old:
            shutil.rmtree(path, ignore_errors=True)
