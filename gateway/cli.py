"""`metrotrace gateway ...`: run, keygen, provision-node.

Registration imports nothing heavy; each command imports its modules when it runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def _run(args: argparse.Namespace) -> int:
    import logging
    import signal

    from .app import Gateway
    from .config import load

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    gateway = Gateway(load(args.config))
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: gateway.stop.set())
    gateway.run()
    return 0


def _now_ms() -> int:
    import time

    return time.time_ns() // 1_000_000


def _keygen(args: argparse.Namespace) -> int:
    from .config import load
    from .keys import KeyRing

    key_dir = Path(args.key_dir) if args.key_dir else load(args.config).key_dir
    if args.revoke:
        ring = KeyRing.load(key_dir)
        new = ring.revoke(bytes.fromhex(args.revoke), _now_ms())
        print(json.dumps({"revoked": args.revoke, "kid": new.kid.hex() if new else None,
                          "keys": ring.announce(_now_ms())}, indent=2))
    elif args.rotate:
        ring = KeyRing.load(key_dir)
        entry = ring.rotate(_now_ms(), int(args.overlap_hours * 3600_000))
        print(json.dumps({"kid": entry.kid.hex(), "rotated": True,
                          "keys": ring.announce(_now_ms())}, indent=2))
    else:
        ring = KeyRing.create(key_dir, _now_ms())
        print(json.dumps({"kid": ring.entries[0].kid.hex(), "keys": ring.announce(_now_ms())},
                         indent=2))
    return 0


def _write_secret_json(path: Path, data: dict) -> None:
    # Written whole to a 0600 temporary file, then renamed: never half-written, never
    # readable by others (both files hold node keys).
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _provision(args: argparse.Namespace) -> int:
    from .config import load
    from .errors import ConfigError
    from .ingress_mqtt import node_topic

    config = load(args.config)
    try:
        node = bytes.fromhex(args.node)
    except ValueError:
        raise ConfigError("--node", "expected the board id in hex") from None
    if not 1 <= len(node) <= 16:
        raise ConfigError("--node", "board id must be 1..16 bytes")
    registry = {"nodes": {}}
    if config.node_keys.exists():
        registry = json.loads(config.node_keys.read_text())
    if node.hex() in registry["nodes"] and not args.rekey:
        raise ConfigError("--node", f"{node.hex()} is already provisioned (use --rekey)")
    key = os.urandom(32)
    registry["nodes"][node.hex()] = {"key": key.hex()}
    board = {"node": node.hex(), "key": key.hex(), "gateway": config.gateway,
             "site": config.site, "link": {"kind": args.link}}
    if args.link == "mqtt":
        board["mqtt"] = {"host": args.broker_host or config.broker_host,
                         "port": config.wifi_port or config.broker_port,
                         "up": node_topic(node, "up"), "ack": node_topic(node, "ack")}
    _write_secret_json(Path(args.out), board)
    _write_secret_json(config.node_keys, registry)
    print(json.dumps({"node": node.hex(), "registered_in": str(config.node_keys),
                      "board_config": args.out}))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    gw = sub.add_parser("gateway", help="the on-site gateway: verify, keep, sign, forward")
    gsub = gw.add_subparsers(dest="gateway_command", required=True)

    run = gsub.add_parser("run", help="run the gateway")
    run.add_argument("--config", required=True, help="gateway.toml")
    run.set_defaults(func=_run)

    keygen = gsub.add_parser("keygen", help="create (or rotate) the gateway's Ed25519 key")
    keygen.add_argument("--config", default="gateway.toml", help="gateway.toml (for key_dir)")
    keygen.add_argument("--key-dir", help="key directory (overrides the config)")
    keygen.add_argument("--rotate", action="store_true",
                        help="add a new signing key; the old one stays valid for the overlap")
    keygen.add_argument("--overlap-hours", type=float, default=168.0,
                        help="how long the old key stays valid after --rotate (default 168)")
    keygen.add_argument("--revoke", metavar="KID",
                        help="revoke a key (hex kid) now; a revoked signing key is replaced "
                             "by a new one and batches it sealed are sealed again")
    keygen.set_defaults(func=_keygen)

    prov = gsub.add_parser("provision-node",
                           help="create a node key, register it, write the board's config")
    prov.add_argument("--config", default="gateway.toml", help="gateway.toml")
    prov.add_argument("--node", required=True, help="board id (machine.unique_id()) in hex")
    prov.add_argument("--link", choices=("uart", "mqtt"), default="uart")
    prov.add_argument("--broker-host", help="broker address as the board sees it (mqtt)")
    prov.add_argument("--out", required=True, help="where to write the board's config JSON")
    prov.add_argument("--rekey", action="store_true", help="replace an existing node key")
    prov.set_defaults(func=_provision)
