"""The drift engine's settings for one fleet, kept in one file that every reader of the same
store uses: the kernel parameters and each instrument's known check-process sigma.

Invariant: the states of a store are a function of its records and these settings only, so
two processes that read the same store with the same settings file (the monitor that stores
alerts, the dashboard that draws them, a report) compute the same states and figures. A
file that breaks the format raises InputError naming the key; an absent file means the
engine's defaults (kernels.Params(), every sigma estimated from a baseline).

File (JSON, or TOML by suffix), every key optional:

    {"baseline": 50,                      readings that fix mu0 and sigma where none is known
     "confirm_within": 30,                a chart signal within this many readings confirms
     "cusum": {"k": 0.5, "h": 4.77},     "ewma": {"lam": 0.2, "L": 2.86},
     "check_sigma": {"MKT1-S1": 2.5}}     instrument -> known check sigma, base units
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from metrotrace.server.metrology import cusum, ewma, kernels
from metrotrace.server.metrology.errors import InputError

FILE = "drift-settings.json"  # its name in a data directory (`--data-dir`)
KEYS = ("baseline", "confirm_within", "cusum", "ewma", "check_sigma")


@dataclass(frozen=True)
class Settings:
    params: kernels.Params = field(default_factory=kernels.Params)
    check_sigma: Mapping[str, float] = field(default_factory=dict)

    def sigma(self, ids: list[str]) -> np.ndarray | None:
        """Known check sigma per instrument, in `ids` order (NaN: estimate it); None when
        no instrument has one (analysis.report's `sigma`)."""
        if not self.check_sigma:
            return None
        return np.array([self.check_sigma.get(i, np.nan) for i in ids], dtype=np.float64)

    def as_dict(self) -> dict:
        p = self.params
        return {"baseline": p.baseline, "confirm_within": p.confirm_within,
                "cusum": {"k": p.cusum.k, "h": p.cusum.h},
                "ewma": {"lam": p.ewma.lam, "L": p.ewma.L},
                "check_sigma": dict(sorted(self.check_sigma.items()))}


def _number(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InputError(f"{where}: expected a number, got {value!r}")
    return float(value)


def _table(value, where: str, names: tuple[str, ...]) -> dict:
    if not isinstance(value, dict):
        raise InputError(f"{where}: expected a table")
    unknown = sorted(set(value) - set(names))
    if unknown:
        raise InputError(f"{where}.{unknown[0]}: unknown key (expected {', '.join(names)})")
    return value


def parse(data) -> Settings:
    """A settings mapping (the file's content) -> Settings."""
    data = _table(data, "settings", KEYS)
    kw: dict = {}
    for name in ("baseline", "confirm_within"):
        if name in data:
            value = data[name]
            if isinstance(value, bool) or not isinstance(value, int):
                raise InputError(f"{name}: expected an integer, got {value!r}")
            kw[name] = value
    if "cusum" in data:
        c = _table(data["cusum"], "cusum", ("k", "h"))
        kw["cusum"] = cusum.CusumParams(**{k: _number(v, f"cusum.{k}") for k, v in c.items()})
    if "ewma" in data:
        e = _table(data["ewma"], "ewma", ("lam", "L"))
        kw["ewma"] = ewma.EwmaParams(**{k: _number(v, f"ewma.{k}") for k, v in e.items()})
    known = data.get("check_sigma", {})
    if not isinstance(known, dict):
        raise InputError("check_sigma: expected a table of instrument = sigma")
    sigma = {}
    for inst, value in known.items():
        s = _number(value, f"check_sigma.{inst}")
        if s <= 0:
            raise InputError(f"check_sigma.{inst}: must be positive, got {value!r}")
        sigma[str(inst)] = s
    return Settings(kernels.Params(**kw), sigma)


def load(path: Path | str) -> Settings:
    """Read a settings file (JSON, or TOML when it ends in .toml)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"settings: cannot read {path}: {exc.strerror}") from None
    try:
        if path.suffix == ".toml":
            import tomllib

            data = tomllib.loads(text)
        else:
            data = json.loads(text)
    except ValueError as exc:
        raise InputError(f"settings: {path} is not valid {path.suffix[1:] or 'JSON'}: "
                         f"{exc}") from None
    return parse(data)


def write(path: Path | str, settings: Settings) -> Path:
    path = Path(path)
    path.write_text(json.dumps(settings.as_dict(), indent=1) + "\n", encoding="utf-8")
    return path


def resolve(path: Path | str | None, data_dir: Path | str | None, db: str | None) -> Settings:
    """The settings a command uses: an explicit file, else (for an embedded store) the data
    directory's FILE, else the engine's defaults."""
    if path:
        return load(path)
    return Settings() if db else for_data_dir(data_dir)


def for_data_dir(data_dir: Path | str | None) -> Settings:
    """The settings kept in a data directory (FILE), or the engine's defaults."""
    if data_dir is not None and (Path(data_dir) / FILE).is_file():
        return load(Path(data_dir) / FILE)
    return Settings()
