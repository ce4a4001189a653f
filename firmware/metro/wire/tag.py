# HMAC-SHA256 (RFC 2104) on hashlib.sha256, because MicroPython ships no hmac module.
# Tested against the RFC 4231 vectors under CPython and the MicroPython unix port.

import hashlib

BLOCK = 64
TAG_LEN = 32


def hmac_sha256(key, msg):
    if len(key) > BLOCK:
        key = hashlib.sha256(key).digest()
    key = key + bytes(BLOCK - len(key))
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
    inner.update(msg)
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))
    outer.update(inner.digest())
    return outer.digest()


def equal(a, b):
    # Compare without an early exit so the time taken does not reveal the first bad byte.
    if len(a) != len(b):
        return False
    diff = 0
    for i in range(len(a)):
        diff |= a[i] ^ b[i]
    return diff == 0
