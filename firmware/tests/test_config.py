# The committed example configurations parse, and printing one never shows the key;
# the firmware id (core/fwid.py) is made from the code, never over nothing.

import os

from fsutil import fresh_dir, remove_tree

from metro.app import config
from metro.core import fwid


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


def test_firmware_version_comes_from_the_code_not_the_config():
    cfg = config.parse('{"key": "%s"}' % ("00" * 32))
    assert cfg["fw_version"] == fwid.VERSION  # filled in from core/fwid.py
    assert config.parse('{"key": "%s", "fw_version": "%s"}' % ("00" * 32, fwid.VERSION))
    try:
        config.parse('{"key": "%s", "fw_version": "metro 9.9.9"}' % ("00" * 32))
    except config.ConfigError as e:
        assert str(e).startswith("fw_version: 'metro 9.9.9' is not"), e
    else:
        raise AssertionError("config.json overrode the firmware version")


def _write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def test_firmware_id_refuses_to_hash_nothing():
    root = fresh_dir("fwid")
    try:
        for missing in ("wire", "core", "drivers"):  # each empty in turn: frozen code
            try:
                fwid.firmware_id(fwid.VERSION, root)
            except fwid.FirmwareIdError as e:
                assert (root + "/" + missing) in str(e), e
            else:
                raise AssertionError("an id over no %s modules" % missing)
            os.mkdir(root + "/" + missing)
            _write(root + "/" + missing + "/a.mpy", missing.encode())
        fw, full = fwid.firmware_id(fwid.VERSION, root)
        assert fw == fwid.VERSION + "+" + full[:16] and len(full) == 64
        _write(root + "/core/a.mpy", b"corE")  # one byte of legal code: a new id
        assert fwid.firmware_id(fwid.VERSION, root)[1] != full
        try:
            fwid.firmware_id(fwid.VERSION, root + "/nowhere")
        except fwid.FirmwareIdError as e:
            assert "nothing to hash" in str(e)
        else:
            raise AssertionError("an id over a missing folder")
    finally:
        remove_tree(root)


def test_the_running_code_finds_and_hashes_its_own_modules():
    root = fwid.package_root()
    assert root.endswith("metro")
    fw, full = fwid.firmware_id(fwid.VERSION, root)
    assert fwid.legal_files(root)[0].startswith("core/")
    assert fw.startswith(fwid.VERSION + "+")
    assert not fwid.frozen()  # loaded from a file: an empty package is an error, not frozen


def _esp_image(sizes, hashed):
    head = bytearray(24)
    head[0], head[1], head[23] = 0xE9, len(sizes), 1 if hashed else 0
    out = bytearray(head)
    for n in sizes:
        out += (0x3F400020).to_bytes(4, "little") + n.to_bytes(4, "little") + bytes(n)
    return out + bytes(64)  # whatever follows the image in the partition


def test_esp32_image_length_runs_to_the_checksum_block_and_the_appended_hash():
    # esptool: segments, padding so that the checksum byte ends a 16-byte block, then
    # the SHA-256 when the header's hash_appended byte is 1.
    for sizes, hashed, length in (([100, 37], True, 224), ([100, 37], False, 192),
                                  ([8, 16], False, 80), ([], False, 32)):
        image = _esp_image(sizes, hashed)
        read = lambda off, n, image=image: image[off:off + n]  # noqa: E731
        assert fwid.esp_image_length(read) == length, sizes
    blank = bytes(4096)
    try:
        fwid.esp_image_length(lambda off, n: blank[off:off + n])
    except fwid.FirmwareIdError as e:
        assert "no ESP32 app image" in str(e)
    else:
        raise AssertionError("a length for an erased partition")
