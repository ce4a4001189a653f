# Firmware identification computed on the device (OIML D 31 6.2.1, WELMEC P2):
# version + SHA-256 over the legally relevant modules, file name and bytes, in sorted
# order, so that any change to one byte of legal code gives a new id.
# The version is VERSION below: it lives in a legal module, so it is part of the hash
# and cannot be changed without changing the id (config.json may only repeat it,
# app/config.py refuses a different one).
# Code frozen into the firmware image (the small-heap build, docs/firmware.md "Memory")
# has no module files: then the id hashes the image the code runs from, read on the
# device (the unix interpreter binary; the running ESP32 app image up to its end).
# Invariants: the same files give the same id on any interpreter; an id is never made
# over nothing: a legal package with no module files while this module itself came from
# a file (a half-done deploy, a ROMFS mounted elsewhere) raises FirmwareIdError, as does
# frozen code on a port whose image cannot be read here.

import hashlib
import os
import sys
from binascii import hexlify

VERSION = "metro 0.1.0"
LEGAL_PACKAGES = ("wire", "core", "drivers")


class FirmwareIdError(ValueError):
    pass


def package_root():
    """The metro package folder this module was loaded from ("" if not from a file)."""
    path = __file__
    cut = path.rfind("/core/")
    return path[:cut] if cut >= 0 else ""


def legal_files(root):
    """Paths of the legally relevant modules under root (the metro package)."""
    out = []
    for pkg in LEGAL_PACKAGES:
        base = root + "/" + pkg
        try:
            names = os.listdir(base)
        except OSError:
            continue
        for name in names:
            if name.endswith(".py") or name.endswith(".mpy"):
                out.append(pkg + "/" + name)
    out.sort()
    return out


def _hash_file(h, f, buf):
    while True:
        n = f.readinto(buf)
        if not n:
            break
        h.update(bytes(buf[:n]) if n < len(buf) else buf)


def digest(root, names):
    h = hashlib.sha256()
    buf = bytearray(512)
    for name in names:
        h.update(name.encode() + b"\x00")
        with open(root + "/" + name, "rb") as f:
            _hash_file(h, f, buf)
    return hexlify(h.digest()).decode()


def frozen():
    """True when this module was not loaded from a file: its code is in the image."""
    try:
        os.stat(__file__)
        return False
    except OSError:
        return True


def esp_image_length(read):
    """Bytes of an ESP32 app image (esp_image_format.h) from its header; read(offset, n)
    gives n bytes of the partition. Segments, then padding to 16 with the checksum as
    the last byte, then a SHA-256 when the header says one is appended."""
    head = read(0, 24)
    if head[0] != 0xE9:
        raise FirmwareIdError("fwid: no ESP32 app image in the running partition")
    end = 24
    for _ in range(head[1]):
        seg = read(end, 8)
        end += 8 + (seg[4] | seg[5] << 8 | seg[6] << 16 | seg[7] << 24)
    end += 16 - end % 16  # padding then the checksum byte end on a 16-byte boundary
    return end + (32 if head[23] == 1 else 0)


def image_digest():
    """SHA-256 hex of the running firmware image, where frozen code lives."""
    h = hashlib.sha256()
    if sys.platform == "linux":  # the unix port: the interpreter with its frozen modules
        with open("/proc/self/exe", "rb") as f:
            _hash_file(h, f, bytearray(512))
        return hexlify(h.digest()).decode()
    if sys.platform == "esp32":
        from esp32 import Partition

        part = Partition(Partition.RUNNING)

        def read(offset, n):
            out = bytearray(n)
            part.readblocks(offset // 4096, out, offset % 4096)
            return out

        size = esp_image_length(read)
        for offset in range(0, size, 512):
            h.update(read(offset, min(512, size - offset)))
        return hexlify(h.digest()).decode()
    raise FirmwareIdError("fwid: the code is frozen and the %s image cannot be read for its "
                          "hash" % sys.platform)


def firmware_id(version, root):
    """("metro 0.1.0+<16 hex>", full sha-256 hex) for the modules under root, or for the
    firmware image when the code is frozen; raises FirmwareIdError naming the package
    when one of LEGAL_PACKAGES has no module file."""
    names = legal_files(root)
    if not names and frozen():
        full = image_digest()
        return "%s+%s" % (version, full[:16]), full
    for pkg in LEGAL_PACKAGES:
        if not [n for n in names if n.startswith(pkg + "/")]:
            raise FirmwareIdError("fwid: no module files in %s/%s: nothing to hash (frozen "
                                  "code?)" % (root or ".", pkg))
    full = digest(root, names)
    return "%s+%s" % (version, full[:16]), full
