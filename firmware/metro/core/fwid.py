# Firmware identification computed on the device (OIML D 31 6.2.1, WELMEC P2):
# version + SHA-256 over the legally relevant modules, file name and bytes, in sorted
# order, so that any change to one byte of legal code gives a new id.
# Invariant: the same files give the same id on any interpreter.

import hashlib
import os
from binascii import hexlify

LEGAL_PACKAGES = ("wire", "core", "drivers")


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


def digest(root, names):
    h = hashlib.sha256()
    buf = bytearray(512)
    for name in names:
        h.update(name.encode() + b"\x00")
        with open(root + "/" + name, "rb") as f:
            while True:
                n = f.readinto(buf)
                if not n:
                    break
                h.update(bytes(buf[:n]) if n < len(buf) else buf)
    return hexlify(h.digest()).decode()


def firmware_id(version, root):
    """("metro 0.1.0+<16 hex>", full sha-256 hex) for the modules under root."""
    full = digest(root, legal_files(root))
    return "%s+%s" % (version, full[:16]), full
