"""Ingest throughput: records/s per worker into SQLite and PostgreSQL, and 2 workers vs 1.

Envelopes are real (firmware record encoder, node HMAC, gateway COSE_Sign1 seal); each
worker runs the ingest core (`Ingest.handle`: one Ed25519 verification per batch, a node
tag per record, decode, idempotent store) on its share of the stream. Baseline, measured in
the same run: the rate one core could reach if every record carried its own Ed25519
signature (verification alone). Last line: one JSON object.

    .venv/bin/python bench/ingest.py [--quick] [--per-batch 500] [--pg URL]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from metrotrace.server.ingest.core import Ingest
from metrotrace.server.ingest.synth import T0, Site
from metrotrace.server.store import open_store

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
NOW = T0 + 10**10


def fresh_store(kind: str, where: Path, pg_db: str) -> str:
    if kind == "sqlite":
        path = where / f"bench-{time.monotonic_ns()}.sqlite3"
        return f"sqlite:///{path}"
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {pg_db} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {pg_db}")
    return f"postgresql://postgres@127.0.0.1:5432/{pg_db}"


def _worker(url: str, topic: str, envelopes: list[bytes], start, out) -> None:
    store = open_store(url)
    ingest = Ingest(store)
    start.wait()
    t = time.perf_counter()
    inserted = 0
    for data in envelopes:
        outcome = ingest.handle(topic, data, NOW)
        inserted += outcome.inserted
    out.put((inserted, time.perf_counter() - t))
    store.close()


def run(url: str, site: Site, envelopes: list[bytes], workers: int) -> tuple[float, int]:
    """Wall time for `workers` processes to ingest the stream (split evenly)."""
    store = open_store(url)
    for row in site.registry_rows():
        store.put(row)
    store.close()
    ctx = mp.get_context("fork")
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(url, site.topic, envelopes[i::workers], start,
                                               out)) for i in range(workers)]
    for p in procs:
        p.start()
    time.sleep(0.5)  # let every worker open its store before the clock starts
    t = time.perf_counter()
    start.set()
    results = [out.get() for _ in procs]
    wall = time.perf_counter() - t
    for p in procs:
        p.join()
    return wall, sum(n for n, _ in results)


def ed25519_baseline(n: int = 3000) -> float:
    key = Ed25519PrivateKey.generate()
    msg = b"r" * 100
    sig = key.sign(msg)
    public = key.public_key()
    t = time.perf_counter()
    for _ in range(n):
        public.verify(sig, msg)
    return n / (time.perf_counter() - t)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small stream, for CI")
    parser.add_argument("--per-batch", type=int, default=500)
    parser.add_argument("--pg-db", default="metrotrace_bench_server")
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    batches = 20 if args.quick else 200
    site = Site(nodes=16)
    t = time.perf_counter()
    envelopes = site.stream(batches, args.per_batch)
    n = batches * args.per_batch
    print(f"built {n} records in {batches} signed envelopes in {time.perf_counter() - t:.1f} s")
    baseline = ed25519_baseline()
    print(f"baseline: Ed25519 verify per record would cap one core at {baseline:,.0f} records/s")

    results: dict[str, float | int | None] = {"records": n, "per_batch": args.per_batch,
                                               "ed25519_per_record_baseline": round(baseline)}
    with tempfile.TemporaryDirectory() as tmp:
        where = Path(tmp)
        kinds = ["sqlite"] + ([] if args.no_postgres else ["postgres"])
        for kind in kinds:
            try:
                one, got1 = run(fresh_store(kind, where, args.pg_db), site, envelopes, 1)
                two, got2 = run(fresh_store(kind, where, args.pg_db), site, envelopes, 2)
            except OSError as e:
                print(f"{kind}: not measured ({e})")
                results[f"{kind}_records_per_s"] = None
                continue
            assert got1 == got2 == n, (got1, got2, n)
            rate, speedup = n / one, one / two
            results[f"{kind}_records_per_s"] = round(rate)
            results[f"{kind}_two_workers_records_per_s"] = round(n / two)
            results[f"{kind}_two_worker_speedup"] = round(speedup, 2)
            print(f"{kind:8s} 1 worker {rate:10,.0f} records/s "
                  f"({rate / baseline:.1f}x per-record Ed25519);  2 workers {n / two:10,.0f} "
                  f"records/s = {speedup:.2f}x one")
    results["two_worker_speedup"] = results.get("sqlite_two_worker_speedup")
    print(json.dumps(results, sort_keys=True))


if __name__ == "__main__":
    main()
