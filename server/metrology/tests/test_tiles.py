"""The lane loop of tiles.py really is vectorised: packed double-precision instructions in
its machine code (the speed of bench/drift.py depends on it, and an innocent edit, such as
a conditional load or a call in fold.charted, silently turns it back into scalar code).
Results of the lanes are checked elsewhere (test_kernels.py: naive twin, batch splits)."""

from __future__ import annotations

import re

import llvmlite.binding as llvm
import numpy as np
import pytest
from numba import njit

from metrotrace.server.metrology import kernels, tiles
from metrotrace.server.metrology import state as S


@pytest.mark.slow
@pytest.mark.skipif(not llvm.get_host_cpu_features().get("avx2", False),
                    reason="checks packed AVX2 / AVX-512 instructions; this CPU has no AVX2")
@pytest.mark.parametrize("variant", [tiles.lanes, tiles.lanes_plain])
def test_the_lane_loop_compiles_to_packed_instructions(variant):
    # A fresh, uncached compilation of the same function with the same options: numba
    # shows no machine code for a function loaded from its cache.
    lanes = njit(error_model="numpy")(variant.py_func)
    w = tiles.TILE
    z = np.zeros(w * tiles.CHUNK, np.int64)
    lanes(np.zeros(S.NCOL * w), np.ones(w), np.zeros(tiles.BAND_ROWS * w, np.int64), 1,
          z, z, z, z, kernels.Params().vector_tuple())
    asm = lanes.inspect_asm(lanes.signatures[0])
    packed = {op: len(re.findall(rf"\b{op}\s[^\n]*%[yz]mm", asm))
              for op in ("vmulpd", "vaddpd", "vdivpd", "vmaxpd")}
    # fold.charted per reading: ~15 multiplications, ~20 additions, one division (1 / MPE)
    assert packed["vmulpd"] >= 10 and packed["vaddpd"] >= 10 and packed["vdivpd"] >= 1, packed
