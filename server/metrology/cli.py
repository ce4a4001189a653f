"""`metrotrace drift analyze`: the fleet report from a registry and a readings file, or
from a store (`--data-dir` / `--db`, tools/storeargs.py) when no files are named.

Registration imports nothing heavy (numba, pyarrow load only when the command runs).
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def _analyze(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from metrotrace.server.metrology import MetrologyError, analysis

    now = args.now if args.now is not None else int(time.time() * 1000)
    err = Console(stderr=True)
    if (args.registry is None) != (args.readings is None):
        err.print("[red]drift analyze: name both REGISTRY and READINGS, or neither (store)[/red]")
        return 2
    skipped: dict[str, int] = {}
    try:
        with Progress(console=err, transient=True, disable=args.no_progress) as progress:
            task = progress.add_task("analysing", total=args.batches)

            def on_batch(done, _total):
                progress.update(task, completed=done)

            if args.registry is not None:
                report = analysis.analyze(args.registry, args.readings, now,
                                          tables_dir=args.tables, batches=args.batches,
                                          on_batch=on_batch)
            else:
                report, skipped = _from_store(args, now, on_batch)
    except MetrologyError as exc:
        err.print(f"[red]drift analyze: {exc}[/red]")
        return 2
    for reason, count in skipped.items():
        err.print(f"drift analyze: skipped {count} records: {reason}")
    shown = [r for r in report if args.all or r["state"] != "ok"]
    if args.json:
        json.dump({"now_ms": now, "instruments": len(report), "report": shown,
                   "skipped_records": skipped}, sys.stdout)
        sys.stdout.write("\n")
        return 0
    table = Table(title=f"{len(shown)} of {len(report)} instruments")
    for name in ("instrument", "state", "first alarm", "last r", "crossing (days)"):
        table.add_column(name)
    for r in shown:
        first = r["first_alarm_ms"]
        cross = r["crossing_ms"]
        table.add_row(r["instrument"], r["state"],
                      time.strftime("%Y-%m-%d", time.gmtime(first / 1000)) if first else "",
                      "" if r["last_r"] is None else f"{r['last_r']:+.2f}",
                      "" if cross is None else f"{(cross - now) / 86_400_000:+.0f}")
    Console().print(table)
    return 0


def _from_store(args: argparse.Namespace, now: int, on_batch):
    from metrotrace.server.metrology import analysis, storeio
    from metrotrace.server.metrology.errors import InputError
    from metrotrace.server.store import open_store
    from metrotrace.tools.storeargs import store_url

    type_tables = {}
    for item in args.table or ():
        kind, sep, table = item.partition("=")
        if not sep:
            raise InputError(f"--table: expected TYPE=TABLE, got {item!r}")
        type_tables[kind] = table
    from metrotrace.server.store import StoreError

    try:
        store = open_store(store_url(args))
    except StoreError as exc:
        raise InputError(f"store: {exc}") from exc
    try:
        loaded = storeio.load(store, type_tables)
    finally:
        store.close()
    from metrotrace.server.metrology import settings
    from metrotrace.tools.storeargs import default_data_dir

    s = settings.resolve(args.drift_settings, args.data_dir or default_data_dir(), args.db)
    report = analysis.report(loaded.instruments, loaded.verified, loaded.due, loaded.data, now,
                             tables_dir=args.tables, batches=args.batches, on_batch=on_batch,
                             params=s.params, sigma=s.sigma([i.id for i in loaded.instruments]))
    return report, dict(loaded.skipped)


def register(subparsers) -> None:
    from metrotrace.tools.storeargs import add_store_args

    drift = subparsers.add_parser("drift", help="metrology: tolerance and drift of instruments")
    sub = drift.add_subparsers(dest="drift_command", required=True)
    p = sub.add_parser("analyze", help="fleet report: ok / warning / drifting / "
                       "out_of_tolerance / overdue_verification per instrument")
    p.add_argument("registry", nargs="?", help="registry file (CSV or Parquet), see "
                   "docs/metrology.md; without files the store is read")
    p.add_argument("readings", nargs="?", help="readings file (CSV or Parquet)")
    add_store_args(p)
    p.add_argument("--table", action="append", metavar="TYPE=TABLE",
                   help="MPE table for a store instrument type (default NAWI=oiml-r76, "
                   "fuel_dispenser=oiml-r117); repeatable")
    p.add_argument("--now", type=int, default=None, help="UTC ms to report at (default: now)")
    p.add_argument("--tables", default=None, help="folder of MPE tables (default: built-in)")
    p.add_argument("--batches", type=int, default=10, help="time slices fed to the kernels")
    p.add_argument("--json", action="store_true", help="JSON instead of a table")
    p.add_argument("--all", action="store_true", help="list instruments that are ok too")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--drift-settings", default=None, metavar="FILE",
                   help="engine settings (known check sigma, baseline) for a store; default: "
                   "DATA_DIR/drift-settings.json when it exists, as the dashboard uses")
    p.set_defaults(func=_analyze)
