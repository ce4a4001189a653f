# Durable outbox: the node's records on flash until the gateway acknowledges them.
#
# Invariants:
# - A record is appended once, to the newest segment file, and never rewritten
#   (flash wear: append-only, one file sync per record, no pointer file).
# - A segment is deleted only when every record in it is acknowledged AND it is not
#   the newest segment that holds a record, so at boot the node recovers the `prev`
#   of its next record from flash (docs/protocol.md §5).
# - The reader accepts a damaged tail (a write cut by reset or power loss): it keeps
#   the valid prefix, and the next append goes to a fresh segment after it.
# - Nothing is dropped silently: when the outbox reaches its bound, append() raises
#   OutboxFull; when the file system is full, FlashFull. The caller decides and logs.
#
# Each entry holds the payload of a wire R frame (record bytes and tag), in the
# format of segment.py (which also has the Segment descriptor and the reading Cursor).
#
# Errors:  OutboxError
#            +-- OutboxFull   the configured bound is reached (policy decides)
#            +-- FlashFull    the file system refused the write (ENOSPC)

import os

from .segment import MAX_PAYLOAD, Cursor, Segment, pack, scan_segment

ENOSPC = 28


class OutboxError(Exception):
    pass


class OutboxFull(OutboxError):
    pass


class FlashFull(OutboxError):
    pass


def _name(num):
    return "%08d.seg" % num


class Outbox:
    def __init__(self, root, seg_bytes=4096, max_bytes=65536, reserve_bytes=2048):
        self.root = root
        self.seg_bytes = seg_bytes
        self.max_bytes = max_bytes
        self.reserve_bytes = reserve_bytes  # room kept for events once full
        self.acked = 0  # every record with seq <= acked may be deleted
        self.segments = []
        self.damaged_tails = 0
        try:
            os.mkdir(root)
        except OSError:
            pass  # exists
        for name in sorted(os.listdir(root)):
            if name.endswith(".seg"):
                self._load(int(name[:-4]))

    def path(self, num):
        return self.root + "/" + _name(num)

    def _load(self, num):
        entries, size, damaged = scan_segment(self.path(num))
        if damaged:
            self.damaged_tails += 1
        if not entries:  # created, then cut before its first record: holds nothing
            os.remove(self.path(num))
            return
        self.segments.append(Segment(num, entries[0][0], entries[-1][0], len(entries),
                                     size, damaged))

    def last_seq(self):
        """Seq of the newest record on flash (the next record's prev), 0 if none ever."""
        return self.segments[-1].last if self.segments else 0

    def used_bytes(self):
        total = 0
        for s in self.segments:
            total += s.size
        return total

    def append(self, seq, payload, reserve=False):
        """Store one record durably; raise OutboxFull or FlashFull, never drop it."""
        if seq <= self.last_seq():
            raise ValueError("seq must grow: %d after %d" % (seq, self.last_seq()))
        if len(payload) > MAX_PAYLOAD:
            raise ValueError("payload: %d bytes, at most %d" % (len(payload), MAX_PAYLOAD))
        entry = pack(seq, payload)
        limit = self.max_bytes + (self.reserve_bytes if reserve else 0)
        if self.used_bytes() + len(entry) > limit:
            raise OutboxFull("outbox holds %d bytes, bound %d" % (self.used_bytes(), limit))
        seg = self.segments[-1] if self.segments else None
        if seg is None or seg.sealed or seg.size + len(entry) > self.seg_bytes:
            seg = Segment((seg.num + 1) if seg else 1, seq, 0, 0, 0, False)
            self.segments.append(seg)
        try:
            with open(self.path(seg.num), "ab") as f:
                f.write(entry)
                f.flush()
        except OSError as e:
            seg.sealed = True  # a part of the entry may be on flash: a damaged tail
            if not seg.count:
                self.segments.pop()
            if e.args and e.args[0] == ENOSPC:
                raise FlashFull("file system full")
            raise
        seg.last = seq
        seg.count += 1
        seg.size += len(entry)

    def ack(self, seq):
        """The gateway stored every record up to seq: delete what that frees."""
        if seq > self.acked:
            self.acked = seq
        while len(self.segments) > 1 and self.segments[0].last <= self.acked:
            os.remove(self.path(self.segments.pop(0).num))

    def backlog(self):
        """Records on flash not yet acknowledged."""
        n = 0
        for s in self.segments:
            if s.first > self.acked:
                n += s.count
            elif s.last > self.acked:
                for seq, _ in scan_segment(self.path(s.num))[0]:
                    n += seq > self.acked
        return n

    def cursor(self):
        """A Cursor at the oldest record not yet acknowledged."""
        return Cursor(self)
