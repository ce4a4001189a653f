"""Readers for the drift engine's column contract (CSV or Parquet; docs/metrology.md).

Invariant: what leaves this module is columnar — numpy int64 arrays grouped by
instrument in CSR form, in time order — plus the registry as a list of Instrument; a row
that breaks the contract raises InputError naming the column (and the row where it helps).

Registry columns: instrument, table, class, unit, e, [mmq], [line], [verified_ms], [due_ms],
                  [sigma] (known check-process standard deviation, base units)
Reading columns:  instrument, t, kind (check | zero | dispense), [indication], [reference],
                  [raw], [volume], [pulses], [kfactor]; a kind's columns (KIND_COLUMNS) are
                  needed only when a row of that kind is present, and then in every such row
storeio.py reads the same columns from the store (server/store).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from metrotrace.server.metrology.errors import InputError
from metrotrace.server.metrology.mpe import Instrument

REGISTRY_COLUMNS = ("instrument", "table", "class", "unit", "e")
READING_COLUMNS = ("instrument", "t", "kind")
KIND_COLUMNS = {"check": ("indication", "reference"), "zero": ("indication",),
                "dispense": ("volume", "pulses", "kfactor")}


def read_table(path: Path | str):
    """A CSV or Parquet file -> pyarrow Table (by suffix: .parquet / .pq, else CSV)."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.exists():
        raise InputError(f"path: no such file {path}")
    if path.suffix in (".parquet", ".pq"):
        return pq.read_table(path)
    strings = {"instrument": "string", "table": "string", "class": "string", "kind": "string",
               "unit": "string", "line": "string"}
    import pyarrow as pa

    opts = pacsv.ConvertOptions(column_types={k: pa.string() for k in strings})
    return pacsv.read_csv(path, convert_options=opts)


def _need(table, names, what: str) -> None:
    for name in names:
        if name not in table.column_names:
            raise InputError(f"{name}: missing column in the {what} file")


def _column(table, name: str) -> tuple[np.ndarray, np.ndarray] | None:
    """An integer column -> (int64 values, True where the row has a value), exactly (no
    detour through float64); None when the file has no such column."""
    if name not in table.column_names:
        return None
    import pyarrow as pa
    import pyarrow.types as pat

    col = table.column(name)
    if not (pat.is_integer(col.type) or pat.is_null(col.type)):
        raise InputError(f"{name}: expected integers, got {col.type}")
    try:
        values = col.cast(pa.int64()).fill_null(0).to_numpy()
    except pa.ArrowInvalid as exc:
        raise InputError(f"{name}: {exc}") from exc
    return np.asarray(values, dtype=np.int64), col.is_valid().to_numpy(zero_copy_only=False)


def _ints(table, name: str, default=None) -> np.ndarray:
    """A column every row needs (default None) or may leave empty (default fills in)."""
    got = _column(table, name)
    if got is None:
        if default is None:
            raise InputError(f"{name}: missing column")
        return np.full(table.num_rows, default, np.int64)
    values, present = got
    if default is None and not present.all():
        raise InputError(f"{name}: empty value at row {int(np.argmin(present))}")
    return np.where(present, values, default) if default is not None else values


def _kind_ints(table, name: str, kind: str, rows: np.ndarray) -> np.ndarray:
    """Column `name` at `rows` (the rows of `kind`): the column may be absent, or empty,
    when the file has no row of that kind (a scales-only fleet has no volume column)."""
    if rows.size == 0:
        return np.empty(0, np.int64)
    got = _column(table, name)
    if got is None:
        raise InputError(f"{name}: missing column in the readings file ({kind} rows need it, "
                         f"first at row {int(rows[0])})")
    values, present = got
    if not present[rows].all():
        row = int(rows[np.argmin(present[rows])])
        raise InputError(f"{name}: empty value at row {row} (a {kind} row needs one)")
    return values[rows]


def registry(path: Path | str) -> tuple[list[Instrument], np.ndarray, np.ndarray, np.ndarray]:
    """Registry file -> (instruments, verified_ms, due_ms, sigma); NaN: none."""
    t = read_table(path)
    _need(t, REGISTRY_COLUMNS, "registry")
    cols = {name: t.column(name).to_pylist() for name in t.column_names}
    e = _ints(t, "e")
    mmq = _ints(t, "mmq", default=0)
    lines = cols.get("line") or ["A"] * t.num_rows
    instruments = [Instrument(str(cols["instrument"][i]), str(cols["table"][i]),
                              str(cols["class"][i]), str(cols["unit"][i]), int(e[i]),
                              int(mmq[i]) or None, str(lines[i] or "A"))
                   for i in range(t.num_rows)]
    if len({inst.id for inst in instruments}) != len(instruments):
        raise InputError("instrument: duplicate id in the registry")
    verified = _ints(t, "verified_ms", default=0)
    due = np.asarray(t.column("due_ms").to_numpy(zero_copy_only=False), dtype=np.float64) \
        if "due_ms" in t.column_names else np.full(t.num_rows, np.nan)
    sigma = np.asarray(t.column("sigma").to_numpy(zero_copy_only=False), dtype=np.float64) \
        if "sigma" in t.column_names else np.full(t.num_rows, np.nan)
    if np.any(sigma <= 0):
        raise InputError(f"sigma: must be positive (row {int(np.argmax(sigma <= 0))})")
    return instruments, verified, due, sigma


@dataclass(frozen=True)
class Grouped:
    """Readings of one kind grouped by registry index: offsets (CSR) and int64 columns."""

    offsets: np.ndarray
    columns: dict[str, np.ndarray]


def readings(path: Path | str, ids: list[str]) -> dict[str, Grouped]:
    """Readings file -> {kind: Grouped}, rows sorted by (instrument, t)."""
    t = read_table(path)
    _need(t, READING_COLUMNS, "readings")
    index = {ident: i for i, ident in enumerate(ids)}
    names = np.asarray(t.column("instrument").to_pylist(), dtype=object)
    inst = np.fromiter((index.get(x, -1) for x in names), dtype=np.int64, count=len(names))
    if np.any(inst < 0):
        row = int(np.argmax(inst < 0))
        raise InputError(f"instrument: {names[row]!r} is not in the registry (row {row})")
    kinds = np.asarray(t.column("kind").to_pylist(), dtype=object)
    unknown = ~np.isin(kinds, list(KIND_COLUMNS))
    if np.any(unknown):
        row = int(np.argmax(unknown))
        raise InputError(f"kind: {kinds[row]!r} is not check, zero or dispense (row {row})")
    times = _ints(t, "t")
    out = {}
    raw = _ints(t, "raw", default=np.iinfo(np.int64).min)  # optional even where present
    for kind, needed in KIND_COLUMNS.items():
        rows = np.flatnonzero(kinds == kind)
        cols = {name: _kind_ints(t, name, kind, rows) for name in needed}
        if kind != "dispense":
            cols["raw"] = raw[rows]
        out[kind] = group(inst[rows], times[rows], cols, len(ids))
    return out


def group(inst: np.ndarray, times: np.ndarray, cols: dict[str, np.ndarray],
          instruments: int) -> Grouped:
    """Rows of one kind (registry index, time, int64 columns) -> Grouped, sorted by
    (instrument, t)."""
    order = np.lexsort((times, inst))
    cols = {name: np.asarray(col, dtype=np.int64)[order] for name, col in cols.items()}
    cols["t"] = np.asarray(times, dtype=np.int64)[order]
    counts = np.bincount(inst, minlength=instruments)
    return Grouped(np.concatenate([[0], np.cumsum(counts)]).astype(np.int64), cols)
