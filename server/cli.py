"""`metrotrace server ...`, `metrotrace registry ...`, `metrotrace verify`,
`metrotrace export-archive`, `metrotrace broker config`: the server's commands.

Registration imports nothing heavy; each command imports its modules when it runs.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    from metrotrace.tools.storeargs import add_store_args

    server = sub.add_parser("server", help="run the ingest worker or the HTTP API")
    server_sub = server.add_subparsers(dest="server_command", required=True)
    run = server_sub.add_parser("run", help="one ingest worker on the shared subscription")
    add_store_args(run)
    run.add_argument("--broker", default="127.0.0.1:1883", help="HOST:PORT of the broker")
    run.add_argument("--client-id", default=f"metrotrace-server-{socket.gethostname()}-"
                                            f"{os.getpid()}",
                     help="MQTT client id; keep it fixed per worker so its session persists")
    run.add_argument("--username", default=os.environ.get("METROTRACE_MQTT_USER"))
    run.add_argument("--password-file", type=Path, default=None,
                     help="file holding the MQTT password (or $METROTRACE_MQTT_PASSWORD)")
    run.add_argument("--tls-ca", default=None, help="CA certificate: connect with TLS")
    run.add_argument("--influx-url", default=None, help="also export readings to InfluxDB v2")
    run.add_argument("--influx-token", default=os.environ.get("INFLUX_TOKEN", ""))
    run.add_argument("--influx-org", default="metrotrace")
    run.add_argument("--influx-bucket", default="metrotrace")
    run.add_argument("--influx-status-every", type=float, default=60.0, metavar="SECONDS",
                     help="export every instrument's status this often (0: never)")
    run.add_argument("--monitor-every", type=float, default=60.0, metavar="SECONDS",
                     help="run the drift monitor this often (0: never); of several workers "
                          "on one store only the holder of the store's monitor lease runs it")
    run.add_argument("--drift-settings", type=Path, default=None, metavar="FILE",
                     help="drift engine settings the monitor computes states with (known "
                          "check sigma, baseline; docs/metrology.md); default: "
                          "DATA_DIR/drift-settings.json when it exists, else the engine's")
    run.set_defaults(func=_store_errors(_server_run))

    api = server_sub.add_parser("api", help="serve the HTTP API (OpenAPI at /openapi.json, "
                                "read at /docs) and the dashboard")
    add_store_args(api)
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8000)
    api.add_argument("--token", default=os.environ.get("METROTRACE_API_TOKEN"),
                     help="API token for write endpoints (or $METROTRACE_API_TOKEN)")
    api.add_argument("--no-dashboard", action="store_true",
                     help="serve the API only, not the dashboard at /")
    api.add_argument("--drift-settings", type=Path, default=None, metavar="FILE",
                     help="drift engine settings the dashboard computes states with (known "
                          "check sigma, baseline; docs/dashboard.md); default: "
                          "DATA_DIR/drift-settings.json when it exists, else the engine's")
    api.set_defaults(func=_server_api)

    registry = sub.add_parser("registry", help="sites, gateways, keys, nodes, instruments")
    reg_sub = registry.add_subparsers(dest="registry_command", required=True)
    load = reg_sub.add_parser("load", help="load a TOML or JSON registry file into the store")
    add_store_args(load)
    load.add_argument("file", type=Path)
    load.set_defaults(func=_store_errors(_registry_load))
    show = reg_sub.add_parser("show", help="print the registry as JSON")
    add_store_args(show)
    show.set_defaults(func=_store_errors(_registry_show))

    verify = sub.add_parser("verify", help="re-verify stored envelopes and node tags "
                                           "(from the store or an archive file)")
    add_store_args(verify)
    verify.add_argument("--archive", type=Path, default=None,
                        help="verify this archive file instead of the store")
    verify.add_argument("--trusted-keys", type=Path, action="append", metavar="FILE",
                        help="gateway public keys obtained independently (a registry file, "
                             "`gateway keygen` output or a birth message; repeatable); "
                             "without it the keys stored in the verified source are used")
    verify.add_argument("--node-keys", type=Path, action="append", metavar="FILE",
                        help="node HMAC keys (secret) obtained independently: the gateway's "
                             "node key file or a registry file (repeatable)")
    verify.set_defaults(func=_store_errors(_verify))

    export = sub.add_parser("export-archive", help="write every envelope and the public "
                                                   "registry to an archive file")
    add_store_args(export)
    export.add_argument("file", type=Path)
    export.set_defaults(func=_store_errors(_export_archive))

    broker = sub.add_parser("broker", help="production Mosquitto configuration")
    broker_sub = broker.add_subparsers(dest="broker_command", required=True)
    config = broker_sub.add_parser("config", help="write mosquitto.conf, passwords and ACLs")
    add_store_args(config)
    config.add_argument("--out", type=Path, required=True, help="directory to write into")
    config.add_argument("--port", type=int, default=8883)
    config.add_argument("--no-tls", action="store_true",
                        help="plain listener (a test broker on localhost only)")
    config.add_argument("--server-user", action="append", default=None,
                        help="MQTT user of the server workers (repeatable)")
    config.set_defaults(func=_store_errors(_broker_config))


def _store_errors(command: Callable[[argparse.Namespace], int]
                  ) -> Callable[[argparse.Namespace], int]:
    """A store that cannot be used (schema newer than this code, bad URL, a failed
    migration) ends the command with its one-line reason and exit code 2, not a traceback."""
    def run(args: argparse.Namespace) -> int:
        from metrotrace.server.store import StoreError

        try:
            return command(args)
        except StoreError as e:
            print(f"metrotrace: {e}", file=sys.stderr)
            return 2

    return run


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def _server_run(args: argparse.Namespace) -> int:
    import logging

    from metrotrace.server.ingest.worker import BrokerConfig, Worker
    from metrotrace.tools.storeargs import store_url

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    host, _, port = args.broker.rpartition(":")
    password = (args.password_file.read_text().strip() if args.password_file
                else os.environ.get("METROTRACE_MQTT_PASSWORD"))
    broker = BrokerConfig(host or "127.0.0.1", int(port), args.username, password, args.tls_ca)
    worker = Worker(store_url(args), broker, args.client_id,
                    monitor_every_s=args.monitor_every, drift_settings=drift_settings(args))
    exporter = None
    if args.influx_url:
        from metrotrace.server.export.influx import InfluxExporter

        exporter = InfluxExporter(args.influx_url, args.influx_token, args.influx_org,
                                  args.influx_bucket, store_url=worker.store_url,
                                  status_every_s=args.influx_status_every)
        worker.ingest.listeners.append(exporter.offer)
        worker.monitor_listeners.append(exporter.offer_drift)
    stop = _stop_on_signals()
    try:
        worker.run(stop)
    finally:
        if exporter:
            exporter.close()
    counts = dict(worker.counts)
    if exporter:
        counts.update({f"influx_{k}": v for k, v in exporter.counts.items()})
    print(json.dumps(counts, sort_keys=True))
    return 0


def api_app(args: argparse.Namespace):
    """The app `metrotrace server api` serves: the server's routes, the trace and EPCIS
    routes (writes behind the same API token) and, unless --no-dashboard, the dashboard."""
    from fastapi import Depends

    from metrotrace.server.api.app import create_app
    from metrotrace.server.api.deps import require_token
    from metrotrace.server.trace.api import StorePool
    from metrotrace.server.trace.api import make_router as trace_router
    from metrotrace.tools.storeargs import store_url

    url = store_url(args)
    pool = StorePool(url)
    routers = [trace_router(pool, write_dependencies=[Depends(require_token)])]
    from metrotrace.server.dashboard.routes import api_docs_router, make_router

    routers.append(api_docs_router())  # /docs without a CDN
    if not args.no_dashboard:
        routers.append(make_router(settings=drift_settings(args)))
    app = create_app(url, token=args.token, routers=routers)
    app.state.trace_stores = pool  # its connections close with the process (or pool.close)
    return app


def drift_settings(args: argparse.Namespace):
    """The drift settings of the store `args` names: --drift-settings FILE, else the data
    directory's drift-settings.json (the demo writes one), else the engine's defaults."""
    from metrotrace.server.metrology import InputError, settings
    from metrotrace.tools.storeargs import default_data_dir

    try:
        return settings.resolve(getattr(args, "drift_settings", None),
                                getattr(args, "data_dir", None) or default_data_dir(),
                                getattr(args, "db", None))
    except InputError as e:
        raise SystemExit(f"metrotrace: --drift-settings: {e}") from None


def _server_api(args: argparse.Namespace) -> int:
    import uvicorn

    uvicorn.run(api_app(args), host=args.host, port=args.port)
    return 0


def _registry_load(args: argparse.Namespace) -> int:
    from metrotrace.server.registry import RegistryError
    from metrotrace.server.registry.load import read_file
    from metrotrace.server.store import open_store
    from metrotrace.tools.storeargs import store_url

    try:
        rows = read_file(args.file)
    except RegistryError as e:
        print(f"registry: {e}", file=sys.stderr)
        return 2
    store = open_store(store_url(args))
    for row in rows:
        store.put(row)
    store.close()
    print(f"loaded {len(rows)} registry rows from {args.file}")
    return 0


def _registry_show(args: argparse.Namespace) -> int:
    from metrotrace.server.audit.archive import registry_json
    from metrotrace.server.store import open_store
    from metrotrace.tools.storeargs import store_url

    store = open_store(store_url(args))
    print(json.dumps(registry_json(store.registry(), secrets=False), indent=2))
    store.close()
    return 0


def _verify(args: argparse.Namespace) -> int:
    from metrotrace.server.audit import trust, verify

    try:
        trusted = trust.load(args.trusted_keys, args.node_keys)
    except trust.TrustError as e:
        print(f"verify: {e}", file=sys.stderr)
        return 2
    if args.archive:
        report = verify.verify_archive(args.archive, trusted)
    else:
        from metrotrace.server.store import open_store
        from metrotrace.tools.storeargs import store_url

        store = open_store(store_url(args))
        report = verify.verify_store(store, trusted)
        store.close()
    for what, source in report.trust.items():
        if source == trust.SOURCE:
            print(f"verify: {what.replace('_', ' ')} were read from the verified "
                  f"{'archive' if args.archive else 'database'} itself: a forger who rewrote "
                  f"it could have replaced them; pass --trusted-keys / --node-keys FILE "
                  f"obtained independently", file=sys.stderr)
    for problem in report.problems:
        print(json.dumps(problem, sort_keys=True))
    for warning in report.warnings:
        print(json.dumps({**warning, "warning": True}, sort_keys=True))
    print(json.dumps(report.summary(), sort_keys=True))
    return 0 if report.ok else 1


def _export_archive(args: argparse.Namespace) -> int:
    from metrotrace.server.audit.archive import write_archive
    from metrotrace.server.store import open_store
    from metrotrace.tools.storeargs import store_url

    store = open_store(store_url(args))
    n = write_archive(store, args.file)
    store.close()
    print(f"wrote {n} envelopes to {args.file}")
    return 0


def _broker_config(args: argparse.Namespace) -> int:
    from metrotrace.server import broker
    from metrotrace.server.store import open_store
    from metrotrace.tools.storeargs import store_url

    store = open_store(store_url(args))
    gateways = {g.id: g.site for g in store.registry()["gateways"]}
    store.close()
    written = broker.write_config(args.out, gateways, server_users=args.server_user or
                                  ["metrotrace-server"], port=args.port, tls=not args.no_tls)
    for name, path in written.items():
        print(f"{name}: {path}")
    return 0
