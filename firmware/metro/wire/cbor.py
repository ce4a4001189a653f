# Minimal deterministic CBOR (RFC 8949) for node records: the subset a board needs.
#
# Invariant: encode() emits only the core deterministic encoding of RFC 8949 §4.2.1
# (shortest integer heads, definite lengths, map keys sorted bytewise), and decode()
# accepts only what encode() can emit. Anything else raises ValueError, so a record
# has exactly one byte form and its HMAC tag is checked over the bytes received,
# never over a re-encoding.
#
# Supported: unsigned and negative integers up to 64 bits, byte strings, text strings,
# arrays, maps with integer or text keys, False, True, None. No floats, no tags: legal
# values are integers in base units (DESIGN.md).

import struct

MAX_DEPTH = 4
MAX_ITEMS = 64


def _head(major, n, out):
    if n < 24:
        out.append((major << 5) | n)
    elif n < 0x100:
        out.append((major << 5) | 24)
        out.append(n)
    elif n < 0x10000:
        out.append((major << 5) | 25)
        out.extend(struct.pack(">H", n))
    elif n < 0x100000000:
        out.append((major << 5) | 26)
        out.extend(struct.pack(">I", n))
    elif n < 0x10000000000000000:
        out.append((major << 5) | 27)
        out.extend(struct.pack(">Q", n))
    else:
        raise ValueError("integer out of 64-bit range")


def _enc(obj, out, depth):
    if depth > MAX_DEPTH:
        raise ValueError("nesting too deep")
    if obj is None:
        out.append(0xF6)
    elif obj is True:
        out.append(0xF5)
    elif obj is False:
        out.append(0xF4)
    elif isinstance(obj, int):
        if obj >= 0:
            _head(0, obj, out)
        else:
            _head(1, -1 - obj, out)
    elif isinstance(obj, (bytes, bytearray)):
        _head(2, len(obj), out)
        out.extend(obj)
    elif isinstance(obj, str):
        b = obj.encode()
        _head(3, len(b), out)
        out.extend(b)
    elif isinstance(obj, (list, tuple)):
        _head(4, len(obj), out)
        for item in obj:
            _enc(item, out, depth + 1)
    elif isinstance(obj, dict):
        # Keys sorted by their encoded bytes (RFC 8949 §4.2.1): MicroPython dicts do
        # not keep insertion order, so the order must come from the keys themselves.
        pairs = []
        for k in obj:
            kb = bytearray()
            _enc(k, kb, depth + 1)
            pairs.append((bytes(kb), obj[k]))
        pairs.sort(key=lambda p: p[0])
        _head(5, len(pairs), out)
        for kb, v in pairs:
            out.extend(kb)
            _enc(v, out, depth + 1)
    else:
        raise ValueError("cannot encode " + type(obj).__name__)


def encode(obj):
    out = bytearray()
    _enc(obj, out, 0)
    return bytes(out)


def _arg(buf, pos, info):
    # Returns (value, new_pos); rejects non-shortest heads (RFC 8949 §4.2.1).
    if info < 24:
        return info, pos
    if info == 24:
        size = 1
    elif info == 25:
        size = 2
    elif info == 26:
        size = 4
    elif info == 27:
        size = 8
    else:
        raise ValueError("indefinite or reserved length")
    end = pos + size
    if end > len(buf):
        raise ValueError("truncated")
    n = 0
    for i in range(pos, end):
        n = (n << 8) | buf[i]
    if n < (24 if size == 1 else 1 << (4 * size)):
        raise ValueError("non-shortest integer")
    return n, end


def _dec(buf, pos, depth):
    if depth > MAX_DEPTH:
        raise ValueError("nesting too deep")
    if pos >= len(buf):
        raise ValueError("truncated")
    ib = buf[pos]
    major = ib >> 5
    info = ib & 0x1F
    pos += 1
    if major == 7:
        if info == 20:
            return False, pos
        if info == 21:
            return True, pos
        if info == 22:
            return None, pos
        raise ValueError("unsupported simple value or float")
    n, pos = _arg(buf, pos, info)
    if major == 0:
        return n, pos
    if major == 1:
        return -1 - n, pos
    if major == 2 or major == 3:
        end = pos + n
        if end > len(buf):
            raise ValueError("truncated")
        raw = bytes(buf[pos:end])
        if major == 3:
            try:
                return raw.decode(), end
            except UnicodeError:
                raise ValueError("invalid UTF-8")
        return raw, end
    if n > MAX_ITEMS:
        raise ValueError("too many items")
    if major == 4:
        items = []
        for _ in range(n):
            item, pos = _dec(buf, pos, depth + 1)
            items.append(item)
        return items, pos
    if major == 5:
        d = {}
        prev = b""
        for _ in range(n):
            start = pos
            k, pos = _dec(buf, pos, depth + 1)
            if not isinstance(k, (int, str)) or isinstance(k, bool):
                raise ValueError("map key must be integer or text")
            kb = bytes(buf[start:pos])
            if prev and kb <= prev:
                raise ValueError("map keys not in canonical order")
            prev = kb
            d[k], pos = _dec(buf, pos, depth + 1)
        return d, pos
    raise ValueError("tags are not accepted")


def decode(buf):
    """Decode exactly one item that fills buf; raise ValueError on anything else."""
    obj, pos = _dec(buf, 0, 0)
    if pos != len(buf):
        raise ValueError("trailing bytes")
    return obj
