"""`metrotrace trace forward|backward|recall|balance|rules|feed` and
`metrotrace epcis import|export`.

Invariant: registering imports nothing heavy; each command opens the store the user named
(`--data-dir` / `--db`, tools/storeargs.py), migrates the trace tables, and exits non-zero
with the event and field named when a document is refused (nothing is stored then).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from metrotrace.tools.storeargs import add_store_args, store_url


def open_store(args: argparse.Namespace):
    from .store import TraceStore, connect

    store = TraceStore(connect(store_url(args)))
    store.migrate()
    return store


def _out(args: argparse.Namespace, text: str) -> None:
    if getattr(args, "output", None):
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")


def _trace(args: argparse.Namespace) -> int:
    from . import report
    from .balance import mass_balance
    from .query import TableTolerance, Tracer

    store = open_store(args)
    if args.trace_command == "balance":
        _out(args, json.dumps(mass_balance(store, args.holder, args.lot), indent=1))
        return 0
    tracer = Tracer(store, TableTolerance(store), method=args.method)
    if args.trace_command == "backward":
        result = tracer.backward(args.start)
        _out(args, result.dumps())
        return 0 if result.nodes else 1
    trace = tracer.forward(args.start)
    if args.trace_command == "forward":
        _out(args, trace.dumps())
    else:
        writer = {"json": report.to_json, "csv": report.to_csv, "html": report.to_html}
        _out(args, writer[args.format](trace))
    return 0 if trace.nodes else 1


def _epcis(args: argparse.Namespace) -> int:
    from . import DocumentError, jsonld

    store = open_store(args)
    if args.epcis_command == "export":
        found = store.events()
        doc = jsonld.write_document([e for e, _ in found], store.context(),
                                    [rt for _, rt in found])
        _out(args, json.dumps(doc, indent=1))
        return 0
    total = 0
    for name in args.files:
        try:
            doc = json.loads(Path(name).read_text())
            events = jsonld.read_document(doc)
            store.capture(events, int(time.time() * 1000), require_known=not args.allow_unknown,
                          context=jsonld.extension_context(doc))
        except json.JSONDecodeError as exc:
            print(f"{name}: not JSON: {exc}", file=sys.stderr)
            return 2
        except DocumentError as exc:
            print(f"{name}: refused, nothing stored: {exc}", file=sys.stderr)
            return 2
        total += len(events)
        print(f"{name}: {len(events)} events")
    print(f"imported {total} events", file=sys.stderr)
    return 0


def _rules(args: argparse.Namespace) -> int:
    from . import RuleError, rulefile

    if args.rules_command == "load":
        try:
            ruleset = rulefile.parse(Path(args.file).read_text())
        except (OSError, UnicodeDecodeError) as exc:
            print(f"{args.file}: {exc}", file=sys.stderr)
            return 2
        except RuleError as exc:
            print(f"{args.file}: refused, nothing stored: {exc}", file=sys.stderr)
            return 2
    store = open_store(args)
    try:
        if args.rules_command == "show":
            text = store.meta(rulefile.META_KEY)
            print(json.dumps(json.loads(text), indent=1) if text else "{}")
            return 0 if text else 1
        store.put_meta(rulefile.META_KEY, rulefile.dumps(ruleset))
    finally:
        store.conn.close()
    print(f"loaded {len(ruleset.rules)} trace rules from {args.file}")
    return 0


def _feed(args: argparse.Namespace) -> int:
    import signal
    import threading

    from .feed import TraceFeed

    feed = TraceFeed(store_url(args))
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        while True:
            if feed.load_rules() is None:
                print("no trace rules stored: metrotrace trace rules load FILE", file=sys.stderr)
                return 2
            feed.tick()
            if args.once or stop.wait(args.every):
                break
    finally:
        feed.close()
    print(json.dumps(dict(feed.counts), sort_keys=True))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    trace = subparsers.add_parser("trace", help="trace lots forward / backward, recall reports")
    sub = trace.add_subparsers(dest="trace_command", required=True)
    for name, helptext in (("forward", "lot or EPC → every holder, transformation and sale"),
                           ("backward", "sale event ID, EPC or location → lots → producers"),
                           ("recall", "forward trace as a recall report")):
        cmd = sub.add_parser(name, help=helptext)
        cmd.add_argument("start", help="EPC / lot URN (or event ID / location for backward)")
        cmd.add_argument("--method", choices=("cte", "index"), default="cte",
                         help="reachability by recursive SQL or the in-memory graph index")
        cmd.add_argument("-o", "--output", help="write to this file instead of stdout")
        if name == "recall":
            cmd.add_argument("--format", choices=("json", "csv", "html"), default="json")
        add_store_args(cmd)
        cmd.set_defaults(func=_trace)
    balance = sub.add_parser("balance", help="mass balance per holder and lot")
    balance.add_argument("--holder")
    balance.add_argument("--lot")
    balance.add_argument("-o", "--output")
    add_store_args(balance)
    balance.set_defaults(func=_trace)

    rules = sub.add_parser("rules", help="the rules that turn node records into events")
    rules_sub = rules.add_subparsers(dest="rules_command", required=True)
    load = rules_sub.add_parser("load", help="check a TOML rules file and store it (the "
                                             "server's trace feed uses the stored rules)")
    load.add_argument("file")
    add_store_args(load)
    load.set_defaults(func=_rules)
    show = rules_sub.add_parser("show", help="print the stored rules as JSON")
    add_store_args(show)
    show.set_defaults(func=_rules)
    feed = sub.add_parser("feed", help="turn stored node records into trace events by the "
                                       "stored rules (`server run` does this in its monitor)")
    feed.add_argument("--every", type=float, default=10.0, metavar="SECONDS")
    feed.add_argument("--once", action="store_true", help="one pass, then exit")
    add_store_args(feed)
    feed.set_defaults(func=_feed)

    epcis = subparsers.add_parser("epcis", help="EPCIS 2.0 JSON-LD import and export")
    esub = epcis.add_subparsers(dest="epcis_command", required=True)
    imp = esub.add_parser("import", help="capture EPCIS documents (each all-or-nothing)")
    imp.add_argument("files", nargs="+")
    imp.add_argument("--allow-unknown", action="store_true",
                     help="accept objects no stored event commissioned (foreign documents)")
    add_store_args(imp)
    imp.set_defaults(func=_epcis)
    exp = esub.add_parser("export", help="every stored event as one EPCIS document")
    exp.add_argument("-o", "--output")
    add_store_args(exp)
    exp.set_defaults(func=_epcis)
