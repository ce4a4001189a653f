# The committed example configurations parse, and printing one never shows the key.

from metro.app import config


def _here():
    path = __file__
    return path[: path.rfind("/") + 1] if "/" in path else ""


def test_example_configs_parse():
    for board in ("esp32", "picow"):
        with open(_here() + "../boards/%s/config.json" % board) as f:
            cfg = config.parse(f.read())
        assert cfg["link"]["kind"] == "uart" and cfg["scale"]["inst"] == "NAWI-0042"


def test_redacted_hides_the_key_and_errors_name_the_field():
    cfg = config.parse('{"key": "%s"}' % ("ab" * 32))
    assert "abab" not in repr(config.redacted(cfg))
    for text, field in (('{"key": "zz"}', "key: not hex"), ('{"key": "00"}', "key: 1 bytes"),
                        ('{"key": "%s", "dispenser": {"inst": "P"}}' % ("00" * 32),
                         "dispenser.kfactor"), ("[1]", "config: expected an object")):
        try:
            config.parse(text)
        except config.ConfigError as e:
            assert str(e).startswith(field), e
            assert "abab" not in str(e)
        else:
            raise AssertionError("accepted " + text)
