# The per-device JSON configuration: defaults, checks, and a printable form.
#
# Invariant: the node key never leaves this module in printable form: redacted()
# replaces it, and errors name the key at fault, never its value.

import json

from ..core.fwid import VERSION

DEFAULTS = {
    "data_dir": "/data",
    "status_s": 60,
    "wdt_ms": 8000,
    "link": {"kind": "uart", "window": 8, "timeout_ms": 2000, "max_timeout_ms": 30000},
    "outbox": {"seg_bytes": 4096, "max_bytes": 262144, "reserve_bytes": 4096,
               "policy": "block"},
}
SECRET = ("key", "password", "wifi_password", "mqtt_password")


class ConfigError(ValueError):
    pass


def _merge(base, over):
    out = {}
    for k in base:
        out[k] = base[k]
    for k in over:
        if isinstance(out.get(k), dict) and isinstance(over[k], dict):
            out[k] = _merge(out[k], over[k])
        else:
            out[k] = over[k]
    return out


def parse(text):
    try:
        raw = json.loads(text)
    except ValueError:
        raise ConfigError("config: not valid JSON")
    if not isinstance(raw, dict):
        raise ConfigError("config: expected an object")
    cfg = _merge(DEFAULTS, raw)
    check(cfg)
    return cfg


def load(path):
    with open(path) as f:
        return parse(f.read())


def _hex(cfg, name, sizes):
    value = cfg.get(name)
    if not isinstance(value, str):
        raise ConfigError("%s: expected hex text" % name)
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise ConfigError("%s: not hex" % name)
    if len(raw) not in sizes:
        raise ConfigError("%s: %d bytes, expected %s" % (name, len(raw), sizes))
    return raw


def _int(value, name, low, high):
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ConfigError("%s: integer from %d to %d" % (name, low, high))


def _check_mqtt(m):
    if not isinstance(m, dict):
        raise ConfigError("link.mqtt: expected an object {broker, port, ...}")
    if not isinstance(m.get("broker"), str) or not m["broker"]:
        raise ConfigError("link.mqtt.broker: host name or address of the site broker")
    _int(m.get("port", 1883), "link.mqtt.port", 1, 65535)
    # 0 would switch keepalive off, and with it the Last Will (MQTT 3.1.1 §3.1.2.10)
    _int(m.get("keepalive_s", 60), "link.mqtt.keepalive_s", 1, 65535)
    cid = m.get("client_id", "metro")
    if not isinstance(cid, str) or not 0 < len(cid) <= 23:
        raise ConfigError("link.mqtt.client_id: 1 to 23 characters (MQTT 3.1.1 §3.1.3.1)")
    for name in ("user", "password"):
        if name in m and not isinstance(m[name], str):
            raise ConfigError("link.mqtt.%s: expected text" % name)
    tls = m.get("tls", False)
    if not (tls is False or (isinstance(tls, dict) and isinstance(tls.get("ca", ""), str))):
        raise ConfigError("link.mqtt.tls: false, or {\"ca\": PEM file path}")


def _check_ntp(n):
    if not isinstance(n, dict) or not isinstance(n.get("host"), str):
        raise ConfigError("ntp.host: expected the NTP server's host name")
    _int(n.get("port", 123), "ntp.port", 1, 65535)
    _int(n.get("every_s", 3600), "ntp.every_s", 1, 86400)
    _int(n.get("retry_s", 10), "ntp.retry_s", 1, 86400)


def check(cfg):
    _hex(cfg, "key", (32,))
    # The firmware version is a constant of the legal code (core/fwid.py), never set by
    # configuration: a config.json may repeat it (tools read it), but only exactly.
    if cfg.setdefault("fw_version", VERSION) != VERSION:
        raise ConfigError("fw_version: %r is not this firmware's version %r (it comes from "
                          "the code; remove the key)" % (cfg["fw_version"], VERSION))
    if "node" in cfg:
        _hex(cfg, "node", tuple(range(1, 17)))
    if cfg["outbox"]["policy"] != "block":
        raise ConfigError("outbox.policy: only \"block\" is offered")
    kind = cfg["link"]["kind"]
    if kind not in ("uart", "tcp", "mqtt"):
        raise ConfigError("link.kind: one of uart, tcp, mqtt")
    if kind == "mqtt":
        _check_mqtt(cfg["link"].get("mqtt"))
    if "ntp" in cfg:
        _check_ntp(cfg["ntp"])
    scale = cfg.get("scale")
    if scale:
        for name in ("inst", "e", "max"):
            if name not in scale:
                raise ConfigError("scale.%s: missing" % name)
        if scale.get("source", "hx711") == "hx711" and "cal" not in scale:
            raise ConfigError("scale.cal: missing (zero_raw, span_raw, span_load)")
    pump = cfg.get("dispenser")
    if pump and not (isinstance(pump.get("kfactor"), int) and pump["kfactor"] > 0):
        raise ConfigError("dispenser.kfactor: positive integer (pulses per 1000 L)")


def redacted(cfg):
    """A copy safe to print or log: secrets replaced."""
    out = {}
    for k in cfg:
        v = cfg[k]
        if k in SECRET:
            out[k] = "<set>" if v else "<unset>"
        elif isinstance(v, dict):
            out[k] = redacted(v)
        else:
            out[k] = v
    return out
