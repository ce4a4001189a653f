# Makes records: numbers, time, chain, tag, and durable storage, in that order.
#
# Invariants:
# - A record exists once it is on flash: `prev` is always the last *stored* record,
#   so a record lost to a reset or a full outbox leaves no hole in the chain.
# - Nothing legal is dropped silently. When the outbox is full (policy "block", the
#   default and the only one offered): weighings, checks, zeros and scans are refused
#   and counted, one "buffer_full" (or "flash_full") event is stored in the reserve,
#   and when acknowledgements free room a "buffer_ok" event says how many were
#   refused. Dispenses and events go into the reserve: fuel that has flowed cannot
#   be refused. Status records are skipped while blocked. Measurements resume once the
#   outbox is below 75 % of what it held when it blocked (of its bound, at most).
# - A dispense or event that finds even the reserve full is lost, but never silently:
#   `unstored` counts them for the node's whole life, is kept on flash (`tally`, a
#   FileStore, written at each loss; a write that fails too is retried at the next
#   report), and is told in buffer_ok, in power_up and, when it grew, in an
#   "unstored" event made beside the periodic status record (app/node.py).
#
# Audit event codes (kind 6, OIML D 31 6.2.3.6), detail in brackets:
#   power_up [reset, fw, fw_sha256, n]   param_change / cal_change [param, old, new,
#   by, n] (n: the persistent event counter, app/params.py)   seal [state, by]
#   clock_set [old, new, old_tq, tq]   buffer_full / flash_full [bytes]
#   buffer_ok [refused, unstored]   unstored [count]   driver_error [what, why, count]
#   scan_rejected [why, code]   pulse_rate [pulses, ms, max_hz]   zero_range [why]
#   overload [gross] or [by] / underload [by]   gateway_silent / gateway_back [rounds]

from ..wire import record
from ..wire.tag import hmac_sha256
from .outbox import FlashFull, OutboxFull

KINDS = {"weighing": record.WEIGHING, "dispense": record.DISPENSE, "check": record.CHECK,
         "zero": record.ZERO, "scan": record.SCAN, "event": record.EVENT,
         "status": record.STATUS}
RESERVED = ("event", "dispense")
RESUME_PERCENT = 75  # unblock once the outbox is below this share of its bound


class Producer:
    def __init__(self, node, key, seq, outbox, clock, log=print, tally=None):
        self.node = node
        self._key = key
        self.seq = seq
        self.outbox = outbox
        self.clock = clock
        self.log = log
        self.prev = outbox.last_seq()
        self.blocked = None  # None, or the event code that blocked measurements
        self.full_at = 0  # outbox bytes when it blocked
        self.refused = 0  # measurement records refused while blocked
        self._tally = tally
        self.unstored = _count(tally.read() if tally else None, log)  # lost, for life
        self.unstored_told = 0  # the count last carried by a stored record
        self._dirty = False  # unstored not yet on flash
        self.made = 0
        self.echo = None  # echo(kind, seq, prev, t, tq, inst, fields) once stored (host console)

    def emit(self, kind, inst, fields):
        """Make and store one record; its seq, or None if refused (counted)."""
        if self.blocked:
            self._maybe_resume()
        if self.blocked and kind not in RESERVED:
            if kind != "status":
                self.refused += 1
            return None
        try:
            return self._store(kind, inst, fields)
        except (OutboxFull, FlashFull) as full:
            code = "flash_full" if isinstance(full, FlashFull) else "buffer_full"
            if kind in RESERVED:
                self._lost("%s record not stored: %s" % (kind, full))
                return None
            if not self.blocked:
                self.blocked = code
                self.full_at = self.outbox.used_bytes()
                self.log("metro: %s, measurements stopped: %s" % (code, full))
                self._try_event(code, {"bytes": self.outbox.used_bytes()})
            if kind != "status":
                self.refused += 1
            return None

    def event(self, code, detail=None):
        fields = {"code": code}
        if detail:
            fields["detail"] = detail
        return self.emit("event", None, fields)

    def _try_event(self, code, detail, count=True):
        try:
            return self._store("event", None, {"code": code, "detail": detail})
        except (OutboxFull, FlashFull):
            if count:
                self._lost("%s event not stored" % code)
            return None

    def _lost(self, why):
        self.unstored += 1
        self.log("metro: %s (%d unstored)" % (why, self.unstored))
        self._dirty = True
        self._persist()

    def _persist(self):
        if self._tally and self._dirty:
            try:
                self._tally.write(b"%d" % self.unstored)
                self._dirty = False
            except OSError as err:  # the flash is full too: kept in RAM, retried later
                self.log("metro: unstored count not saved: %s" % err)

    def report_unstored(self):
        """An "unstored" event when the count grew since a stored record last told it
        (called beside each status record). Its own failure is not a new loss: the
        count is on flash and the next report tries again."""
        self._persist()
        n = self.unstored
        if n != self.unstored_told and \
                self._try_event("unstored", {"count": n}, False) is not None:
            self.unstored_told = n

    def _maybe_resume(self):
        # A full file system can stop the outbox below its own bound: resume only once
        # acknowledgements have freed a quarter of what was stored when it filled.
        if self.outbox.used_bytes() * 100 < min(self.full_at, self.outbox.max_bytes) * \
                RESUME_PERCENT:
            self.blocked = None
            refused, self.refused = self.refused, 0
            n = self.unstored
            if self._try_event("buffer_ok", {"refused": refused, "unstored": n}) is not None:
                self.unstored_told = n

    def _store(self, kind, inst, fields):
        seq = self.seq.next()
        t, tq = self.clock.now()
        body = record.make(KINDS[kind], self.node, seq, self.prev, t, tq, inst, **fields)
        self.outbox.append(seq, body + hmac_sha256(self._key, body),
                           reserve=kind in RESERVED)
        if self.echo:
            self.echo(kind, seq, self.prev, t, tq, inst, fields)
        self.prev = seq
        self.made += 1
        return seq


def _count(raw, log):
    """The unstored count kept on flash (decimal text); 0 when there is none yet."""
    if not raw:
        return 0
    try:
        return int(raw)
    except ValueError:  # written atomically (core/store.py), so this is flash rot
        log("metro: unstored count damaged: %r" % raw[:16])
        return 0
