"""SIMD across instruments: TILE instruments advanced together on time-major tiles.

Invariant: every lane runs fold.charted, inlined, on its own state column, so a tile gives
bit-identical states to one instrument at a time (the naive-twin and batch-split property
tests hold whichever path an instrument takes). The lanes run it with lanes=True, which
leaves out what is settled once per tile instead of once per reading: first times are
running minima (+inf for never, start_lane / end_lane), T0 is found before and N_SCORED
counted after, the rows fixed by the baseline are not stored, and times going backwards
are counted by the copy (the row is searched for only where there is one). What makes
LLVM's loop vectoriser turn the lane loop into packed instructions (ymm on AVX2 / AVX-512
machines), found by reading `lanes.inspect_asm()`:
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
Around the lanes, what runs once per instrument avoids calls to njit functions that take
arrays (fold.prefix, fold.rest and fold.load / store cost more than 100 ns each): the usual
instrument, baseline known and nothing skipped or left over, takes inlined paths.
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
CHUNK = 64  # readings per lane copied at a time
MAXB = 8  # MPE bands per profile on the vector path (built-in tables have at most 7)
# bands[] rows: upper (MAXB), fixed (MAXB), coef (MAXB), at (MAXB), emin (1); lane ln of
# row r at r * TILE + ln
FIXED, COEF, AT, EMIN = MAXB, 2 * MAXB, 3 * MAXB, 4 * MAXB
BAND_ROWS = 4 * MAXB + 1
FIRSTS = (S.FIRST_OUT_T, S.FIRST_WARN_T, S.FIRST_CUSUM_T, S.FIRST_EWMA_T, S.FIRST_CONFIRMED_T)


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
def load_row(values, i):
    """fold.load(values[i]) without the row view: a view per instrument (even inlined) made
    the kernel slower, most on 2 threads (0.067 s against 0.042 s for 10^7 readings)."""
    return (values[i, 0], values[i, 1], values[i, 2], values[i, 3], values[i, 4], values[i, 5],
            values[i, 6], values[i, 7], values[i, 8], values[i, 9], values[i, 10], values[i, 11],
            values[i, 12], values[i, 13], values[i, 14], values[i, 15], values[i, 16],
            values[i, 17], values[i, 18], values[i, 19], values[i, 20], values[i, 21],
            values[i, 22], values[i, 23], values[i, 24], values[i, 25], values[i, 26],
            values[i, 27], values[i, 28], values[i, 29], values[i, 30], values[i, 31],
            values[i, 32])


@njit(cache=True, inline="always")
def store_lane(st, ln, s):
    """The rows a lane changes: not MU0 .. RAW_INV_B (fixed by the baseline), nor T0 and
    N_SCORED (settled once per tile, `settle`)."""
    st[ln] = s[0]
    st[ln + 1 * TILE] = s[1]
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
    st[ln + 22 * TILE] = s[22]
    st[ln + 23 * TILE] = s[23]
    st[ln + 24 * TILE] = s[24]
    st[ln + 25 * TILE] = s[25]
    st[ln + 26 * TILE] = s[26]
    st[ln + 27 * TILE] = s[27]
    st[ln + 28 * TILE] = s[28]
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


@njit(cache=True, inline="always")
def run_lanes(st, inv_sigma, bands, steps, tt, ii, rr, ww, par, plain):
    """`steps` readings of every lane from the scratch tiles (reading k of lane ln at
    k * TILE + ln). `plain` (a constant): every lane charts its errors (normalise mode
    INDICATION), so no lane needs the tests of raw counts."""
    for k in range(steps):
        for ln in range(TILE):
            j = k * TILE + ln
            s = load_lane(st, ln)
            mode = normalise.INDICATION if plain else np.int64(s[S.RAW_MODE])
            store_lane(st, ln, fold.charted(s, tt[j], ii[j], rr[j], ww[j], mode,
                                            mpe_lane(bands, ln, rr[j]), inv_sigma[ln], par,
                                            True))


@njit(cache=True, error_model="numpy")
def lanes(st, inv_sigma, bands, steps, tt, ii, rr, ww, par):
    run_lanes(st, inv_sigma, bands, steps, tt, ii, rr, ww, par, False)


@njit(cache=True, error_model="numpy")
def lanes_plain(st, inv_sigma, bands, steps, tt, ii, rr, ww, par):
    """lanes compiled for tiles whose every lane is in INDICATION mode: 7 % faster."""
    run_lanes(st, inv_sigma, bands, steps, tt, ii, rr, ww, par, True)


@njit(cache=True, inline="always")
def start_lane(st, ln, j0, steps, t, reference, bands):
    """Lane ln's state made ready for the lanes: first times to +inf where never (the lanes
    keep running minima), and T0 where no reading has been scored yet: the time of the
    first covered one of the lane's `steps` readings from row j0 (the lanes take T0 as
    given; fold.charted sets it at the first scored reading)."""
    for c in FIRSTS:
        st[ln + c * TILE] = np.inf if np.isnan(st[ln + c * TILE]) else st[ln + c * TILE]
    if st[ln + S.N_SCORED * TILE] == 0.0:
        for j in range(j0, j0 + steps):
            if mpe_lane(bands, ln, reference[j]) > 0:
                st[ln + S.T0 * TILE] = t[j]
                break


@njit(cache=True, inline="always")
def end_lane(st, ln, unc0, steps):
    """Lane ln's state out of the tile: N_SCORED grows by the covered readings, first times
    back to NaN where never."""
    st[ln + S.N_SCORED * TILE] += steps - (st[ln + S.N_UNCOVERED * TILE] - unc0)
    for c in FIRSTS:
        st[ln + c * TILE] = np.nan if np.isinf(st[ln + c * TILE]) else st[ln + c * TILE]
    return load_lane(st, ln)


@njit(cache=True, inline="always")
def first_back(t, j0, steps, last):
    """The first of rows j0 .. j0 + steps - 1 whose time is before the one before it (or
    before `last` for j0), or -1."""
    for j in range(j0, j0 + steps):
        if t[j] < last:
            return j
        last = t[j]
    return np.int64(-1)


@njit(cache=True, inline="always")
def copy_chunk(t, indication, reference, tt, ii, rr, row, k0, steps, last0, backs):
    """Reading k0 + k of lane ln to tt, ii, rr[k * TILE + ln]: the three columns in one
    loop (one per column is slower). backs[ln] counts the times before the one before them
    (the reading before a lane's first: last0[ln]). Unsigned indices: numba adds no
    negative-index wraparound, which made this copy two times slower."""
    for ln in range(TILE):
        j = np.uint64(row[ln] + k0)
        if steps > 0:
            backs[ln] += t[j] < (last0[ln] if k0 == 0 else t[j - np.uint64(1)])
        n = 0
        for k in range(np.uint64(steps)):
            d = k * np.uint64(TILE) + np.uint64(ln)
            tt[d] = t[j + k]
            ii[d] = indication[j + k]
            rr[d] = reference[j + k]
            n += k > 0 and t[j + k] < t[j + k - np.uint64(1)]
        backs[ln] += n


@njit(cache=True, inline="always")
def copy_raw(raw, ww, row, k0, steps):
    """As copy_chunk, for raw counts."""
    for ln in range(TILE):
        j = np.uint64(row[ln] + k0)
        for k in range(np.uint64(steps)):
            ww[k * np.uint64(TILE) + np.uint64(ln)] = raw[j + k]


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
    early = np.empty(TILE, np.int64)  # the first row going back in time, or -1
    unc0 = np.empty(TILE)
    backs = np.zeros(TILE, np.int64)  # times going back among the lanes' readings
    last0 = np.empty(TILE)
    together = INT64_MAX
    plain = True  # every lane in INDICATION mode (lanes_plain)
    for ln in range(TILE):
        i = order[i0 + ln]
        s = load_row(values, i)
        j = offsets[i]
        if j < offsets[i + 1] and t[j] >= since[i] and t[j] >= s[S.LAST_T] and \
                not np.isnan(s[S.SIGMA]):
            b = np.int64(-1)  # the usual case, without a call: nothing to skip, no baseline
        else:
            s, j, b = fold.prefix(s, j, offsets[i + 1], t, indication, reference, raw, has_raw,
                                  since[i], prof[i], pa, par, base[i], quantum[i])
        p = prof[i]
        nb = start[p + 1] - start[p]
        charted = offsets[i + 1] - j if b < 0 and not np.isnan(s[S.SIGMA]) else 0
        together = min(together, charted if nb <= MAXB else 0)
        plain = plain and s[S.RAW_MODE] == normalise.INDICATION
        early[ln] = b
        row[ln] = j
        unc0[ln] = s[S.N_UNCOVERED]
        last0[ln] = s[S.LAST_T]
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
    for ln in range(TILE):
        start_lane(st, ln, row[ln], together, t, reference, bands)
    size = CHUNK * TILE
    tt, ii, rr = np.empty(size, np.int64), np.empty(size, np.int64), np.empty(size, np.int64)
    ww = np.empty(size, np.int64)  # raw counts: read by `lanes` only
    if not (plain or has_raw):
        ww[:] = normalise.RAW_NONE
    for k0 in range(0, together, CHUNK):
        steps = min(CHUNK, together - k0)
        copy_chunk(t, indication, reference, tt, ii, rr, row, k0, steps, last0, backs)
        if plain:
            lanes_plain(st, inv, bands, steps, tt, ii, rr, ww, par)
        else:
            if has_raw:
                copy_raw(raw, ww, row, k0, steps)
            lanes(st, inv, bands, steps, tt, ii, rr, ww, par)
    for ln in range(TILE):
        i = order[i0 + ln]
        s = end_lane(st, ln, unc0[ln], together)
        b = early[ln] if early[ln] >= 0 or backs[ln] == 0 else first_back(t, row[ln], together,
                                                                            last0[ln])
        if b < 0 and row[ln] + together == offsets[i + 1]:  # the usual case: nothing left
            for c in range(S.NCOL):
                values[i, c] = s[c]
        else:
            s, bad[i] = fold.rest(s, row[ln] + together, offsets[i + 1], b, t, indication,
                                  reference, raw, has_raw, prof[i], pa, par)
            fold.store(values[i], s)
    return together * TILE
