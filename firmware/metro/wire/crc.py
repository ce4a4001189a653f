# CRC-32 (IEEE 802.3, the zlib/PNG polynomial 0xEDB88320 reflected) for UART frames.
# binascii.crc32 where the port has it; a table-free fallback where it does not.

try:
    from binascii import crc32 as _native_crc32

    _NATIVE = True
except ImportError:  # ports built without MICROPY_PY_BINASCII_CRC32
    _NATIVE = False


def crc32_soft(data, crc=0):
    crc ^= 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0xEDB88320 & -(crc & 1))
    return crc ^ 0xFFFFFFFF


def crc32(data):
    if _NATIVE:
        return _native_crc32(data) & 0xFFFFFFFF
    return crc32_soft(data)
