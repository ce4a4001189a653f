"""Change exactly one byte of a deployed module without changing what it does.

The software identification (firmware/metro/core/fwid.py) must change when any byte
of a legally relevant module changes. To show it on a running device the test changes
one byte that the module still loads with: in a `.py` file a letter of its first
comment; in an `.mpy` file a letter of the source file name that mpy-cross stores in
it (`-s flow.py`: it is what a traceback shows, nothing else reads it).

Invariant: the result has the same length and differs in exactly one byte.
"""

from __future__ import annotations

from pathlib import PurePosixPath


class NoSafeByte(ValueError):
    pass


def _flip(data: bytes, at: int) -> bytes:
    old = data[at]
    new = old + 1 if chr(old).isalpha() and chr(old) not in "zZ" else old - 1
    return data[:at] + bytes([new]) + data[at + 1:]


def one_byte_changed(path: str, data: bytes) -> bytes:
    name = PurePosixPath(path).name
    if name.endswith(".py"):
        hash_at = data.find(b"#")
        if hash_at < 0:
            raise NoSafeByte(f"{path}: no comment to change")
        for at in range(hash_at + 1, data.find(b"\n", hash_at)):
            if chr(data[at]).isalpha():
                return _flip(data, at)
        raise NoSafeByte(f"{path}: its first comment has no letter")
    if name.endswith(".mpy"):
        source = name[: -len(".mpy")] + ".py"
        at = data.find(source.encode())
        if at < 0:
            raise NoSafeByte(f"{path}: the source name {source} is not stored in it")
        return _flip(data, at)  # the first letter of the stored file name
    raise NoSafeByte(f"{path}: neither .py nor .mpy")
