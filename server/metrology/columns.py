"""Input checks shared by the public wrappers: integer columns and CSR offsets.

Invariant: a column that passes is a contiguous one-dimensional int64 array of the stated
length; a column that fails raises InputError naming it (legal values and times are
integers, so a float column is refused rather than rounded).
"""

from __future__ import annotations

import numpy as np

from metrotrace.server.metrology.errors import InputError


def int_column(name: str, values, n: int | None) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise InputError(f"{name}: expected a one-dimensional column, got shape {arr.shape}")
    if arr.dtype.kind not in "iu" and not (arr.size == 0 and arr.dtype.kind == "f"):
        raise InputError(f"{name}: legal values and times are integers, got {arr.dtype}")
    if n is not None and arr.shape[0] != n:
        raise InputError(f"{name}: expected {n} rows, got {arr.shape[0]}")
    return np.ascontiguousarray(arr, dtype=np.int64)


def offsets(values, instruments: int, rows: int) -> np.ndarray:
    """CSR offsets: instrument i owns rows offsets[i]:offsets[i+1]."""
    arr = int_column("offsets", values, instruments + 1)
    if arr[0] != 0 or arr[-1] != rows or np.any(arr[1:] < arr[:-1]):
        raise InputError(f"offsets: must rise from 0 to the row count {rows}")
    return arr


def first_bad(name: str, mask: np.ndarray) -> None:
    if np.any(mask):
        raise InputError(f"{name}: out of range at row {int(np.argmax(mask))}")
