"""MPE tables as data: parse and check the TOML files under tables/ (or a regulator's folder).

Invariant: every number in a parsed table is an exact `Fraction` read from a decimal
string (never a float), every key is known (an unknown key is a TableError naming the file
and the key), and bands are in increasing order of their upper bound. Adding a table is
adding a file; no code changes. The format is described in docs/metrology.md.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from metrotrace.server.metrology.errors import TableError

BUILTIN_DIR = Path(__file__).resolve().parent / "tables"

KINDS = {"weighing": ("e",), "volume": ("L", "mmq")}
TABLE_KEYS = {"id", "title", "kind", "load_unit", "mpe_unit", "in_service", "classes",
              "bands", "min_load", "emin"}
BAND_KEYS = {"upto", "inclusive", "mpe", "pct", "line_factor", "apply_at"}
CLASS_KEYS = {"bands", "lines", "min"}
MIN_KEYS = {"e_upto_g", "min_e"}


@dataclass(frozen=True)
class Band:
    """One row of an MPE table: loads up to `upto` (None: no bound) get this MPE."""

    upto: Fraction | None
    inclusive: bool
    mpe: Fraction  # fixed part, in the table's mpe_unit
    pct: Fraction  # percent of max(load, apply_at), when the band gives it itself
    line_factor: Fraction | None  # else: this factor x the class's line percentage
    apply_at: Fraction  # in the table's load_unit


@dataclass(frozen=True)
class AccuracyClass:
    name: str
    bands: tuple[Band, ...]
    lines: dict[str, Fraction]  # line name -> percent (volume tables)
    min_rules: tuple[tuple[Fraction | None, int], ...]  # (e up to, in g; Min in e)


@dataclass(frozen=True)
class Table:
    id: str
    title: str
    kind: str  # "weighing" or "volume"
    load_unit: str  # "e", "L" or "mmq"
    mpe_unit: str  # "e" or "L"
    in_service_factor: Fraction
    classes: dict[str, AccuracyClass]
    min_load: Fraction | None
    emin: str | None  # "mmq": Emin from the minimum measured quantity (R 117)
    path: str


def _num(where: str, value: object) -> Fraction:
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise TableError(f"{where}: expected a decimal string such as \"0.5\", got {value!r}")
    try:
        return Fraction(value)
    except ValueError:
        raise TableError(f"{where}: not a number: {value!r}") from None


def _keys(where: str, got: dict, allowed: set[str]) -> None:
    unknown = sorted(set(got) - allowed)
    if unknown:
        raise TableError(f"{where}: unknown key {unknown[0]!r}")


def _bands(where: str, rows: object, lines: dict[str, Fraction]) -> tuple[Band, ...]:
    if not isinstance(rows, list) or not rows:
        raise TableError(f"{where}.bands: expected a non-empty list of bands")
    out: list[Band] = []
    for n, row in enumerate(rows):
        at = f"{where}.bands[{n}]"
        if not isinstance(row, dict):
            raise TableError(f"{at}: expected a table")
        _keys(at, row, BAND_KEYS)
        upto = _num(f"{at}.upto", row["upto"]) if "upto" in row else None
        factor = _num(f"{at}.line_factor", row["line_factor"]) if "line_factor" in row else None
        pct = _num(f"{at}.pct", row.get("pct", "0"))
        if factor is not None:
            if "A" not in lines:
                raise TableError(f"{at}.line_factor: the class has no line A")
            if "pct" in row:
                raise TableError(f"{at}.pct: give either pct or line_factor")
        if "mpe" not in row and "pct" not in row and factor is None:
            raise TableError(f"{at}: a band needs mpe, pct or line_factor")
        band = Band(upto, bool(row.get("inclusive", True)), _num(f"{at}.mpe", row.get("mpe", "0")),
                    pct, factor, _num(f"{at}.apply_at", row.get("apply_at", "0")))
        if out and (out[-1].upto is None or (upto is not None and upto < out[-1].upto)):
            raise TableError(f"{at}.upto: bands must be in increasing order of upto")
        out.append(band)
    return tuple(out)


def parse(data: dict, path: str) -> Table:
    """A parsed TOML document -> Table. Raises TableError naming `path` and the key."""
    _keys(path, data, TABLE_KEYS)
    for key in ("id", "title", "kind", "load_unit", "mpe_unit", "classes"):
        if key not in data:
            raise TableError(f"{path}: missing key {key!r}")
    kind = data["kind"]
    if kind not in KINDS:
        raise TableError(f"{path}: kind: expected one of {sorted(KINDS)}, got {kind!r}")
    if data["load_unit"] not in KINDS[kind]:
        raise TableError(f"{path}: load_unit: {data['load_unit']!r} does not fit kind {kind}")
    if data["mpe_unit"] != ("e" if kind == "weighing" else "L"):
        raise TableError(f"{path}: mpe_unit: {data['mpe_unit']!r} does not fit kind {kind}")
    in_service = data.get("in_service", {})
    _keys(f"{path}: in_service", in_service, {"factor"})
    classes: dict[str, AccuracyClass] = {}
    for name, spec in data["classes"].items():
        where = f"{path}: classes.{name}"
        _keys(where, spec, CLASS_KEYS)
        lines = {k: _num(f"{where}.lines.{k}", v) for k, v in spec.get("lines", {}).items()}
        rows = spec.get("bands", data.get("bands"))
        if rows is None:
            raise TableError(f"{where}: no bands (neither the class's nor the table's)")
        rules = []
        for n, rule in enumerate(spec.get("min", [])):
            _keys(f"{where}.min[{n}]", rule, MIN_KEYS)
            upto = _num(f"{where}.min[{n}].e_upto_g", rule["e_upto_g"]) \
                if "e_upto_g" in rule else None
            rules.append((upto, int(rule["min_e"])))
        classes[str(name)] = AccuracyClass(str(name), _bands(where, rows, lines), lines,
                                           tuple(rules))
    emin = data.get("emin")
    if emin not in (None, "mmq"):
        raise TableError(f"{path}: emin: expected \"mmq\" or no key, got {emin!r}")
    min_load = _num(f"{path}: min_load", data["min_load"]) if "min_load" in data else None
    return Table(str(data["id"]), str(data["title"]), kind, data["load_unit"],
                 data["mpe_unit"], _num(f"{path}: in_service.factor",
                                        in_service.get("factor", "1")),
                 classes, min_load, emin, path)


def load(directory: Path | str | None = None) -> dict[str, Table]:
    """Every *.toml table in `directory` (default: the built-in tables), keyed by id."""
    folder = Path(directory) if directory is not None else BUILTIN_DIR
    out: dict[str, Table] = {}
    for path in sorted(folder.glob("*.toml")):
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise TableError(f"{path.name}: not valid TOML: {exc}") from None
        table = parse(data, path.name)
        if table.id in out:
            raise TableError(f"{path.name}: id {table.id!r} already defined by "
                             f"{out[table.id].path}")
        out[table.id] = table
    if not out:
        raise TableError(f"{folder}: no *.toml MPE tables found")
    return out
