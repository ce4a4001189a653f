"""Ingest throughput: records/s per worker into SQLite and PostgreSQL, and 2 workers vs 1.

Envelopes are real (firmware record encoder, node HMAC, gateway COSE_Sign1 seal); each
worker process runs the ingest core (`Ingest.handle_many`: one Ed25519 verification per
envelope, a node tag per record, decode, idempotent store, `--group` envelopes per
transaction as a worker under load stores them) on its share of the stream. MQTT delivery
is not part of it. Each worker is pinned to its own core (os.sched_setaffinity). Figures
are medians of `--repeats` runs; the load average of the machine is printed with them.

Baselines, measured in the same run: the rate one core could reach if every record carried
its own Ed25519 signature (verification alone), and one transaction per envelope (group 1).
Then the CPU time per record of each stage (envelope, decode, tags, store, rest), one worker
in this process; with --instructions also the instructions per record of each stage and
of SQLite's own insert from C (bench/ingest_cost.py, under valgrind: repeatable where
time on a shared machine is not). Last line: one JSON object.

    .venv/bin/python bench/ingest.py [--quick] [--batches 120] [--per-batch 500]
                                     [--group 10] [--repeats 5] [--instructions]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
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


def _worker(url: str, topic: str, envelopes: list[bytes], group: int, core: int | None,
            start, out) -> None:
    if core is not None:
        os.sched_setaffinity(0, {core})
    store = open_store(url)
    ingest = Ingest(store)
    start.wait()
    t, cpu = time.perf_counter(), time.process_time()
    inserted = 0
    for i in range(0, len(envelopes), group):
        for outcome in ingest.handle_many([(topic, data, NOW)
                                           for data in envelopes[i:i + group]]):
            inserted += outcome.inserted
    out.put((inserted, time.perf_counter() - t, time.process_time() - cpu))
    store.close()


def run(url: str, site: Site, envelopes: list[bytes], workers: int,
        group: int) -> tuple[float, float, int]:
    """(wall s, CPU s per worker, records) for `workers` processes on the stream."""
    store = open_store(url)
    for row in site.registry_rows():
        store.put(row)
    store.close()
    cores = sorted(os.sched_getaffinity(0))
    ctx = mp.get_context("fork")
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(
        url, site.topic, envelopes[i::workers], group,
        cores[i] if workers <= len(cores) else None, start, out)) for i in range(workers)]
    for p in procs:
        p.start()
    time.sleep(0.5)  # let every worker open its store before the clock starts
    t = time.perf_counter()
    start.set()
    results = [out.get() for _ in procs]
    wall = time.perf_counter() - t
    for p in procs:
        p.join()
    return wall, max(c for _, _, c in results), sum(n for n, _, _ in results)


STAGES = ("envelope", "decode", "tags", "store", "rest")


def stages(url: str, site: Site, envelopes: list[bytes], group: int,
           n: int) -> dict[str, float]:
    """CPU us per record by stage, one worker in this process: envelope (COSE parse,
    Ed25519, batch decode), decode (record bytes -> checked rows), tags (node HMACs and
    the rest of the record loop), store (one transaction per group), rest."""
    from metrotrace.gateway import envelope as cose
    from metrotrace.server.ingest import core

    spent = dict.fromkeys(STAGES, 0.0)

    def timed(name, f):
        def wrapper(*a, **k):
            t = time.process_time()
            try:
                return f(*a, **k)
            finally:
                spent[name] += time.process_time() - t
        return wrapper

    store = open_store(url)
    for row in site.registry_rows():
        store.put(row)
    ingest = Ingest(store)
    store.store_batches = timed("store", store.store_batches)
    ingest._check_records = timed("tags", ingest._check_records)
    saved = cose.open_envelope, core.decode_many
    cose.open_envelope = timed("envelope", cose.open_envelope)
    core.decode_many = timed("decode", core.decode_many)
    try:
        t = time.process_time()
        for i in range(0, len(envelopes), group):
            ingest.handle_many([(site.topic, data, NOW) for data in envelopes[i:i + group]])
        total = time.process_time() - t
    finally:
        cose.open_envelope, core.decode_many = saved
        store.close()
    spent["tags"] -= spent["decode"]  # decode runs inside the record loop
    spent["rest"] = total - sum(spent.values())
    return {k: v / n * 1e6 for k, v in spent.items()} | {"total": total / n * 1e6}


def ed25519_baseline(n: int = 3000) -> float:
    key = Ed25519PrivateKey.generate()
    msg = b"r" * 100
    sig = key.sign(msg)
    public = key.public_key()
    t = time.perf_counter()
    for _ in range(n):
        public.verify(sig, msg)
    return n / (time.perf_counter() - t)


def measure(kind: str, where: Path, args, site: Site, envelopes: list[bytes], n: int,
            baseline: float, results: dict) -> None:
    one, two, cpu1, single = [], [], [], []
    loads = [os.getloadavg()[0]]
    for _ in range(args.repeats):
        wall, cpu, got = run(fresh_store(kind, where, args.pg_db), site, envelopes, 1,
                             args.group)
        assert got == n, (got, n)
        one.append(n / wall)
        cpu1.append(n / cpu)
        wall, _, got = run(fresh_store(kind, where, args.pg_db), site, envelopes, 2,
                           args.group)
        assert got == n, (got, n)
        two.append(n / wall)
        wall, _, got = run(fresh_store(kind, where, args.pg_db), site, envelopes, 1, 1)
        single.append(n / wall)
        loads.append(os.getloadavg()[0])
    by_stage = [stages(fresh_store(kind, where, args.pg_db), site, envelopes, args.group, n)
                for _ in range(min(args.repeats, 3))]
    stage = {k: round(statistics.median(s[k] for s in by_stage), 2) for k in by_stage[0]}
    rate, rate2, rate_cpu = (statistics.median(x) for x in (one, two, cpu1))
    speedups = sorted(b / a for a, b in zip(one, two, strict=True))
    speedup = statistics.median(speedups)
    results[f"{kind}_records_per_s"] = round(rate)
    results[f"{kind}_records_per_cpu_s"] = round(rate_cpu)
    results[f"{kind}_group1_records_per_s"] = round(statistics.median(single))
    results[f"{kind}_two_workers_records_per_s"] = round(rate2)
    results[f"{kind}_two_worker_speedup"] = round(speedup, 2)
    results[f"{kind}_load_avg"] = [round(x, 2) for x in loads]
    results[f"{kind}_cpu_us_per_record"] = stage
    print(f"{kind:8s} 1 worker {rate:9,.0f} records/s (median of {len(one)}: "
          f"{', '.join(f'{x:,.0f}' for x in one)}); {rate_cpu:,.0f} per CPU second; "
          f"{rate / baseline:.1f}x per-record Ed25519; "
          f"{rate / statistics.median(single):.2f}x one transaction per envelope")
    print(f"{'':8s} 2 workers {rate2:9,.0f} records/s = {speedup:.2f}x one (runs: "
          f"{', '.join(f'{x:.2f}' for x in speedups)}); 1-min load average "
          f"{', '.join(f'{x:.1f}' for x in loads)} on {os.cpu_count()} cores")
    print(f"{'':8s} CPU us per record, one worker: " + ", ".join(
        f"{k} {v:.2f}" for k, v in stage.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small stream, one run, for CI")
    parser.add_argument("--batches", type=int, default=120, help="envelopes in the stream")
    parser.add_argument("--per-batch", type=int, default=500)
    parser.add_argument("--group", type=int, default=10, help="envelopes per transaction")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--pg-db", default="metrotrace_bench_server")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--instructions", action="store_true",
                        help="also count instructions per stage under valgrind (about 1 min)")
    args = parser.parse_args()
    batches = 20 if args.quick else args.batches
    if args.quick:
        args.repeats = 1
    site = Site(nodes=16)
    t = time.perf_counter()
    envelopes = site.stream(batches, args.per_batch)
    n = batches * args.per_batch
    print(f"built {n} records in {batches} signed envelopes in {time.perf_counter() - t:.1f} s")
    baseline = ed25519_baseline()
    print(f"baseline: Ed25519 verify per record would cap one core at {baseline:,.0f} records/s")

    results: dict = {"records": n, "per_batch": args.per_batch, "group": args.group,
                     "repeats": args.repeats, "ed25519_per_record_baseline": round(baseline)}
    with tempfile.TemporaryDirectory() as tmp:
        where = Path(tmp)
        for kind in ["sqlite"] + ([] if args.no_postgres else ["postgres"]):
            try:
                measure(kind, where, args, site, envelopes, n, baseline, results)
            except OSError as e:
                print(f"{kind}: not measured ({e})")
                results[f"{kind}_records_per_s"] = None
    results["two_worker_speedup"] = results.get("sqlite_two_worker_speedup")
    if args.instructions:
        import ingest_cost  # beside this file

        results |= ingest_cost.measure(per_batch=args.per_batch, group=args.group)
    print(json.dumps(results, sort_keys=True))


if __name__ == "__main__":
    main()
