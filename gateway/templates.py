"""Byte templates of records: where a record's CBOR structure sits and where its values do.

A node encodes every record of one kind the same way, so consecutive records differ only
in the bytes of their values: integer arguments and string contents. `walk(data)` reads
one record's bytes and returns its template: a mask over the structural bytes (map and item
heads, keys, string lengths, the version and kind; of an integer held in its head byte,
the major type bits only), the structural bytes themselves, and a `struct` format that
reads every value that varies.

Invariant: a record `r` with `len(r) == len(data)` and
`int.from_bytes(r) & template.mask == template.expect`, each of whose HEAD bytes holds an
integer (below 24 for an unsigned one, 0x20..0x37 for a negative one: the reader checks
this), has exactly the structure of `data`, item for item (same keys in the same order,
same major types, same argument widths, same string lengths, one item ending at its last
byte), so `struct.unpack(template.fmt, r)` yields exactly the values a CBOR decoder would
give, once text is decoded as strict UTF-8 and a negative integer's argument n is read as
-1 - n. Only plain records are walked: a map of
at most 255 entries, distinct integer keys below 24, values that are integers, byte strings
or text; anything else (tags, floats, nulls, nested items, indefinite lengths) -> None.

`reader(template)` is that reading as Python source (the HEAD checks, -1 - n, strict UTF-8),
for a caller to compile with its own checks after it: the gateway's fast path
(`fastrecord.py`, which also asks for `shortest`: a wide integer argument that would fit a
shorter head is not the deterministic encoding the firmware insists on) and the server's
(`server/ingest/columns.py`) share it, as they share `walk`. `value_range(field)` says
which values such a reader lets through, so that a caller's checks can leave out what
the layout settles (a byte string's length, a two-byte integer's sign and size).
"""

from __future__ import annotations

from typing import NamedTuple

UINT, NINT, BYTES, TEXT = 0, 1, 2, 3  # CBOR major types
_WIDTH = {24: ("B", 1), 25: ("H", 2), 26: ("I", 4), 27: ("Q", 8)}
CONSTANT_KEYS = (0, 1)  # version and kind: always part of the structure, never a value
# How a field's value is read: from the template (CONST), from its head byte, which the
# mask pins to the major type only (HEAD: the reader must check that the byte holds an
# integer below 24 itself, 0..23 for UINT, 0x20..0x37 for NINT), or from the bytes after
# its head (WIDE: an integer argument, or a string's contents).
CONST, HEAD, WIDE = 0, 1, 2


class Field(NamedTuple):
    key: int
    major: int  # UINT, NINT, BYTES or TEXT
    how: int  # CONST, HEAD or WIDE
    const: int | None = None  # the value, for CONST
    width: int = 0  # WIDE: bytes of an integer's argument (1, 2, 4 or 8), or of a string


class Template(NamedTuple):
    mask: int
    expect: int
    fmt: str  # big-endian struct format over the whole record; structure is pad bytes
    fields: tuple[Field, ...]  # in map order; HEAD and WIDE fields are read by fmt, in order


def walk(data: bytes) -> Template | None:
    """The template of one encoded record, or None when it is not a plain map."""
    n = len(data)
    if not n:
        return None
    head = data[0]
    if 0xA0 <= head <= 0xB7:
        count, pos = head - 0xA0, 1
    elif head == 0xB8 and n > 1:
        count, pos = data[1], 2
    else:
        return None
    mask = bytearray(n)  # per byte: 0xFF structure, 0xE0 a HEAD byte's major type, 0 value
    mask[:pos] = b"\xff" * pos
    fmt: list[str] = [">"]
    pad = pos  # structural bytes not yet written into fmt

    def read(code: str) -> None:
        nonlocal pad
        fmt.append(f"{pad}x{code}" if pad else code)
        pad = 0

    fields: list[Field] = []
    for _ in range(count):
        if pos + 2 > n:
            return None
        key = data[pos]
        if key >= 24 or any(f.key == key for f in fields):
            return None  # a wide, non-integer or repeated key: the general decoder's case
        vhead = data[pos + 1]
        major, info = vhead >> 5, vhead & 0x1F
        if major > TEXT or info > 27:
            return None
        mask[pos] = 0xFF
        pad += 1
        width = 0 if info < 24 else _WIDTH[info][1]
        if pos + 2 + width > n:
            return None
        arg = info if info < 24 else int.from_bytes(data[pos + 2:pos + 2 + width], "big")
        if major <= NINT and key in CONSTANT_KEYS:
            mask[pos + 1:pos + 2 + width] = b"\xff" * (1 + width)
            pad += 1 + width
            fields.append(Field(key, major, CONST, arg if major == UINT else -1 - arg))
        elif major <= NINT and info < 24:
            mask[pos + 1] = 0xE0
            read("B")
            fields.append(Field(key, major, HEAD))
        elif major <= NINT:
            mask[pos + 1] = 0xFF
            pad += 1
            read(_WIDTH[info][0])
            fields.append(Field(key, major, WIDE, width=width))
        else:  # a string: its head and length are structure, its contents the value
            mask[pos + 1:pos + 2 + width] = b"\xff" * (1 + width)
            pad += 1 + width
            if pos + 2 + width + arg > n:
                return None
            read(f"{arg}s")
            width += arg
            fields.append(Field(key, major, WIDE, width=arg))
        pos += 2 + width
    if pos != n:
        return None  # trailing bytes: not one item
    if pad:
        fmt.append(f"{pad}x")
    m = int.from_bytes(mask, "big")
    return Template(m, int.from_bytes(data, "big") & m, "".join(fmt), tuple(fields))


# The smallest argument each width holds in the shortest form (RFC 8949 §4.2.1).
_SHORTEST = {1: 24, 2: 1 << 8, 4: 1 << 16, 8: 1 << 32}


def value_range(f: Field, shortest: bool = False) -> tuple[int, int]:
    """The least and greatest value of field `f` (of a string: its length, for text in
    characters) in the records `reader(t, shortest)` reads: what a caller's checks need
    not check again."""
    if f.how == CONST:
        return f.const, f.const
    if f.major == BYTES:
        return f.width, f.width
    if f.major == TEXT:  # UTF-8: one to four bytes a character
        return -(-f.width // 4), f.width
    if f.how == HEAD:
        low, high = 0, 23
    else:
        low, high = (_SHORTEST[f.width] if shortest else 0), (1 << 8 * f.width) - 1
    return (low, high) if f.major == UINT else (-1 - high, -1 - low)


def reader(t: Template, shortest: bool = False) -> str:
    """Function-body source (4-space indent) that binds `f{key}` to every field's value of
    a record `data` laid out like `t`, with `unpack` = `struct.Struct(t.fmt).unpack`, or
    returns None when the HEAD bytes do not hold small integers, when text is not strict
    UTF-8, or (`shortest`) when a WIDE integer's argument would fit a shorter head."""
    read = [f"f{f.key}" for f in t.fields if f.how != CONST]
    lines = [f"    ({', '.join(read)},) = unpack(data)\n"] if read else []
    # The mask pins a head byte's major type; its value must fit in it.
    checks = [f"f{f.key} < 24" if f.major == UINT else f"32 <= f{f.key} < 56"
              for f in t.fields if f.how == HEAD]
    if shortest:
        checks += [f"f{f.key} >= {_SHORTEST[f.width]}" for f in t.fields
                   if f.how == WIDE and f.major <= NINT]
    if checks:
        lines.append(f"    if not ({' and '.join(checks)}):\n        return None\n")
    texts = []
    for f in t.fields:
        v = f"f{f.key}"
        if f.how == CONST:
            lines.append(f"    {v} = {f.const}\n")
        elif f.major == NINT:
            lines.append(f"    {v} = {31 if f.how == HEAD else -1} - {v}\n")
        elif f.major == TEXT:
            texts.append(f"        {v} = {v}.decode()\n")
    if texts:  # text that is not strict UTF-8: the decoder names the fault
        lines += ["    try:\n", *texts, "    except UnicodeDecodeError:\n        return None\n"]
    return "".join(lines)
