# A full flash, for real: littlefs (vfs.VfsLfs2, as on an ESP32 or a Pico) on a small
# RAM block device, mounted as the node's data directory, filled until the file system
# itself refuses a write (ENOSPC). MicroPython only (CPython has no vfs): run by
# tests/test_micropython.py through mprun.py; the name keeps pytest from collecting it.

import os

import vfs
from fsutil import remove_tree
from test_node import _codes, _node, _records

from metro.core.outbox import ENOSPC
from metro.wire import record


class RamBlocks:
    """A block device in RAM with the interface littlefs wants (vfs.AbstractBlockDev);
    one bytearray per block, so no large contiguous piece of a small heap is needed."""

    def __init__(self, block_size, count):
        self.block_size = block_size
        self.blocks = [bytearray(block_size) for _ in range(count)]

    def readblocks(self, num, buf, offset=0):
        buf[:] = self.blocks[num][offset:offset + len(buf)]

    def writeblocks(self, num, buf, offset=0):
        self.blocks[num][offset:offset + len(buf)] = buf

    def ioctl(self, op, arg):
        if op == 4:  # block count
            return len(self.blocks)
        if op == 5:  # block size
            return self.block_size
        if op == 6:  # erase
            self.blocks[arg][:] = b"\xff" * self.block_size
        return 0


def _mount(path, blocks=24):
    dev = RamBlocks(512, blocks)  # 12 KiB of flash
    vfs.VfsLfs2.mkfs(dev)
    vfs.mount(vfs.VfsLfs2(dev), path)


def test_full_flash_blocks_measurements_with_flash_full_then_recovers():
    mount = "/flash_full_test"
    _mount(mount)
    try:
        node, ticks, logged = _node(mount + "/data", max_bytes=1 << 20)  # bound >> flash
        scans = 0
        while node.producer.blocked is None:
            ticks.ms += 10
            node.scanned(b"]E04006381333931", ticks.ms)
            scans += 1
            assert scans < 1000, "the flash never filled"
        assert node.producer.blocked == "flash_full" and "flash_full" in logged[0]
        try:  # it really is the file system that is full
            with open(mount + "/probe", "wb") as f:
                for _ in range(8):  # 2 KiB: more than littlefs keeps inline
                    f.write(bytes(256))
        except OSError as err:
            assert err.args[0] == ENOSPC
        else:
            raise AssertionError("the file system still had room")
        assert node.scanned(b"]E04006381333931", ticks.ms) is None  # refused, counted
        assert node.producer.refused == 2
        stored = _records(node)
        assert stored[-1]["kind"] == record.EVENT and stored[-1]["code"] == "flash_full"
        node.sender.acked(node.producer.prev, ticks.ms)  # the gateway catches up
        seq = node.scanned(b"]E04006381333931", ticks.ms)
        assert seq is not None, "measurements did not resume"
        assert _codes(node) == ["buffer_ok"]  # only what follows the acknowledgement
        ok, scan = _records(node)
        assert ok["detail"] == {"refused": 2, "unstored": 0} and scan["seq"] == seq
    finally:
        for name in os.listdir(mount):
            full = mount + "/" + name
            if name == "data":
                remove_tree(full)
            else:
                os.remove(full)
        vfs.umount(mount)
