"""numba's cache directory follows the kernels' sources (server/jitcache.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from metrotrace.server import jitcache

SERVER = Path(jitcache.__file__).parent


def copy_sources(dst: Path) -> Path:
    for name in jitcache.PACKAGES:
        (dst / name).mkdir(parents=True)
        for path in (SERVER / name).glob("*.py"):
            shutil.copy(path, dst / name / path.name)
    return dst


def test_a_change_to_any_kernel_module_gives_another_directory(tmp_path):
    root = copy_sources(tmp_path)
    before = jitcache.sources_digest(root)
    assert before == jitcache.sources_digest(SERVER)  # content, not place or time
    fold = root / "metrology" / "fold.py"  # inlined into kernels it does not define
    fold.write_text(fold.read_text() + "\n# a change\n")
    assert jitcache.sources_digest(root) != before
    fold.unlink()
    (root / "trace" / "fold.py").write_text((SERVER / "metrology" / "fold.py").read_text())
    assert jitcache.sources_digest(root) != before  # same bytes, another module


def cache_dir_seen_by_numba(env: dict) -> str:
    code = ("import numba\nfrom metrotrace.server.metrology import kernels\n"
            "print(numba.config.CACHE_DIR)\nprint(kernels._scan._cache._cache_path)")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out[1].startswith(out[0])  # the kernels really cache there
    return out[0]


def test_numba_caches_under_the_digest_and_a_users_choice_wins(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["XDG_CACHE_HOME"] = str(tmp_path / "xdg")
    old = tmp_path / "xdg" / "metrotrace" / "numba" / "0123456789abcdef"
    recent = old.with_name("fedcba9876543210")
    for path in (old, recent):
        path.mkdir(parents=True)
    week_ago = time.time() - (jitcache.KEEP_DAYS + 1) * 86400
    os.utime(old, (week_ago, week_ago))
    chosen = cache_dir_seen_by_numba(env)
    assert chosen == str(old.with_name(jitcache.sources_digest(SERVER)))
    assert not old.exists() and recent.exists()  # unused for a week: removed
    env["NUMBA_CACHE_DIR"] = str(tmp_path / "mine")
    assert cache_dir_seen_by_numba(env) == str(tmp_path / "mine")
