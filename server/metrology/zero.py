"""Zero drift: zero (no-load) readings through the same kernel, with their own state.

Invariant: a zero reading is a check of the load 0 (reference 0), so its error is the
zero offset, its legal flag is against the in-service MPE at load 0 (every small weighing
carries that offset), and its charts watch the offset's drift, from raw counts when the
node sends them (COUNTS mode of normalise.py: one load). Sustained one-sided zero
corrections are an early drift or fraud signal (research/metrology.md §4.3 point 6).
"""

from __future__ import annotations

import numpy as np

from metrotrace.server.metrology.kernels import Checks


def as_checks(offsets, t, indication, raw=None) -> Checks:
    """Zero readings (CSR by instrument) -> checks of the load 0 for kernels.scan."""
    indication = np.asarray(indication)
    return Checks(offsets, t, indication, np.zeros(indication.shape[0], dtype=np.int64), raw)
