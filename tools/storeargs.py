"""`--data-dir DIR` / `--db URL`: how every command that uses a store names it.

The embedded default is SQLite in a data directory (`$METROTRACE_DATA`, else
`$XDG_DATA_HOME/metrotrace`, else `~/.local/share/metrotrace`); production names a
PostgreSQL database with `--db postgresql://user@host/dbname`.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

SQLITE_FILE = "metrotrace.sqlite3"


def default_data_dir() -> Path:
    if os.environ.get("METROTRACE_DATA"):
        return Path(os.environ["METROTRACE_DATA"])
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "metrotrace"


def add_store_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--data-dir", type=Path, default=None,
                       help=f"embedded SQLite store in DIR (default {default_data_dir()})")
    group.add_argument("--db", metavar="URL", default=None,
                       help="PostgreSQL URL, e.g. postgresql://postgres@127.0.0.1/metrotrace")


def store_url(args: argparse.Namespace) -> str:
    """The store the user named, as a URL: sqlite:///path or postgresql://..."""
    if getattr(args, "db", None):
        if not args.db.startswith(("postgresql://", "postgres://", "sqlite:///")):
            raise SystemExit(f"--db: expected a postgresql:// or sqlite:/// URL, got {args.db!r}")
        return args.db
    data_dir = getattr(args, "data_dir", None) or default_data_dir()
    data_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(data_dir / SQLITE_FILE).resolve()}"
