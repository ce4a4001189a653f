"""Ingest cost in instructions: per record and stage (callgrind), and SQLite's own floor.

Wall and CPU time on a shared machine move by ±30% with the neighbours' load; the
instructions a stage executes do not (within a fraction of a percent), so variants are
compared by these. Each stage runs inside its own `eval()` under
`valgrind --tool=callgrind --toggle-collect=builtin_eval --dump-after=builtin_eval`, so
each dump counts one stage: envelope (COSE parse, Ed25519, batch decode), decode (record
bytes -> checked rows), tags (the record loop with its node HMACs, less decode), store
(`store_batches`, one transaction per group), rest (`handle_many` in all, less the rest).
Steady state: the records' byte templates are learnt before counting (a new layout costs
one CBOR decode per record of its first batch, once).

The floor: the same rows inserted by a C program through SQLite's own API (prepared
statement, bind, step, reset; same schema, pragmas and transactions), i.e. what SQLite
itself costs with no Python at all. Needs valgrind and a C compiler with sqlite3.h.

    .venv/bin/python bench/ingest_cost.py [--batches 10] [--group 10]
"""

from __future__ import annotations

import argparse
import gc
import json
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WARM = 4  # envelopes ingested first: templates learnt, statements prepared

FLOOR_C = r"""
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
/* rows: u8 n, node[n], i64 seq, kind, t, u16 n, inst[n], u16 n, record[n], tag[32] */
int main(int argc, char **argv) {
    FILE *f = fopen(argv[1], "rb"); fseek(f, 0, SEEK_END); long size = ftell(f);
    fseek(f, 0, SEEK_SET); unsigned char *buf = malloc(size);
    if (fread(buf, 1, size, f) != (size_t)size) return 1;
    int per = atoi(argv[3]), group = atoi(argv[4]), n = 0;
    sqlite3 *db; sqlite3_stmt *st; sqlite3_open(argv[2], &db);
    sqlite3_exec(db, argv[5], 0, 0, 0);
    sqlite3_prepare_v2(db, argv[6], -1, &st, 0);
    struct timespec t0, t1; clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t0);
    for (unsigned char *p = buf; p < buf + size; n++) {
        if (n % (per * group) == 0) sqlite3_exec(db, n ? "COMMIT; BEGIN IMMEDIATE"
                                                       : "BEGIN IMMEDIATE", 0, 0, 0);
        long long v[3]; unsigned short len;
        sqlite3_bind_blob(st, 1, p + 1, p[0], SQLITE_TRANSIENT); p += 1 + p[0];
        memcpy(v, p, 24); p += 24;
        for (int i = 0; i < 3; i++) sqlite3_bind_int64(st, 2 + i, v[i]);
        memcpy(&len, p, 2); sqlite3_bind_text(st, 5, (char *)p + 2, len, SQLITE_TRANSIENT);
        p += 2 + len;
        memcpy(&len, p, 2); sqlite3_bind_blob(st, 6, p + 2, len, SQLITE_TRANSIENT);
        p += 2 + len;
        sqlite3_bind_blob(st, 7, p, 32, SQLITE_TRANSIENT); p += 32;
        sqlite3_bind_int64(st, 8, n / per);
        if (sqlite3_step(st) != SQLITE_DONE) { puts(sqlite3_errmsg(db)); return 1; }
        sqlite3_reset(st);
    }
    sqlite3_exec(db, "COMMIT", 0, 0, 0);
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t1);
    printf("%d %d %.9f\n", n, sqlite3_total_changes(db),
           (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9);
    return 0;
}
"""
FLOOR_SETUP = ("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; "
               "CREATE TABLE records (node BLOB NOT NULL, seq BIGINT NOT NULL, "
               "kind INTEGER NOT NULL, t BIGINT NOT NULL, inst TEXT, record BLOB NOT NULL, "
               "tag BLOB NOT NULL, envelope_id BIGINT NOT NULL, PRIMARY KEY (node, seq)) "
               "WITHOUT ROWID; CREATE INDEX records_inst_t ON records (inst, t);")
FLOOR_INSERT = ("INSERT INTO records (node, seq, kind, t, inst, record, tag, envelope_id) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (node, seq) DO NOTHING")


def _stream(batches: int, per_batch: int):
    from metrotrace.server.ingest.synth import Site

    site = Site(nodes=16)
    return site, site.stream(WARM + batches, per_batch)


def child(batches: int, per_batch: int, group: int, tmp: str) -> None:
    """Runs under callgrind: each stage in its own eval() (one dump each)."""
    from metrotrace.gateway import envelope as cose
    from metrotrace.server.ingest.columns import decode_many
    from metrotrace.server.ingest.core import Ingest
    from metrotrace.server.ingest.synth import T0
    from metrotrace.server.store import open_store

    now = T0 + 10**10
    site, envelopes = _stream(batches, per_batch)
    ingests = []
    for name in ("stages", "whole"):
        store = open_store(f"sqlite:///{tmp}/{name}.sqlite3")
        for row in site.registry_rows():
            store.put(row)
        ingests.append(Ingest(store))
        ingests[-1].handle_many([(site.topic, d, now) for d in envelopes[:WARM]])
    ingest, whole = ingests
    measured, topic, lookup = envelopes[WARM:], site.topic, ingest._public_key(now)
    gc.disable()  # as handle_many runs
    scope = {"cose": cose, "decode_many": decode_many, "ingest": ingest, "whole": whole,
             "measured": measured, "topic": topic, "lookup": lookup, "now": now}
    batches_ = eval("[cose.open_envelope(d, topic, lookup).batch for d in measured]", scope)
    scope["batches"] = batches_
    for b in batches_:  # steady state: every layout's template learnt (once per layout)
        decode_many(b.records)
    eval("[decode_many(b.records) for b in batches]", scope)
    eval("[ingest._check_records(b, topic, now) for b in batches]", scope)
    checked = [ingest._check(topic, d, now) for d in measured]
    scope["groups"] = [[(c.envelope, c.rows) for c in checked[i:i + group]]
                       for i in range(0, len(checked), group)]
    eval("[ingest.store.store_batches(g) for g in groups]", scope)
    scope["messages"] = [[(topic, d, now) for d in measured[i:i + group]]
                         for i in range(0, len(measured), group)]
    eval("[whole.handle_many(m) for m in messages]", scope)
    rows = [r for b in batches_ for r in decode_many(b.records)]
    with open(f"{tmp}/rows.bin", "wb") as f:  # the same rows, for the C floor
        for r in rows:
            inst = r.inst.encode()
            f.write(bytes([len(r.node)]) + r.node + struct.pack("<qqqH", r.seq, r.kind, r.t,
                                                                 len(inst)) + inst
                    + struct.pack("<H", len(r.record)) + r.record + r.tag)


def _summary(path: Path) -> int:
    return int(re.search(r"^summary: (\d+)", path.read_text(), re.M).group(1))


def _callgrind(cmd: list[str], out: Path, *extra: str) -> list[int]:
    subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *extra,
                    *cmd], check=True, capture_output=True)
    dumps = sorted(out.parent.glob(out.name + "*"),
                   key=lambda p: int(p.suffix[1:]) if p.suffix[1:].isdigit() else 0)
    return [_summary(p) for p in dumps]


def measure(batches: int = 10, per_batch: int = 500, group: int = 10) -> dict:
    """Instructions per record by stage, and the C floor (instructions and CPU us)."""
    if shutil.which("valgrind") is None:
        print("instructions: not measured (valgrind is not installed)")
        return {}
    n = batches * per_batch
    with tempfile.TemporaryDirectory() as tmp:
        counts = _callgrind([sys.executable, __file__, "--child", str(batches), str(per_batch),
                             str(group), tmp], Path(tmp) / "cg",
                            "--toggle-collect=builtin_eval", "--dump-after=builtin_eval")
        envelope, decode, loop, store, whole = counts[-5:]
        stage = {"envelope": envelope, "decode": decode, "tags": loop - decode, "store": store}
        stage["rest"] = whole - sum(stage.values())
        stage["total"] = whole
        result = {"instructions_per_record": {k: round(v / n) for k, v in stage.items()}}
        print("instructions per record, one worker (callgrind): " + ", ".join(
            f"{k} {v:,}" for k, v in result["instructions_per_record"].items()))
        result |= _floor(Path(tmp), n, per_batch, group)
    return result


def _floor(tmp: Path, n: int, per_batch: int, group: int) -> dict:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        print("sqlite floor: not measured (no C compiler)")
        return {}
    (tmp / "floor.c").write_text(FLOOR_C)
    built = subprocess.run([cc, "-O2", "-o", str(tmp / "floor"), str(tmp / "floor.c"),
                            "-lsqlite3"], capture_output=True, text=True)
    if built.returncode:
        print(f"sqlite floor: not measured (cannot build: {built.stderr.strip()[:200]})")
        return {}
    args = [str(tmp / "floor"), str(tmp / "rows.bin"), "", str(per_batch), str(group),
            FLOOR_SETUP, FLOOR_INSERT]
    cpu = []
    for i in range(3):
        args[2] = str(tmp / f"floor{i}.sqlite3")
        rows, changes, seconds = subprocess.run(args, check=True, capture_output=True,
                                                text=True).stdout.split()
        assert int(rows) == int(changes) == n, (rows, changes, n)
        cpu.append(float(seconds) / n * 1e6)
    args[2] = str(tmp / "floor-cg.sqlite3")
    (instructions,) = _callgrind(args, tmp / "cg-floor")
    floor = {"sqlite_floor_instructions_per_record": round(instructions / n),
             "sqlite_floor_cpu_us_per_record": round(min(cpu), 2)}
    print(f"sqlite floor (C, same rows and schema): {instructions / n:,.0f} instructions, "
          f"{min(cpu):.2f} CPU us a record")
    return floor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=10, help="envelopes measured")
    parser.add_argument("--per-batch", type=int, default=500)
    parser.add_argument("--group", type=int, default=10, help="envelopes per transaction")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        batches, per_batch, group, tmp = args.child
        child(int(batches), int(per_batch), int(group), tmp)
        return
    t = time.perf_counter()
    result = measure(args.batches, args.per_batch, args.group)
    print(f"({time.perf_counter() - t:.0f} s under valgrind)")
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main()
