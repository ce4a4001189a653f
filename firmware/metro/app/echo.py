# The console line of a stored record (Producer.echo), on a board's USB serial and the
# host node's stdout: {"rec": {"kind", "seq", "prev", "t", "tq", "inst", <fields>}},
# bytes shown as text (hex if not UTF-8), so a test or an installer sees on the
# console what the gateway receives. Its own module: the host loads it without the
# service console (app/console.py), which only a driven host run needs.

import json


def _text(v):
    if isinstance(v, bytes):
        try:
            return v.decode()
        except UnicodeError:
            return v.hex()
    if isinstance(v, dict):
        return {k: _text(v[k]) for k in v}
    return v


def echo(kind, seq, prev, t, tq, inst, fields):
    """The console line of a stored record: {"rec": {...}}, bytes shown as text."""
    rec = {"kind": kind, "seq": seq, "prev": prev, "t": t, "tq": tq}
    if inst is not None:
        rec["inst"] = inst
    for k in fields:
        rec[k] = _text(fields[k])
    print(json.dumps({"rec": rec}))
