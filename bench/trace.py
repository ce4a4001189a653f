"""Trace benchmark: capture throughput and forward / backward trace latency.

Builds a realistic network (food lots on mixed pallets + a two-layer fuel network) and a
heavy-blending one (8 layers of tanks), captures each into SQLite and PostgreSQL, and times
traces two ways: recursive CTE and the in-memory graph index. The baseline, measured in the
same run, is the bare recursive-CTE closure count of trace_perf.md (no event rows fetched).
Last line: one JSON object. `--quick` runs a small network for CI. Forward traces, as
columns and written out, include each sale's tolerance state (every instrument has a
trace_tolerance row, as `server run`'s monitor writes them). The headline keys (`forward_p50_ms`,
`forward_p99_ms`, `backward_p50_ms`, `capture_events_per_s`) are the realistic network on
SQLite, or on PostgreSQL when only that engine ran; null when the realistic network was
not run (`heavy_*` keys then carry the heavy figures).
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

from metrotrace.server.trace import jsonld, netgen
from metrotrace.server.trace.query import TableTolerance, Tracer
from metrotrace.server.trace.store import TraceStore

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_BENCH = "metrotrace_bench_trace"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def networks(events: int, seed: int) -> dict[str, netgen.Network]:
    # food: ~86 events per lot pair; fuel share 1/10 of the realistic network
    food = netgen.food(seed, max(4, int(events * 0.9 / 43)))
    fuel = netgen.fuel(seed + 1, max(4, events // 10 // 11), layers=2, tanks=200)
    realistic = netgen.Network(food.events + fuel.events, food.lots + fuel.lots,
                               food.leaves + fuel.leaves, food.sales + fuel.sales)
    heavy = netgen.fuel(seed + 2, max(8, events // 29), layers=8,
                        tanks=max(4, events * 3 // 1000), dispenses=4)
    return {"realistic": realistic, "heavy": heavy}


def connect(engine: str, tmp: Path):
    if engine == "sqlite":
        conn = sqlite3.connect(tmp / "bench.sqlite3")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA cache_size=-500000")
        return conn
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {PG_BENCH} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {PG_BENCH}")
    return psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{PG_BENCH}")


def capture(store: TraceStore, events: list, batch: int = 2000) -> float:
    start = time.perf_counter()
    for i in range(0, len(events), batch):
        store.capture(events[i:i + batch], i)
    elapsed = time.perf_counter() - start
    if store.dialect == "postgresql":
        store.conn.autocommit = True
        store.execute("ANALYZE")
        store.conn.autocommit = False
    return len(events) / elapsed


def time_calls(fn, starts: list[str]) -> tuple[list[float], list[int]]:
    times, sizes = [], []
    for start in starts:
        t0 = time.perf_counter()
        result = fn(start)
        times.append(time.perf_counter() - t0)
        nodes = getattr(result, "nodes", ())
        sizes.append(len(nodes) if hasattr(nodes, "__len__") else int(nodes.size))
    return times, sizes


def baseline(store: TraceStore, tracer: Tracer, starts: list[str]) -> list[float]:
    ids = [tracer.start_nodes(s)[0] for s in starts]
    sql = ("WITH RECURSIVE down(n) AS (SELECT CAST(? AS BIGINT) UNION SELECT e.dst"
           " FROM trace_edge e JOIN down ON e.src = down.n) SELECT count(*) FROM down")
    times = []
    for node in ids:
        t0 = time.perf_counter()
        store.rows(sql, (node,))
        times.append(time.perf_counter() - t0)
    return times


def run_engine(engine: str, nets: dict, samples: int, rng: random.Random, tmp: Path) -> dict:
    out: dict[str, float] = {}
    for name, net in nets.items():
        store = TraceStore(connect(engine, tmp / name))
        store.migrate()
        rate = capture(store, net.events)
        out[f"{name}_capture_events_per_s"] = round(rate)
        instruments = [r[0] for r in store.rows("SELECT DISTINCT instrument FROM trace_event"
                                                " WHERE instrument IS NOT NULL")]
        store.insert("trace_tolerance", ("instrument", "from_t", "state"),
                     [(i, 0, "ok") for i in instruments])
        store.commit()
        print(f"[{engine}/{name}] {len(net.events):,} events captured at {rate:,.0f}/s")
        n = samples if name == "realistic" else max(10, samples // 20)
        starts = rng.sample(net.lots, min(n, len(net.lots)))
        leaves = rng.sample(net.leaves, min(n, len(net.leaves)))
        base = baseline(store, Tracer(store, method="cte"), starts)
        out[f"{name}_baseline_cte_count_p50_ms"] = round(pct(base, 0.5), 3)
        for method in ("cte", "index"):
            tracer = Tracer(store, TableTolerance(store), method=method)
            t0 = time.perf_counter()
            tracer.forward(starts[0])  # index build (graph, rows, names) / warm-up
            warm = time.perf_counter() - t0
            if method == "index":
                out[f"{name}_index_load_s"] = round(warm, 1)
                out[f"{name}_index_memory_mb"] = round(tracer.index.nbytes() / 2**20)
            if method == "index":  # the traversal alone, without fetching event rows
                ids = [tracer.start_nodes(s)[0] for s in starts]
                reach = []
                for node in ids:
                    t1 = time.perf_counter()
                    tracer.reach([node], True)
                    reach.append(time.perf_counter() - t1)
                out[f"{name}_index_reach_only_p50_ms"] = round(pct(reach, 0.5), 3)
                print(f"[{engine}/{name}/index] graph traversal alone p50 "
                      f"{pct(reach, .5):.3f} ms p99 {pct(reach, .99):.3f} ms")
            if method == "index":  # the whole trace computed, before it is written out
                cols, csizes = time_calls(tracer.columns, starts)
                out[f"{name}_index_columns_p50_ms"] = round(pct(cols, 0.5), 3)
                out[f"{name}_index_columns_p99_ms"] = round(pct(cols, 0.99), 3)
                shape = tracer.columns(starts[0]).summary()
                print(f"[{engine}/{name}/index] trace as columns (every holder, sale and "
                      f"transformation row, tolerance states included) p50 "
                      f"{pct(cols, .5):.3f} ms p99 {pct(cols, .99):.3f} ms (reach "
                      f"{statistics.mean(csizes):,.0f}; first trace: {shape})")
            fwd, sizes = time_calls(tracer.forward, starts)
            bwd, _ = time_calls(tracer.backward, leaves)
            key = f"{name}_{method}"
            out[f"{key}_forward_p50_ms"] = round(pct(fwd, 0.5), 3)
            out[f"{key}_forward_p99_ms"] = round(pct(fwd, 0.99), 3)
            out[f"{key}_backward_p50_ms"] = round(pct(bwd, 0.5), 3)
            out[f"{key}_nodes_reached_mean"] = round(statistics.mean(sizes), 1)
            print(f"[{engine}/{name}/{method}] forward p50 {pct(fwd, .5):.3f} ms p99 "
                  f"{pct(fwd, .99):.3f} ms (reach {statistics.mean(sizes):,.0f} nodes, max "
                  f"{max(sizes):,}); backward p50 {pct(bwd, .5):.3f} ms; warm-up {warm:.2f} s"
                  + (f" ({out[f'{name}_index_memory_mb']} MB held)" if method == "index"
                     else "")
                  + f"; x baseline {pct(fwd, .5) / max(pct(base, .5), 1e-6):.1f}")
        store.conn.close()
    return out


def jsonld_capture_rate(net: netgen.Network, count: int) -> float:
    """EPCIS JSON-LD path: schema validation + parse + capture (SQLite, in memory)."""
    doc = json.dumps(jsonld.write_document(net.events[:count]))
    store = TraceStore(sqlite3.connect(":memory:"))
    store.migrate()
    t0 = time.perf_counter()
    store.capture(jsonld.read_document(json.loads(doc)), 1)
    return count / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small network (CI smoke run)")
    parser.add_argument("--events", type=int, default=None, help="events per network")
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument("--samples", type=int, default=None, help="traces timed per case")
    parser.add_argument("--networks", default="realistic,heavy")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    events = args.events or (20_000 if args.quick else 1_000_000)
    samples = args.samples or (50 if args.quick else 200)
    rng = random.Random(args.seed)
    t0 = time.perf_counter()
    nets = {k: v for k, v in networks(events, args.seed).items()
            if k in args.networks.split(",")}
    print("networks: " + ", ".join(f"{k} {len(v.events):,} events" for k, v in nets.items())
          + f" generated in {time.perf_counter() - t0:.1f} s")
    result: dict[str, object] = {"events": events}
    with tempfile.TemporaryDirectory() as tmp:
        for engine in args.engines.split(","):
            dirs = {name: Path(tmp) / engine / name for name in nets}
            for d in dirs.values():
                d.mkdir(parents=True)
            figures = run_engine(engine, nets, samples, rng, Path(tmp) / engine)
            prefix = "" if engine == "sqlite" else "pg_"
            result.update({prefix + k: v for k, v in figures.items()})
    if "realistic" in nets:
        rate = jsonld_capture_rate(nets["realistic"], 2000 if args.quick else 20_000)
        print(f"JSON-LD capture (GS1 schema validation + parse + store): {rate:,.0f} events/s")
        result["jsonld_capture_events_per_s"] = round(rate)
    result.update(headline(result, args.engines.split(",")))
    print(json.dumps(result, sort_keys=True))
    return 0


def headline(result: dict, engines: list[str]) -> dict:
    """The required keys: the server's method (index) on SQLite, else PostgreSQL; a full
    written-out trace on the realistic network; on the heavy one the whole trace computed
    as columns (every row, tolerance states included; strings as codes into the index's
    name tables), and written out beside it (docs/traceability.md); None for what this
    run did not measure."""
    engine = "sqlite" if "sqlite" in engines else engines[0]
    prefix = "" if engine == "sqlite" else "pg_"

    def get(key: str):
        return result.get(prefix + key)

    return {"headline_engine": engine,
            "forward_p50_ms": get("realistic_index_forward_p50_ms"),
            "forward_p99_ms": get("realistic_index_forward_p99_ms"),
            "backward_p50_ms": get("realistic_index_backward_p50_ms"),
            "capture_events_per_s": get("realistic_capture_events_per_s"),
            "heavy_forward_p50_ms": get("heavy_index_columns_p50_ms"),
            "heavy_forward_written_out_p50_ms": get("heavy_index_forward_p50_ms"),
            "heavy_capture_events_per_s": get("heavy_capture_events_per_s")}


if __name__ == "__main__":
    sys.exit(main())
