# The stimulus board's commands: one JSON object per line on its USB serial, the same
# vocabulary as the host node's driven mode (firmware/metro/sim/driven.py), plus the
# rig's own: setup (the pin map from rig.yaml), line (indicator output), reset.
# Pure: parse() turns a decoded object into (name, value) or raises CommandError naming
# the field; nothing here touches a pin. Runs on CPython and MicroPython.


class CommandError(ValueError):
    pass


NAMES = ("setup", "load", "nozzle", "pulses", "scan", "line", "reset", "seal")
SETUP_PARTS = ("pulses", "nozzle", "load_cell", "indicator", "scanner", "reset", "seal")


def _int(cmd, name, low, high):
    value = cmd.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise CommandError("%s: an integer in %d..%d" % (name, low, high))
    return value


def _number(cmd, name, low, high):
    value = cmd.get(name)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or \
            not low <= value <= high:
        raise CommandError("%s: a number in %s..%s" % (name, low, high))
    return value


def parse(cmd):
    """A decoded command object -> (name, value)."""
    if not isinstance(cmd, dict) or not cmd:
        raise CommandError("command: expected a JSON object")
    name = None
    for n in NAMES:
        if n in cmd:
            name = n
            break
    if name is None:
        raise CommandError("command: unknown %s" % ", ".join(sorted(cmd)))
    if name == "setup":
        setup = cmd["setup"]
        if not isinstance(setup, dict):
            raise CommandError("setup: expected the rig's pin map")
        for part in setup:
            if part not in SETUP_PARTS:
                raise CommandError("setup.%s: unknown part" % part)
        return name, setup
    if name == "load":
        return name, _int(cmd, "load", -10000000, 10000000)
    if name == "nozzle" or name == "seal":
        states = ("up", "down") if name == "nozzle" else ("open", "closed")
        if cmd[name] not in states:
            raise CommandError("%s: one of %s" % (name, ", ".join(states)))
        return name, cmd[name]
    if name == "pulses":
        return name, (_int(cmd, "pulses", 0, 0xFFFFFFFF), _number(cmd, "hz", 1, 1000000))
    if name == "scan" or name == "line":
        if not isinstance(cmd[name], str) or len(cmd[name]) > 512:
            raise CommandError("%s: text of at most 512 characters" % name)
        return name, cmd[name]
    return name, _int(cmd, "reset", 1, 10000)  # reset: ms the DUT's EN/RUN is held low
