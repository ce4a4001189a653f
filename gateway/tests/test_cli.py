"""`metrotrace gateway keygen` and `provision-node`: files a board and a gateway accept."""

import json
import stat

import pytest

from metrotrace.firmware.metro.app import config as board_config
from metrotrace.gateway.config import load, load_node_keys
from metrotrace.gateway.errors import ConfigError
from metrotrace.gateway.keys import KeyRing
from metrotrace.tools.cli import main


@pytest.fixture
def gateway_toml(tmp_path):
    path = tmp_path / "gateway.toml"
    path.write_text('[gateway]\nid = "market-1"\nsite = "market"\n')
    return path


def test_keygen_then_rotate(gateway_toml, capsys):
    assert main(["gateway", "keygen", "--config", str(gateway_toml)]) == 0
    first = json.loads(capsys.readouterr().out)["kid"]
    assert main(["gateway", "keygen", "--config", str(gateway_toml), "--rotate",
                 "--overlap-hours", "1"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["kid"] != first and {k["kid"] for k in out["keys"]} == {first, out["kid"]}
    assert KeyRing.load(load(gateway_toml).key_dir).signing(2**62).kid.hex() == out["kid"]


def test_provision_node_registers_the_key_and_writes_a_board_config(gateway_toml, tmp_path,
                                                                     capsys):
    board = tmp_path / "board.json"
    assert main(["gateway", "provision-node", "--config", str(gateway_toml), "--node",
                 "E6614103E7513A2F", "--out", str(board)]) == 0
    cfg = board_config.load(str(board))  # the firmware's own config reader accepts it
    keys = load_node_keys(load(gateway_toml).node_keys)
    assert keys == {bytes.fromhex("e6614103e7513a2f"): bytes.fromhex(cfg["key"])}
    wifi = tmp_path / "wifi-board.json"
    assert main(["gateway", "provision-node", "--config", str(gateway_toml), "--node", "0a0b",
                 "--link", "mqtt", "--out", str(wifi)]) == 0
    assert json.loads(wifi.read_text())["mqtt"]["up"] == "metrotrace/v1/node/0a0b/up"
    assert len(load_node_keys(load(gateway_toml).node_keys)) == 2
    for path in (board, load(gateway_toml).node_keys):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(ConfigError, match="already provisioned"):
        main(["gateway", "provision-node", "--config", str(gateway_toml), "--node",
              "e6614103e7513a2f", "--out", str(board)])
