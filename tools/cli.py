"""The `metrotrace` command line: one entry point, one subcommand per job.

Each area registers its own subcommands (a `register(subparsers)` function in its
`cli.py`, listed in REGISTRARS). Registration imports nothing heavy: a command imports
its modules only when it runs, so `metrotrace --help` works with the base install.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

# Modules with a `register(subparsers)` function, one per area.
REGISTRARS: list[str] = [
    "metrotrace.gateway.cli",
    "metrotrace.server.cli",
    "metrotrace.server.metrology.cli",
    "metrotrace.server.trace.cli",
    "metrotrace.tools.node",
]


def _demo(args: argparse.Namespace) -> int:
    from metrotrace.tools import demo

    try:
        summary = demo.run(duration=args.duration, port=args.port, data_dir=args.data_dir,
                           browser=not args.no_browser, influx_url=args.influx_url)
    except RuntimeError as err:  # DemoError, or a part that did not start (see its log)
        print(f"metrotrace demo: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # a second Ctrl-C: everything was stopped, no summary
        return 130
    return 0 if summary and not summary["processes"]["left"] else 1


def _wire_decode(args: argparse.Namespace) -> int:
    """Decode a captured UART byte stream (file or stdin) into JSON lines."""
    from metrotrace.firmware.metro.wire import frame

    data = Path(args.file).read_bytes() if args.file != "-" else sys.stdin.buffer.read()
    decoder = frame.Decoder()
    for item in decoder.feed(data):
        if isinstance(item, frame.Reject):
            line = {"reject": item.reason, "detail": item.detail}
        elif item.fields is not None:
            line = {k: v.hex() if isinstance(v, bytes) else v for k, v in item.fields.items()}
            line["tag"] = item.split_tag()[1].hex()
        else:
            line = {"frame": chr(item.type), "payload": item.payload.hex()}
        print(json.dumps(line, sort_keys=True))
    print(json.dumps({"rejects": decoder.counts}), file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="metrotrace", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="the whole system on this machine: broker, gateways, "
                          "MicroPython nodes, server, dashboard; a summary at the end")
    demo.add_argument("--duration", type=float, default=90.0,
                      help="seconds of simulated market day (default 90); Ctrl-C ends it early")
    demo.add_argument("--port", type=int, default=8000, help="dashboard and API port")
    demo.add_argument("--data-dir", type=Path, default=None,
                      help="where the demo keeps its store, keys and logs (emptied first; "
                           "default: the data directory's demo/ folder)")
    demo.add_argument("--no-browser", action="store_true", help="do not open the dashboard")
    demo.add_argument("--influx-url", default=None,
                      help="also export readings to this InfluxDB v2 (docs/grafana.md); "
                           "token from $INFLUX_TOKEN, org and bucket `metrotrace`")
    demo.set_defaults(func=_demo)

    wire = sub.add_parser("wire", help="node wire format tools")
    wire_sub = wire.add_subparsers(dest="wire_command", required=True)
    decode = wire_sub.add_parser("decode", help="decode captured UART frames to JSON lines")
    decode.add_argument("file", help="capture file, or - for standard input")
    decode.set_defaults(func=_wire_decode)

    for name in REGISTRARS:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
