"""`metrotrace node ...`: put firmware on boards, provision them, watch them, simulate them.

    node deploy    --port P [--py] [--no-hold]                   firmware with mpremote
    node provision --port P --gateway-config gw.toml [--board esp32] [--node HEX]
    node monitor   --port URL [--keys nodes.json | --key HEX] [--ack] [--count N]
    node sim       --gateway-config gw.toml [--nodes N] [--seconds S]
    node loadgen   --gateway-config gw.toml [--nodes N] [--records R] [--window W]
    node loadgen   --server [--broker H:P] [--data-dir D | --db URL] [--rate R]
                   [--seconds S] [--batch B] [--nodes N]      signed batches for workers

Registration imports nothing heavy; each command imports its modules when it runs.
Keys are never printed: provisioning shows the key's fingerprint (first 16 hex digits
of its SHA-256) for the registry, and the firmware id the board computes itself.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path


def fingerprint(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:16]


def _deploy(args: argparse.Namespace) -> int:
    from . import deploy

    copied = deploy.deploy(args.port, mpy=not args.py, hold=not args.no_hold,
                           log=lambda m: print(m, file=sys.stderr))
    on_board = deploy.board_hashes(args.port, sorted(copied))
    bad = sorted(n for n in copied if on_board.get(n) != copied[n])
    print(json.dumps({"port": args.port, "files": len(copied), "mismatched": bad}))
    return 1 if bad else 0


def _provision(args: argparse.Namespace) -> int:
    from . import cli, deploy, hostnode

    node = args.node or deploy.board_id(args.port)
    out = Path(args.workdir) / f"board-{node}.json"
    argv = ["gateway", "provision-node", "--config", args.gateway_config, "--node", node,
            "--link", "uart", "--out", str(out)] + (["--rekey"] if args.rekey else [])
    if cli.main(argv):
        return 1
    board = json.loads(out.read_text())
    template = json.loads((hostnode.FIRMWARE / "boards" / args.board / "config.json")
                          .read_text())
    link = {**template.get("link", {}), **board.pop("link", {})}
    config = {**template, **board, "link": link}
    deploy.put_config(args.port, config)
    key = bytes.fromhex(board["key"])
    shown = {"node": node, "key_fingerprint": fingerprint(key), "gateway": board["gateway"],
             "board_config": f"{args.port}:config.json"}
    if not args.no_fw_id:
        shown["fw"] = deploy.firmware_id_on_board(args.port, config["fw_version"])
    out.unlink()  # the key now lives on the board and in the gateway's nodes.json only
    print(json.dumps(shown))
    return 0


def _keys(args: argparse.Namespace) -> dict[bytes, bytes]:
    if args.key:
        return {b"": bytes.fromhex(args.key)}  # any node
    if args.keys:
        from metrotrace.gateway.config import load_node_keys

        return load_node_keys(Path(args.keys))
    return {}


def _monitor(args: argparse.Namespace) -> int:
    import hmac

    import serial

    from metrotrace.firmware.metro.wire import frame
    from metrotrace.gateway.acks import AckTracker

    keys = _keys(args)
    port = serial.serial_for_url(args.port, baudrate=args.baud, timeout=0.1)
    decoder, acks, shown = frame.Decoder(), AckTracker(), 0
    deadline = time.monotonic() + args.seconds if args.seconds else None
    try:
        while (not args.count or shown < args.count) and (
                deadline is None or time.monotonic() < deadline):
            for item in decoder.feed(port.read(4096)):
                if isinstance(item, frame.Reject):
                    print(json.dumps({"reject": item.reason, "detail": item.detail}))
                    continue
                if item.fields is None:
                    print(json.dumps({"frame": chr(item.type), "payload": item.payload.hex()}))
                    continue
                fields = item.fields
                body, tag = item.split_tag()
                key = keys.get(fields["node"], keys.get(b""))
                verdict = "no_key" if key is None else (
                    "good" if hmac.compare_digest(hmac.new(key, body, "sha256").digest(), tag)
                    else "bad_tag")
                line = {k: v.hex() if isinstance(v, bytes) and k == "node" else v
                        for k, v in fields.items()}
                line = {k: v.decode(errors="replace") if isinstance(v, bytes) else v
                        for k, v in line.items()}
                print(json.dumps({**line, "tag": verdict}), flush=True)
                shown += 1
                if args.ack and verdict == "good":
                    mark = acks.stored(fields["node"], fields["seq"], fields["prev"])
                    port.write(frame.ack_frame(fields["node"], mark, key))
    finally:
        port.close()
    print(json.dumps({"records": shown, "rejects": decoder.counts}), file=sys.stderr)
    return 0


def _gateway_keys_path(config_path: str) -> Path:
    from metrotrace.gateway.config import load

    return load(config_path).node_keys


def _sim(args: argparse.Namespace) -> int:
    import tempfile

    from . import hostnode, simgw
    from .bridge import Bridge

    nodes = simgw.node_ids(args.nodes)
    keys = simgw.register(_gateway_keys_path(args.gateway_config), nodes, _run_note("sim"))
    work = Path(tempfile.mkdtemp(prefix="metrotrace-sim-"))
    build = hostnode.build(work / "build")
    bridges = [Bridge("pty") for _ in nodes]
    config = simgw.derived_config(Path(args.gateway_config), [b.url for b in bridges])
    gateway = simgw.start_gateway(config, work / "gateway.log")
    procs = []
    try:
        time.sleep(1.0)  # the gateway opens its ports before the nodes talk
        for i, (node, bridge) in enumerate(zip(nodes, bridges, strict=True)):
            cfg = hostnode.host_config(node, keys[node], work / f"flash-{i}", bridge.device_port,
                                       sim={"seed": i + 1}, status_s=5)
            path = hostnode.write_config(work / f"node-{i}.json", cfg)
            with open(work / f"node-{i}.log", "ab") as log:
                procs.append(hostnode.start(build, path, stdout=log, stderr=log))
        print(json.dumps({"nodes": [n.hex() for n in nodes], "ports": [b.url for b in bridges],
                          "gateway_config": str(config), "logs": str(work)}), flush=True)
        end = time.monotonic() + args.seconds if args.seconds else float("inf")
        while time.monotonic() < end and gateway.poll() is None:
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        for p in procs:
            p.kill()
            p.wait()
        gateway.terminate()
        gateway.wait(10)
        for b in bridges:
            b.close()
    print(json.dumps({"gateway": simgw.last_counters(work / "gateway.log")}))
    return 0


def _run_note(what: str) -> str:
    return f"node {what} {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}"


def _loadgen(args: argparse.Namespace) -> int:
    if args.server:
        return _loadgen_server(args)
    if not args.gateway_config:
        print("node loadgen: --gateway-config: required to load a gateway (or --server to"
              " load server workers)", file=sys.stderr)
        return 2
    import tempfile

    from . import simgw

    nodes = simgw.node_ids(args.nodes)
    keys = simgw.register(_gateway_keys_path(args.gateway_config), nodes,
                          _run_note("loadgen"))
    ptys = [simgw.PtyPair() for _ in nodes]
    config = simgw.derived_config(Path(args.gateway_config), [p.path for p in ptys])
    log = Path(tempfile.mkdtemp(prefix="metrotrace-loadgen-")) / "gateway.log"
    gateway = simgw.start_gateway(config, log)
    try:
        deadline = time.monotonic() + 30
        while (log.read_text().count("serial_open") < len(ptys) and gateway.poll() is None
               and time.monotonic() < deadline):
            time.sleep(0.05)
        load = [simgw.LoadNode(n, keys[n], p, args.window) for n, p in zip(nodes, ptys,
                                                                             strict=True)]
        figures = simgw.loadgen(load, args.records, args.timeout,
                                alive=lambda: gateway.poll() is None)
        if gateway.poll() is not None:
            print(f"node loadgen: the gateway exited ({gateway.returncode}); its log: {log}",
                  file=sys.stderr)
    finally:
        gateway.terminate()
        gateway.wait(10)
        for p in ptys:
            p.close()
    figures["gateway"] = simgw.last_counters(log)
    print(json.dumps(figures))
    return 0 if figures["records_acked"] == args.records * args.nodes else 1


def _loadgen_server(args: argparse.Namespace) -> int:
    from . import srvload
    from .storeargs import store_url

    host, _, port = args.broker.rpartition(":")
    try:
        figures = srvload.run(store_url(args), host or "127.0.0.1", int(port), args.rate,
                              args.seconds, args.nodes, args.batch, wait_s=args.wait)
    except (ValueError, ConnectionError, OSError) as e:
        print(f"node loadgen --server: {e}", file=sys.stderr)
        return 2
    print(json.dumps(figures))
    done = figures["broker_acked"] and figures["records_stored"] == figures["records_published"]
    return 0 if done else 1


def register(sub: argparse._SubParsersAction) -> None:
    from .storeargs import add_store_args

    node = sub.add_parser("node", help="boards: deploy, provision, monitor; simulated nodes")
    nsub = node.add_subparsers(dest="node_command", required=True)

    dep = nsub.add_parser("deploy", help="copy the firmware to a board with mpremote")
    dep.add_argument("--port", required=True, help="the board's USB serial port")
    dep.add_argument("--py", action="store_true", help="copy .py sources, not .mpy")
    dep.add_argument("--no-hold", action="store_true",
                     help="do not park main.py and reset first (a board without a node)")
    dep.set_defaults(func=_deploy)

    prov = nsub.add_parser("provision", help="node key and config onto a board")
    prov.add_argument("--port", required=True, help="the board's USB serial port")
    prov.add_argument("--gateway-config", required=True, help="gateway.toml (registry)")
    prov.add_argument("--board", default="esp32", help="config template: firmware/boards/NAME")
    prov.add_argument("--node", help="board id in hex (default: machine.unique_id())")
    prov.add_argument("--rekey", action="store_true", help="replace an existing node key")
    prov.add_argument("--no-fw-id", action="store_true", help="skip the firmware id")
    prov.add_argument("--workdir", default=".", help="scratch folder for the board config")
    prov.set_defaults(func=_provision)

    mon = nsub.add_parser("monitor", help="show a board's frames decoded (JSON lines)")
    mon.add_argument("--port", required=True, help="a port or pyserial URL (socket://...)")
    mon.add_argument("--baud", type=int, default=115200)
    mon.add_argument("--keys", help="nodes.json to check tags with")
    mon.add_argument("--key", help="one node key in hex")
    mon.add_argument("--ack", action="store_true", help="acknowledge, as a gateway would")
    mon.add_argument("--count", type=int, default=0, help="stop after N records")
    mon.add_argument("--seconds", type=float, default=0, help="stop after S seconds")
    mon.set_defaults(func=_monitor)

    sim = nsub.add_parser("sim", help="N simulated nodes (MicroPython) against a gateway")
    sim.add_argument("--gateway-config", required=True, help="gateway.toml")
    sim.add_argument("--nodes", type=int, default=3)
    sim.add_argument("--seconds", type=float, default=0, help="0: until Ctrl-C")
    sim.set_defaults(func=_sim)

    load = nsub.add_parser("loadgen", help="load a gateway with node records, or server "
                                           "workers with signed batches (--server)")
    load.add_argument("--gateway-config", help="gateway.toml (gateway load)")
    load.add_argument("--nodes", type=int, default=8)
    load.add_argument("--records", type=int, default=10000, help="per node (gateway load)")
    load.add_argument("--window", type=int, default=64,
                      help="records in flight per node (gateway load)")
    load.add_argument("--timeout", type=float, default=300, help="gateway load: give up after")
    srv = load.add_argument_group("server load (--server)")
    srv.add_argument("--server", action="store_true",
                     help="publish signed batches for `metrotrace server run` workers; the "
                          "gateway key and node keys are registered in the store first")
    srv.add_argument("--broker", default="127.0.0.1:1883", help="HOST:PORT the workers use")
    add_store_args(srv)
    srv.add_argument("--rate", type=float, default=1000.0, help="records per second")
    srv.add_argument("--seconds", type=float, default=10.0, help="how long to publish")
    srv.add_argument("--batch", type=int, default=100, help="records per envelope")
    srv.add_argument("--wait", type=float, default=60.0,
                     help="seconds to wait for the broker's acks and the store to catch up")
    load.set_defaults(func=_loadgen)
