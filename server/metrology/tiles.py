"""SIMD across instruments: TILE instruments advanced together on time-major tiles.

Invariant: every lane runs exactly fold.charted, inlined, on its own state column, so a tile
gives bit-identical states to one instrument at a time (the naive-twin and batch-split
property tests hold whichever path an instrument takes). What makes LLVM's loop vectoriser
turn the lane loop into packed instructions (ymm on AVX2 / AVX-512 machines), found by
reading `lanes.inspect_asm()`:
  * the lane loop is innermost and its body has no calls (fold.charted and everything it
    calls are numba inline="always"), no loops (the MPE band search is unrolled below) and
    no conditional loads (every load is made, then selected);
  * the state of a tile is one flat array, row c of lane ln at c * TILE + ln: constant row
    offsets TILE apart, so LLVM can prove that no two rows overlap within a vector (separate
    arrays per row would need too many runtime alias checks; a 2-D array has runtime strides);
  * TILE (32) is large enough that the lane loop is vectorised rather than fully unrolled;
  * the readings of a tile are copied time-major into small scratch tiles (reading k of
    every lane contiguous): LLVM does not vectorise the gather t[row[ln] + k] itself. The
    copy is part of the timed work (bench/drift.py).
The lanes run `together` = the fewest charted readings left in any lane of the tile (so
kernels.py fills tiles with instruments of similar reading counts); the rest of each
instrument, a tile with an instrument still in its baseline or with more than MAXB MPE
bands, and the instruments after the last full tile go one at a time (fold.prefix /
fold.rest).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from metrotrace.server.metrology import fold, normalise
from metrotrace.server.metrology import state as S
from metrotrace.server.metrology.mpe import INT64_MAX, UNCOVERED

TILE = 32  # instruments per tile (lanes); 16, 32 and 64 measured alike, 128 slower
CHUNK = 16  # readings per lane copied at a time (32: slower): the scratch stays in L1
MAXB = 8  # MPE bands per profile on the vector path (built-in tables have at most 7)
# bands[] rows: upper (MAXB), fixed (MAXB), coef (MAXB), at (MAXB), emin (1); lane ln of
# row r at r * TILE + ln
FIXED, COEF, AT, EMIN = MAXB, 2 * MAXB, 3 * MAXB, 4 * MAXB
BAND_ROWS = 4 * MAXB + 1


@njit(cache=True, inline="always")
def load_lane(st, ln):
    return (st[ln], st[ln + 1 * TILE], st[ln + 2 * TILE], st[ln + 3 * TILE],
            st[ln + 4 * TILE], st[ln + 5 * TILE], st[ln + 6 * TILE], st[ln + 7 * TILE],
            st[ln + 8 * TILE], st[ln + 9 * TILE], st[ln + 10 * TILE], st[ln + 11 * TILE],
            st[ln + 12 * TILE], st[ln + 13 * TILE], st[ln + 14 * TILE], st[ln + 15 * TILE],
            st[ln + 16 * TILE], st[ln + 17 * TILE], st[ln + 18 * TILE], st[ln + 19 * TILE],
            st[ln + 20 * TILE], st[ln + 21 * TILE], st[ln + 22 * TILE], st[ln + 23 * TILE],
            st[ln + 24 * TILE], st[ln + 25 * TILE], st[ln + 26 * TILE], st[ln + 27 * TILE],
            st[ln + 28 * TILE], st[ln + 29 * TILE], st[ln + 30 * TILE], st[ln + 31 * TILE],
            st[ln + 32 * TILE])


@njit(cache=True, inline="always")
def store_lane(st, ln, s):
    st[ln] = s[0]
    st[ln + 1 * TILE] = s[1]
    st[ln + 2 * TILE] = s[2]
    st[ln + 3 * TILE] = s[3]
    st[ln + 4 * TILE] = s[4]
    st[ln + 5 * TILE] = s[5]
    st[ln + 6 * TILE] = s[6]
    st[ln + 7 * TILE] = s[7]
    st[ln + 8 * TILE] = s[8]
    st[ln + 9 * TILE] = s[9]
    st[ln + 10 * TILE] = s[10]
    st[ln + 11 * TILE] = s[11]
    st[ln + 12 * TILE] = s[12]
    st[ln + 13 * TILE] = s[13]
    st[ln + 14 * TILE] = s[14]
    st[ln + 15 * TILE] = s[15]
    st[ln + 16 * TILE] = s[16]
    st[ln + 17 * TILE] = s[17]
    st[ln + 18 * TILE] = s[18]
    st[ln + 19 * TILE] = s[19]
    st[ln + 20 * TILE] = s[20]
    st[ln + 21 * TILE] = s[21]
    st[ln + 22 * TILE] = s[22]
    st[ln + 23 * TILE] = s[23]
    st[ln + 24 * TILE] = s[24]
    st[ln + 25 * TILE] = s[25]
    st[ln + 26 * TILE] = s[26]
    st[ln + 27 * TILE] = s[27]
    st[ln + 28 * TILE] = s[28]
    st[ln + 29 * TILE] = s[29]
    st[ln + 30 * TILE] = s[30]
    st[ln + 31 * TILE] = s[31]
    st[ln + 32 * TILE] = s[32]


@njit(cache=True, inline="always")
def _band(bands, ln, a, u, fixed, coef, at):
    """Band u + 1 when the load is above band u's bound (bounds rise, so the last band
    taken is the one mpe.mpe_q counts its way to). Loads first, then selects."""
    up = a > bands[ln + u * TILE]
    nf = bands[ln + (FIXED + u + 1) * TILE]
    nc = bands[ln + (COEF + u + 1) * TILE]
    na = bands[ln + (AT + u + 1) * TILE]
    return (nf if up else fixed, nc if up else coef, na if up else at)


@njit(cache=True, inline="always")
def mpe_lane(bands, ln, load):
    """mpe.mpe_q for lane ln of a tile: the same integer, without a loop."""
    a = abs(load)
    fixed, coef, at = bands[ln + FIXED * TILE], bands[ln + COEF * TILE], bands[ln + AT * TILE]
    fixed, coef, at = _band(bands, ln, a, 0, fixed, coef, at)
    fixed, coef, at = _band(bands, ln, a, 1, fixed, coef, at)
    fixed, coef, at = _band(bands, ln, a, 2, fixed, coef, at)
    fixed, coef, at = _band(bands, ln, a, 3, fixed, coef, at)
    fixed, coef, at = _band(bands, ln, a, 4, fixed, coef, at)
    fixed, coef, at = _band(bands, ln, a, 5, fixed, coef, at)
    fixed, coef, at = _band(bands, ln, a, 6, fixed, coef, at)  # MAXB - 1 steps
    q = max(bands[ln + EMIN * TILE], fixed + max(coef * a, at))
    return UNCOVERED if fixed == UNCOVERED else q


@njit(cache=True, error_model="numpy")
def lanes(st, inv_sigma, bands, steps, k0, tt, ii, rr, ww, par, back):
    """`steps` readings of every lane from the scratch tiles (reading k of lane ln at
    k * TILE + ln); back[ln]: first step (k0 + k) whose time goes backwards, or -1."""
    for k in range(steps):
        for ln in range(TILE):
            j = k * TILE + ln
            s = load_lane(st, ln)
            tj = tt[j]
            back[ln] = k0 + k if back[ln] < 0 and tj < s[S.LAST_T] else back[ln]
            store_lane(st, ln, fold.charted(s, tj, ii[j], rr[j], ww[j], mpe_lane(bands, ln, rr[j]),
                                           inv_sigma[ln], par))


@njit(cache=True, error_model="numpy")
def tile(order, i0, offsets, t, indication, reference, raw, has_raw, since, quantum, prof, pa,
         par, values, base, bad):
    """Instruments order[i0 .. i0 + TILE - 1]: prefix one by one, then the lanes together,
    then each instrument's rest -> readings folded on the vector path."""
    start, upper, fixed_q, coef, at_q, emin_q = pa
    st = np.empty(S.NCOL * TILE)
    inv = np.empty(TILE)
    bands = np.empty(BAND_ROWS * TILE, np.int64)
    row = np.empty(TILE, np.int64)
    back = np.full(TILE, -1, np.int64)
    together = INT64_MAX
    for ln in range(TILE):
        i = order[i0 + ln]
        s, j, b = fold.prefix(fold.load(values[i]), offsets[i], offsets[i + 1], t, indication,
                              reference, raw, has_raw, since[i], prof[i], pa, par, base[i],
                              quantum[i])
        p = prof[i]
        nb = start[p + 1] - start[p]
        charted = offsets[i + 1] - j if b < 0 and not np.isnan(s[S.SIGMA]) else 0
        together = min(together, charted if nb <= MAXB else 0)
        back[ln] = -1 if b < 0 else b - j  # a row before `row` went back: nothing charted
        row[ln] = j
        for c in range(S.NCOL):
            st[ln + c * TILE] = s[c]
        inv[ln] = 1.0 / s[S.SIGMA]
        for u in range(MAXB):  # padding bands: bound INT64_MAX, never reached
            src = start[p] + min(u, nb - 1)
            bands[ln + u * TILE] = upper[src] if u < nb else INT64_MAX
            bands[ln + (FIXED + u) * TILE] = fixed_q[src]
            bands[ln + (COEF + u) * TILE] = coef[src]
            bands[ln + (AT + u) * TILE] = at_q[src]
        bands[ln + EMIN * TILE] = emin_q[p]
    tt = np.empty(CHUNK * TILE, np.int64)
    ii = np.empty(CHUNK * TILE, np.int64)
    rr = np.empty(CHUNK * TILE, np.int64)
    ww = np.full(CHUNK * TILE, normalise.RAW_NONE, np.int64)
    for k0 in range(0, together, CHUNK):
        steps = min(CHUNK, together - k0)
        for ln in range(TILE):  # time-major copy: contiguous reads per lane
            j = row[ln] + k0
            for k in range(steps):
                tt[k * TILE + ln] = t[j + k]
                ii[k * TILE + ln] = indication[j + k]
                rr[k * TILE + ln] = reference[j + k]
            if has_raw:
                for k in range(steps):
                    ww[k * TILE + ln] = raw[j + k]
        lanes(st, inv, bands, steps, k0, tt, ii, rr, ww, par, back)
    for ln in range(TILE):
        i = order[i0 + ln]
        b = -1 if back[ln] < 0 else row[ln] + back[ln]
        s, bad[i] = fold.rest(load_lane(st, ln), row[ln] + together, offsets[i + 1], b, t,
                              indication, reference, raw, has_raw, prof[i], pa, par)
        fold.store(values[i], s)
    return together * TILE
