"""gateway.toml and the node key file, read into plain frozen values.

Invariant: a GatewayConfig that exists is complete and consistent; every problem is a
ConfigError naming the field (`batch.max_records: must be 1..10000`). Relative paths
are taken relative to the config file, so a gateway directory can be moved whole.

    [gateway]
    id = "market-1"                 # text; the MQTT topics carry it
    site = "market"                 # alerts go to metrotrace/v1/alerts/{site}
    key_dir = "keys"                # Ed25519 keys and keyring.json (`metrotrace gateway keygen`)
    node_keys = "nodes.json"        # {"nodes": {node_hex: {"key": hex32}}} (provision-node)

    [broker]                        # the uplink broker
    host = "127.0.0.1"
    port = 1883
    client_id = ""                  # default "metrotrace-gw-{id}" (fixed: persistent session)
    keepalive_s = 30
    tls = false                     # TLS to the broker (port 8883 usually)
    ca_file = ""                    # CA that signed the broker's certificate; "" = system CAs
    cert_file = ""                  # client certificate and key, if the broker wants them
    key_file = ""
    username = ""                   # "" = no credentials
    password = ""                   # or password_file (first line), kept 0600
    password_file = ""

    [serial]
    ports = ["/dev/ttyUSB0"]        # several boards at once; a vanished port is reopened
    baud = 115200

    [wifi]                          # Wi-Fi nodes publish to metrotrace/v1/node/{hex}/up
    enabled = false
    host = ""                       # default: the uplink broker
    port = 0

    [outbox]
    path = "outbox.sqlite"
    max_records = 1000000           # then new records are refused (nodes keep them) and alerted
    synchronous = "full"            # "full": an acknowledged record survives power loss

    [batch]
    max_records = 500
    window_ms = 200                 # a partial batch waits at most this long
    inflight = 16                   # unacknowledged publishes at most (paho issue #377)
    backfill_after_s = 300          # records older than this travel as backfill

    [status]
    interval_s = 30                 # counters on the status topic and in the log

    [seen]                          # digests kept for duplicate/forgery detection (outbox.py)
    keep_per_node = 100000          # never fewer than this many newest per node
    keep_days = 7                   # nor any younger than this, nor any still in the outbox
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError


@dataclass(frozen=True)
class GatewayConfig:
    gateway: str
    site: str
    key_dir: Path
    node_keys: Path
    broker_host: str = "127.0.0.1"
    broker_port: int = 1883
    client_id: str = ""
    keepalive_s: int = 30
    serial_ports: tuple[str, ...] = ()
    baud: int = 115200
    wifi: bool = False
    wifi_host: str = ""
    wifi_port: int = 0
    outbox_path: Path = Path("outbox.sqlite")
    outbox_max_records: int = 1_000_000
    synchronous: str = "full"
    batch_max_records: int = 500
    batch_window_ms: int = 200
    inflight: int = 16
    backfill_after_s: int = 300
    status_interval_s: float = 30.0
    tls: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    username: str | None = None
    password: str | None = None
    seen_keep_per_node: int = 100_000
    seen_keep_days: int = 7

    @property
    def mqtt_client_id(self) -> str:
        return self.client_id or f"metrotrace-gw-{self.gateway}"

    @property
    def up_topic(self) -> str:
        return f"metrotrace/v1/gw/{self.gateway}/up"

    @property
    def status_topic(self) -> str:
        return f"metrotrace/v1/gw/{self.gateway}/status"

    @property
    def alert_topic(self) -> str:
        return f"metrotrace/v1/alerts/{self.site}"


def _get(table: dict, section: str, name: str, kind: type, default=None, required=False):
    field = f"{section}.{name}"
    if name not in table:
        if required:
            raise ConfigError(field, "missing")
        return default
    value = table[name]
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(field, "expected an integer")
    if kind is float and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise ConfigError(field, "expected a number")
    if kind in (str, bool, list) and not isinstance(value, kind):
        raise ConfigError(field, f"expected {kind.__name__}")
    return value


def _range(field: str, value: int, low: int, high: int) -> int:
    if not low <= value <= high:
        raise ConfigError(field, f"must be {low}..{high}")
    return value


def parse(data: dict, base: Path) -> GatewayConfig:
    gw = data.get("gateway", {})
    broker, serial, wifi = data.get("broker", {}), data.get("serial", {}), data.get("wifi", {})
    outbox, batch, status = data.get("outbox", {}), data.get("batch", {}), data.get("status", {})
    gateway = _get(gw, "gateway", "id", str, required=True)
    if not gateway or any(c in gateway for c in "/+#") or not gateway.isprintable():
        raise ConfigError("gateway.id", "must be printable text without / + #")
    ports = _get(serial, "serial", "ports", list, [])
    if not all(isinstance(p, str) and p for p in ports):
        raise ConfigError("serial.ports", "expected a list of device paths")
    sync = _get(outbox, "outbox", "synchronous", str, "full")
    if sync not in ("full", "normal"):
        raise ConfigError("outbox.synchronous", "must be full or normal")

    def path(section: dict, sname: str, name: str, default: str) -> Path:
        p = Path(_get(section, sname, name, str, default))
        return p if p.is_absolute() else base / p

    def optional_path(section: dict, sname: str, name: str) -> str | None:
        return str(path(section, sname, name, "")) if _get(section, sname, name, str, "") \
            else None

    tls = _get(broker, "broker", "tls", bool, False)
    for name in ("ca_file", "cert_file", "key_file"):
        if _get(broker, "broker", name, str, "") and not tls:
            raise ConfigError(f"broker.{name}", "set broker.tls = true to use it")
    username = _get(broker, "broker", "username", str, "") or None
    password = _get(broker, "broker", "password", str, "") or None
    password_file = optional_path(broker, "broker", "password_file")
    if password_file is not None:
        if password is not None:
            raise ConfigError("broker.password_file", "give password or password_file, not both")
        try:
            password = Path(password_file).read_text().splitlines()[0]
        except (OSError, IndexError):
            raise ConfigError("broker.password_file", f"cannot read {password_file}") from None
    if password is not None and username is None:
        raise ConfigError("broker.password", "needs broker.username")
    seen = data.get("seen", {})

    return GatewayConfig(
        gateway=gateway,
        site=_get(gw, "gateway", "site", str, gateway),
        key_dir=path(gw, "gateway", "key_dir", "keys"),
        node_keys=path(gw, "gateway", "node_keys", "nodes.json"),
        broker_host=_get(broker, "broker", "host", str, "127.0.0.1"),
        broker_port=_range("broker.port", _get(broker, "broker", "port", int, 1883), 1, 65535),
        client_id=_get(broker, "broker", "client_id", str, ""),
        keepalive_s=_range("broker.keepalive_s",
                           _get(broker, "broker", "keepalive_s", int, 30), 5, 3600),
        serial_ports=tuple(ports),
        baud=_get(serial, "serial", "baud", int, 115200),
        wifi=_get(wifi, "wifi", "enabled", bool, False),
        wifi_host=_get(wifi, "wifi", "host", str, ""),
        wifi_port=_get(wifi, "wifi", "port", int, 0),
        outbox_path=path(outbox, "outbox", "path", "outbox.sqlite"),
        outbox_max_records=_range("outbox.max_records",
                                  _get(outbox, "outbox", "max_records", int, 1_000_000),
                                  1, 10**10),
        synchronous=sync,
        batch_max_records=_range("batch.max_records",
                                 _get(batch, "batch", "max_records", int, 500), 1, 10_000),
        batch_window_ms=_range("batch.window_ms",
                               _get(batch, "batch", "window_ms", int, 200), 0, 60_000),
        inflight=_range("batch.inflight", _get(batch, "batch", "inflight", int, 16), 1, 1000),
        backfill_after_s=_get(batch, "batch", "backfill_after_s", int, 300),
        status_interval_s=float(_get(status, "status", "interval_s", float, 30.0)),
        tls=tls,
        ca_file=optional_path(broker, "broker", "ca_file"),
        cert_file=optional_path(broker, "broker", "cert_file"),
        key_file=optional_path(broker, "broker", "key_file"),
        username=username,
        password=password,
        seen_keep_per_node=_range("seen.keep_per_node",
                                  _get(seen, "seen", "keep_per_node", int, 100_000), 1, 10**9),
        seen_keep_days=_range("seen.keep_days", _get(seen, "seen", "keep_days", int, 7),
                              0, 36500),
    )


def load(path: str | Path) -> GatewayConfig:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(str(path), "no such file") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(str(path), f"not TOML: {e}") from None
    return parse(data, path.parent.resolve())


def load_node_keys(path: Path) -> dict[bytes, bytes]:
    """{"nodes": {node_hex: {"key": hex}}} -> {node id: 32-byte key}."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except json.JSONDecodeError as e:
        raise ConfigError(str(path), f"not JSON: {e}") from None
    keys = {}
    for node_hex, entry in data.get("nodes", {}).items():
        field = f"{path.name}: nodes.{node_hex}"
        try:
            node, key = bytes.fromhex(node_hex), bytes.fromhex(entry["key"])
        except (ValueError, KeyError, TypeError):
            raise ConfigError(field, "expected a hex node id with a hex key") from None
        if not 1 <= len(node) <= 16 or len(key) != 32:
            raise ConfigError(field, "node id 1..16 bytes, key 32 bytes")
        keys[node] = key
    return keys
