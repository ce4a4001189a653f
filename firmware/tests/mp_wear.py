# Flash wear of the outbox, measured on a real littlefs (vfs.VfsLfs2, as on an ESP32 or
# a Pico) over a RAM block device with the boards' 4 KiB erase blocks that counts block
# erases and bytes programmed. MicroPython only (CPython has no vfs): run by
# tests/test_micropython.py through mprun.py. docs/firmware.md "Flash wear" quotes the
# figures this prints and what they mean for a board's life.

import os

import vfs
from fsutil import remove_tree

from metro.core.clock import Clock
from metro.core.outbox import Outbox
from metro.core.producer import Producer
from metro.core.seq import SeqCounter

BLOCK = 4096  # the erase block of the ESP32's and the RP2040's QSPI flash
NODE = b"\xe6\x61\x41\x03\xe7\x51\x3a\x2f"
SCAN = {"code": b"]C10109506000134352" + b"10LOT42\x1d3103001250", "symbology": "]C1"}
WEIGHING = {"gross": 1250, "tare": 0, "net": 1250, "e": 5, "unit": "g", "flags": 1,
            "raw": 533400, "link": 1}
ZERO = {"indication": 0, "e": 5, "unit": "g", "raw": 8403}


class CountingBlocks:
    """vfs.AbstractBlockDev in RAM (one bytearray per block) that counts wear."""

    def __init__(self, count):
        self.blocks = [bytearray(BLOCK) for _ in range(count)]
        self.erases = [0] * count
        self.programmed = 0

    def readblocks(self, num, buf, offset=0):
        buf[:] = self.blocks[num][offset:offset + len(buf)]

    def writeblocks(self, num, buf, offset=0):
        self.blocks[num][offset:offset + len(buf)] = buf
        self.programmed += len(buf)

    def ioctl(self, op, arg):
        if op == 4:  # block count
            return len(self.blocks)
        if op == 5:  # block size
            return BLOCK
        if op == 6:  # erase
            self.blocks[arg][:] = b"\xff" * BLOCK
            self.erases[arg] += 1
        return 0


class _Store:
    data = None

    def read(self):
        return self.data

    def write(self, data):
        self.data = data


def _market(prod, sales):
    """A stall's records: per sale a scan, the weighing it links to and the zero the
    emptied pan leaves; the gateway acknowledges each sale's records (window 8)."""
    for _ in range(sales):
        prod.emit("scan", "SCAN-1", SCAN)
        prod.emit("weighing", "NAWI-1", WEIGHING)
        prod.emit("zero", "NAWI-1", ZERO)
        prod.outbox.ack(prod.prev)


def test_flash_wear_per_record_on_littlefs():
    dev = CountingBlocks(24)  # 96 KiB: code and config files need no room here
    vfs.VfsLfs2.mkfs(dev)
    mount = "/wear_test"
    vfs.mount(vfs.VfsLfs2(dev), mount)
    try:
        box = Outbox(mount + "/outbox", seg_bytes=4096, max_bytes=65536, reserve_bytes=4096)
        prod = Producer(NODE, bytes(32), SeqCounter(_Store()), box,
                        Clock(lambda: 0, lambda a, b: a - b), lambda line: None)
        _market(prod, 10)  # past the first segments: the steady state is measured
        erased, programmed, made = sum(dev.erases), dev.programmed, prod.made
        _market(prod, 100)
        n = prod.made - made
        per_rec_x100 = (sum(dev.erases) - erased) * 100 // n
        bytes_per_rec = (dev.programmed - programmed) // n
        last = box.segments[-1]
        print("flash wear: %d records of %d bytes on flash on average: %d.%02d erases and "
              "%d bytes programmed per record; erases per block %d..%d" % (
                  n, last.size // last.count, per_rec_x100 // 100, per_rec_x100 % 100,
                  bytes_per_rec, min(dev.erases), max(dev.erases)))
        # littlefs copies the unfinished last block of a file to a fresh, erased block
        # on every append after a sync (copy-on-write): about one erase per record. A
        # rewrite per record (a pointer file, a rewritten segment) would show as >= 2.
        assert 70 <= per_rec_x100 <= 130, per_rec_x100
        assert bytes_per_rec < BLOCK
        # Dynamic wear levelling: the erases are spread over the free blocks, none is
        # erased far more often than the mean.
        mean = sum(dev.erases) // len(dev.erases)
        assert max(dev.erases) <= 2 * mean + 2, dev.erases
        again = Outbox(mount + "/outbox", seg_bytes=4096)  # every record is on flash
        assert again.last_seq() == prod.prev
    finally:
        remove_tree(mount + "/outbox")
        for name in os.listdir(mount):
            os.remove(mount + "/" + name)
        vfs.umount(mount)

