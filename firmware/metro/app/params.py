# Legally relevant parameters changed on a running node, and the audit trail they leave.
#
# One path for every board and the host (app/console.py calls it): change() checks the
# new value, applies it to the live instrument, stores it durably and then makes the
# audit event (OIML D 31 6.2.3.6, WELMEC 7.2 "event logger"): "cal_change" for the scale
# calibration, "param_change" for the others, detail {param, old, new, by, n}. n is the
# event counter: kept on flash with the values, it only ever grows, so an inspector who
# noted it at the last verification sees at a glance whether anything changed since.
# Saved values (data_dir/params.json, replaced atomically) override config.json at boot
# (load(); node.params is plain data, so this module need not stay in memory).
# Invariant: a value refused by its check changes nothing and leaves no event; an
# accepted one is durable before its event is made.

import json

from ..core.store import FileStore

# name -> (config section, key, smallest legal value); scale.cal.* is the calibration.
NAMES = {
    "scale.cal.zero_raw": ("scale", "zero_raw", -0x800000),
    "scale.cal.span_raw": ("scale", "span_raw", 1),
    "scale.cal.span_load": ("scale", "span_load", 1),
    "dispenser.kfactor": ("dispenser", "kfactor", 1),
    "dispenser.d": ("dispenser", "d", 1),
    "dispenser.idle_ms": ("dispenser", "idle_ms", 100),
    "dispenser.max_hz": ("dispenser", "max_hz", 1),
}
SEAL_STATES = ("open", "closed")


class ParamError(ValueError):
    pass


def load(data_dir, cfg):
    """At boot: the saved values laid over cfg; returns node.params {n, set, path}."""
    path = data_dir + "/params.json"
    raw = FileStore(path).read()
    try:
        saved = json.loads(raw) if raw else {}
    except ValueError:
        raise ParamError("params.json: damaged; refusing to boot on unknown parameters")
    values = saved.get("set", {})
    for name in values:
        section, key, _ = NAMES[name]
        part = cfg.get(section)
        if part is not None:
            if name.startswith("scale.cal."):
                part = part.setdefault("cal", {})
            part[key] = values[name]
    return {"n": saved.get("n", 0), "set": values, "path": path}


def _live(node, name):
    section, key, _ = NAMES[name]
    target = node.scale and node.scale.cal if section == "scale" else node.dispenser
    if not target:
        raise ParamError("param %s: this node has no %s" % (name, section))
    if section == "dispenser" and target.active:
        raise ParamError("param %s: a dispense is running" % name)
    return target, key


def change(node, name, value, by="console"):
    """Apply one parameter change; the seq of its audit event (None if not stored)."""
    if name not in NAMES:
        raise ParamError("param.name: unknown %r (one of %s)" % (name, ", ".join(NAMES)))
    if not isinstance(value, int) or isinstance(value, bool) or value < NAMES[name][2]:
        raise ParamError("param.value: %s takes an integer >= %d" % (name, NAMES[name][2]))
    target, key = _live(node, name)
    old = getattr(target, key)
    saved = node.params
    saved["set"][name] = value
    saved["n"] += 1
    FileStore(saved["path"]).write(json.dumps({"n": saved["n"], "set": saved["set"]}).encode())
    setattr(target, key, value)
    code = "cal_change" if name.startswith("scale.cal.") else "param_change"
    return node.producer.event(code, {"param": name, "old": old, "new": value,
                                      "by": str(by)[:32], "n": saved["n"]})


def seal(node, state, by="console"):
    """The verification seal opened or closed (a switch behind the seal, or the console)."""
    if state not in SEAL_STATES:
        raise ParamError("seal: one of open, closed")
    return node.producer.event("seal", {"state": state, "by": str(by)[:32]})
