"""Registry files (TOML or JSON) -> registry rows, checked field by field.

Invariant: a file either loads whole or not at all; every error names the entry and the
field (`instrument[2].max: expected an integer in base units`). Keys are hex in files;
times are UTC milliseconds or ISO 8601 text (`2025-11-23`, `2025-11-23T08:00:00Z`).

    [[site]]        id, name
    [[gateway]]     id, site, [[gateway.key]] public_key (hex), valid_from, revoked_at?
    [[node]]        id (hex), gateway, key (hex, 32 bytes)
    [[instrument]]  id, site, node (hex)?, type, accuracy_class, max, min, e, unit,
                    verified_on?, verification_due?, status?
"""

from __future__ import annotations

import json
import tomllib
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from metrotrace.firmware.metro.wire import record

from ..store.rows import GatewayKeyRow, GatewayRow, InstrumentRow, NodeRow, SiteRow
from . import RegistryError
from .keys import kid_of

STATUSES = ("in_service", "out_of_tolerance", "suspended", "withdrawn")

Row = SiteRow | GatewayRow | GatewayKeyRow | NodeRow | InstrumentRow


def read_file(path: str | Path) -> list[Row]:
    path = Path(path)
    text = path.read_bytes()
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text.decode())
    except (json.JSONDecodeError, tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise RegistryError(f"{path}: {e}") from None
    return parse(data)


def parse(data: dict[str, Any]) -> list[Row]:
    unknown = set(data) - {"site", "gateway", "node", "instrument"}
    if unknown:
        raise RegistryError(f"registry: unknown section(s) {sorted(unknown)}")
    rows: list[Row] = []
    for i, entry in enumerate(data.get("site", [])):
        f = _Fields(entry, f"site[{i}]")
        rows.append(SiteRow(f.text("id"), f.text("name", "")))
    for i, entry in enumerate(data.get("gateway", [])):
        f = _Fields(entry, f"gateway[{i}]")
        gateway = f.text("id")
        rows.append(GatewayRow(gateway, f.text("site")))
        for j, key in enumerate(entry.get("key", [])):
            k = _Fields(key, f"gateway[{i}].key[{j}]")
            public = k.hexbytes("public_key", 32)
            rows.append(GatewayKeyRow(kid_of(public), gateway, public, k.time("valid_from"),
                                      k.time("revoked_at", None)))
    for i, entry in enumerate(data.get("node", [])):
        f = _Fields(entry, f"node[{i}]")
        rows.append(NodeRow(f.hexbytes("id"), f.text("gateway", None), f.hexbytes("key", 32)))
    for i, entry in enumerate(data.get("instrument", [])):
        rows.append(instrument(entry, f"instrument[{i}]"))
    return rows


def instrument(entry: dict[str, Any], where: str = "instrument") -> InstrumentRow:
    f = _Fields(entry, where)
    row = InstrumentRow(
        id=f.text("id"), site=f.text("site"),
        node=f.hexbytes("node") if entry.get("node") is not None else None,
        type=f.text("type"), accuracy_class=f.text("accuracy_class"),
        max=f.integer("max"), min=f.integer("min"), e=f.integer("e"), unit=f.text("unit"),
        verified_on=f.time("verified_on", None), verification_due=f.time("verification_due", None),
        status=f.text("status", "in_service"))
    if row.unit not in record.UNITS:
        raise RegistryError(f"{where}.unit: not a base unit: {row.unit}")
    if row.status not in STATUSES:
        raise RegistryError(f"{where}.status: one of {', '.join(STATUSES)}")
    if not 0 <= row.min <= row.max or row.e <= 0:
        raise RegistryError(f"{where}: need 0 <= min <= max and e > 0")
    return row


class _Fields:
    """Typed access to one entry's fields; errors name the entry and the field."""

    _REQUIRED = object()

    def __init__(self, entry: Any, where: str) -> None:
        if not isinstance(entry, dict):
            raise RegistryError(f"{where}: expected a table")
        self.entry, self.where = entry, where

    def _get(self, name: str, default: Any) -> Any:
        if name in self.entry and self.entry[name] is not None:
            return self.entry[name]
        if default is self._REQUIRED:
            raise RegistryError(f"{self.where}.{name}: missing")
        return default

    def text(self, name: str, default: Any = _REQUIRED) -> Any:
        value = self._get(name, default)
        if value is not default and not (isinstance(value, str) and value):
            raise RegistryError(f"{self.where}.{name}: expected text")
        return value

    def integer(self, name: str) -> int:
        value = self._get(name, self._REQUIRED)
        if not isinstance(value, int) or isinstance(value, bool):
            raise RegistryError(f"{self.where}.{name}: expected an integer in base units")
        return value

    def hexbytes(self, name: str, length: int | None = None) -> bytes:
        value = self._get(name, self._REQUIRED)
        try:
            raw = bytes.fromhex(value)
        except (TypeError, ValueError):
            raise RegistryError(f"{self.where}.{name}: expected hex") from None
        if length is not None and len(raw) != length or not raw:
            raise RegistryError(f"{self.where}.{name}: expected {length or 'some'} bytes")
        return raw

    def time(self, name: str, default: Any = _REQUIRED) -> Any:
        value = self._get(name, default)
        if value is default:
            return value
        return to_ms(value, f"{self.where}.{name}")


def to_ms(value: Any, where: str) -> int:
    """UTC ms from an integer, an ISO 8601 text, or a TOML date/datetime."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise RegistryError(f"{where}: expected UTC ms or ISO 8601 time") from None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return int(value.timestamp() * 1000)
    if isinstance(value, date):
        return int(datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp() * 1000)
    raise RegistryError(f"{where}: expected UTC ms or ISO 8601 time")
