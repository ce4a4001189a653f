"""Stored node records → trace events, through the trace rules stored with the data.

    feed = TraceFeed("sqlite:///…/metrotrace.sqlite3")   # or postgresql://…
    feed.tick()   # every record stored since the last tick; returns events captured

Invariant: a record's events are captured exactly once. The cursor (the last envelope
whose records were fed, trace_meta `feed_after`) moves in the same transaction as the
events, and each record's eventIDs derive from the record itself ((node, seq)), so a crash
or a second feeder changes nothing. Nothing lives only in memory: rules come from
trace_meta (`metrotrace trace rules load`), a weighing finds its scan in the records table
when the scan is no longer cached, and each tank's current mix is rebuilt from the trace
tables when a feed starts or the rules change. A record no rule can place is counted by
reason and logged; a record whose events a capture refuses is counted and left out, the
rest of its batch is stored.
"""

from __future__ import annotations

import logging
import time
from collections import Counter

from metrotrace.firmware.metro.wire import record as wire

from . import DocumentError, RuleError, rulefile
from .build import Builder
from .rules import Rules, Tanks, mix_urn
from .store import TraceStore, connect
from .vocab import SALE_STEPS

CURSOR = "feed_after"
TRACE_KINDS = (wire.WEIGHING, wire.DISPENSE, wire.SCAN)
log = logging.getLogger("metrotrace.server.trace.feed")


def rebuild_tanks(store: TraceStore, tanks: set[str], mix_prefix: str) -> Tanks:
    """Each tank's current mix and the volume it still holds, from the trace tables: its
    highest-numbered mix lot, made by a transformation, less what was dispensed from it."""
    out = Tanks()
    steps = ", ".join(f"'{s}'" for s in SALE_STEPS)
    for tank in sorted(tanks):
        head = mix_urn(mix_prefix, tank, 0)[:-1]  # "….T1-M"
        found = [(int(urn[len(head):]), node, urn) for node, urn in store.rows(
            "SELECT id, urn FROM trace_node WHERE substr(urn, 1, ?) = ?", (len(head), head))
            if urn[len(head):].isdigit()]
        if not found:
            continue
        n, node, urn = max(found)
        made = store.rows("SELECT COALESCE(SUM(qty), 0) FROM trace_touch WHERE node = ?"
                          " AND role = 'out'", (node,))[0][0]
        sold = store.rows("SELECT COALESCE(SUM(t.qty), 0) FROM trace_touch t JOIN trace_event"
                          f" e ON e.id = t.event WHERE t.node = ? AND t.role = 'obs' AND"
                          f" e.biz_step IN ({steps})", (node,))[0][0]
        out.mix[tank] = (urn, int(made) - int(sold))
        out.count[tank] = n
    return out


class TraceFeed:
    def __init__(self, url: str, batch: int = 5000):
        self.trace = TraceStore(connect(url))
        self.trace.migrate()
        # the records table is the server store's; the feed reads it by envelope id
        self.trace.begin_write()
        self.trace.execute("CREATE INDEX IF NOT EXISTS trace_feed_records_envelope"
                           " ON records (envelope_id)")
        self.trace.commit()
        self.batch = batch
        self.rules: Rules | None = None
        self.ruleset: rulefile.RuleSet | None = None
        self._rules_text: str | None = None
        self.counts: Counter[str] = Counter()

    def close(self) -> None:
        self.trace.conn.close()

    def load_rules(self) -> Rules | None:
        """The stored rules (rebuilt with the tanks' state when they changed), or None."""
        text = self.trace.meta(rulefile.META_KEY)
        if text != self._rules_text:
            self._rules_text = text
            self.ruleset = rulefile.loads(text) if text else None
            self.rules = None if self.ruleset is None else Rules(
                self.ruleset.rules, Builder("metrotrace-feed"), self._tanks(),
                self.ruleset.mix_prefix, scan_lookup=self._scan)
        return self.rules

    def _tanks(self) -> Tanks:
        assert self.ruleset is not None
        tanks = {r.tank for r in self.ruleset.rules.values() if r.tank}
        return rebuild_tanks(self.trace, tanks, self.ruleset.mix_prefix)

    def _scan(self, node: bytes, seq: int) -> dict | None:
        found = self.trace.rows("SELECT record FROM records WHERE node = ? AND seq = ?",
                                (node, seq))
        return wire.decode(bytes(found[0][0])) if found else None

    def tick(self) -> int:
        """Feed everything stored since the last tick; return the events captured."""
        try:
            if self.load_rules() is None:
                return 0
            total = 0
            while True:
                recs, last, full = self._next()
                if last is None:
                    return total
                total += self._feed(recs, last)
                if not full:
                    return total
        finally:
            self.trace.end_read()

    def _next(self) -> tuple[list[dict], int | None, bool]:
        """The records of the next whole envelopes (about `batch` records), in (t, node,
        seq) order, the last envelope id among them, and whether more may follow."""
        after = int(self.trace.meta(CURSOR) or 0)
        kinds = ", ".join(str(k) for k in TRACE_KINDS)
        rows = self.trace.rows(f"SELECT record, envelope_id FROM records WHERE envelope_id > ?"
                               f" AND kind IN ({kinds}) ORDER BY envelope_id LIMIT ?",
                               (after, self.batch))
        if not rows:
            return [], None, False
        full = len(rows) == self.batch
        last = rows[-1][1]
        if full and rows[0][1] != last:  # leave the last envelope whole for the next batch
            rows = [r for r in rows if r[1] != last]
            last = rows[-1][1]
        elif full:  # one envelope larger than a batch: take it whole
            rows = self.trace.rows(f"SELECT record, envelope_id FROM records WHERE"
                                   f" envelope_id = ? AND kind IN ({kinds})", (last,))
        recs = [wire.decode(bytes(data)) for data, _ in rows]
        recs.sort(key=lambda r: (r["t"], r["node"], r["seq"]))
        return recs, int(last), full

    def _feed(self, recs: list[dict], last: int) -> int:
        assert self.rules is not None and self.ruleset is not None
        left_out: dict[int, str] = {}
        while True:
            events, owner = [], []
            for i, rec in enumerate(recs):
                if i in left_out:
                    continue
                ids = Builder(f"metrotrace-record:{rec['node'].hex()}:{rec['seq']}")
                try:
                    made = self.rules.events(rec, ids)
                except RuleError as err:
                    left_out[i] = f"unplaced {wire.KIND_NAMES[rec['kind']]}: {err.field}"
                    log.info("record %s:%d not placed: %s", rec["node"].hex(), rec["seq"], err)
                    continue
                events += made
                owner += [i] * len(made)
            try:
                self.trace.capture(events, time.time_ns() // 1_000_000,
                                   require_known=self.ruleset.require_known,
                                   meta={CURSOR: str(last)})
            except DocumentError as err:  # nothing stored: leave that record out, again
                bad = owner[err.event] if err.event is not None else None
                if bad is None:
                    raise
                left_out[bad] = f"refused: {err.field}"
                log.warning("record %s:%d refused: %s", recs[bad]["node"].hex(),
                            recs[bad]["seq"], err)
                self.rules.tanks = self._tanks()  # the rules moved tanks on; the store did not
                continue
            self.counts.update(left_out.values())
            self.counts["records"] += len(recs) - len(left_out)
            self.counts["events"] += len(events)
            return len(events)
