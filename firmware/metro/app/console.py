# Service console: JSON-lines commands on a stream (a board's USB serial, the host's
# stdin), for what an installer or a verification officer does on a running node
# (what the node prints on the same console: app/echo.py):
#   {"param": {"name": N, "value": V, "by": WHO}}   app/params.change: an audit event
#   {"seal": "open" | "closed"}                      app/params.seal: an audit event
#   {"check": {"reference": V, "ref_id": ID, "inst": I}}  a check record (an inspector):
#       a scale's stable load against a test weight of V (base unit), or a dispenser's
#       last delivery against the V mL a proving measure shows; "inst" picks the
#       instrument on a node with both (default: the scale)
# Any other command goes to `extra` (on the host, the simulated instruments of
# sim/driven.py), which returns None when done or the reason it refused.
# Invariant: a refused command changes nothing and is answered with one line
# {"error": "..."} naming what was wrong; the console never stops the node.

import json


def handle(node, line, extra=None):
    """One command line; None when done, else why it was refused."""
    from . import params

    try:
        cmd = json.loads(line)
    except ValueError:
        return "command: not a JSON line"
    if not isinstance(cmd, dict) or not cmd:
        return "command: expected a JSON object"
    try:
        if "param" in cmd:
            p = cmd["param"]
            if not isinstance(p, dict) or "name" not in p or "value" not in p:
                return "param: expected {\"name\": ..., \"value\": ...}"
            params.change(node, p["name"], p["value"], p.get("by", "console"))
        elif "check" in cmd:
            c = cmd["check"]
            ref = c.get("reference") if isinstance(c, dict) else None
            if not isinstance(ref, int) or isinstance(ref, bool) or ref <= 0:
                return "check: expected {\"reference\": V} (a positive integer, base unit)"
            for name in ("ref_id", "inst"):
                if not isinstance(c.get(name, ""), str):
                    return "check.%s: expected text" % name
            node.check(ref, c.get("ref_id"), c.get("inst"))
        elif "seal" in cmd:
            params.seal(node, cmd["seal"], cmd.get("by", "console"))
        elif extra is not None:
            return extra(cmd)
        else:
            return "command: unknown %s" % ", ".join(cmd)
    except ValueError as err:  # ParamError, or a bad value for a simulated instrument
        return str(err)
    return None


async def console_loop(node, stream, extra=None, out=print):
    import asyncio  # here: handle() alone runs without it (host tests)

    reader = asyncio.StreamReader(stream)
    while True:
        line = await reader.readline()
        if not line:
            return  # the console was closed; the node goes on
        line = line.strip()
        if line:
            why = handle(node, line, extra)
            if why:
                out(json.dumps({"error": why}))
