# Firmware identification computed on the device (OIML D 31 6.2.1, WELMEC P2):
# version + SHA-256 over the legally relevant modules, file name and bytes, in sorted
# order, so that any change to one byte of legal code gives a new id.
# The version is VERSION below: it lives in a legal module, so it is part of the hash
# and cannot be changed without changing the id (config.json may only repeat it,
# app/config.py refuses a different one).
# Invariants: the same files give the same id on any interpreter; an id is never made
# over nothing: a legal package with no module files (code frozen into the firmware
# image, a ROMFS mounted elsewhere, a half-done deploy) raises FirmwareIdError.

import hashlib
import os
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
    """("metro 0.1.0+<16 hex>", full sha-256 hex) for the modules under root; raises
    FirmwareIdError naming the package when one of LEGAL_PACKAGES has no module file."""
    names = legal_files(root)
    for pkg in LEGAL_PACKAGES:
        if not [n for n in names if n.startswith(pkg + "/")]:
            raise FirmwareIdError("fwid: no module files in %s/%s: nothing to hash (frozen "
                                  "code?)" % (root or ".", pkg))
    full = digest(root, names)
    return "%s+%s" % (version, full[:16]), full
