"""gateway.toml: defaults, relative paths, and errors that name the field."""

import pytest

from metrotrace.gateway.config import load, load_node_keys, parse
from metrotrace.gateway.errors import ConfigError


def test_minimal_config_gets_defaults_and_paths_relative_to_the_file(tmp_path):
    path = tmp_path / "gateway.toml"
    path.write_text('[gateway]\nid = "market-1"\n[serial]\nports = ["/dev/ttyUSB0"]\n')
    config = load(path)
    assert config.up_topic == "metrotrace/v1/gw/market-1/up"
    assert config.alert_topic == "metrotrace/v1/alerts/market-1"
    assert config.outbox_path == tmp_path / "outbox.sqlite"
    assert config.serial_ports == ("/dev/ttyUSB0",) and config.synchronous == "full"
    assert config.mqtt_client_id == "metrotrace-gw-market-1"


@pytest.mark.parametrize("data, field", [
    ({}, "gateway.id"),
    ({"gateway": {"id": "a/b"}}, "gateway.id"),
    ({"gateway": {"id": "g"}, "batch": {"max_records": 0}}, "batch.max_records"),
    ({"gateway": {"id": "g"}, "batch": {"inflight": "8"}}, "batch.inflight"),
    ({"gateway": {"id": "g"}, "outbox": {"synchronous": "off"}}, "outbox.synchronous"),
    ({"gateway": {"id": "g"}, "serial": {"ports": [1]}}, "serial.ports"),
])
def test_errors_name_the_field(tmp_path, data, field):
    with pytest.raises(ConfigError) as err:
        parse(data, tmp_path)
    assert err.value.field == field


def test_node_key_file(tmp_path):
    path = tmp_path / "nodes.json"
    path.write_text('{"nodes": {"0a0b": {"key": "' + "11" * 32 + '"}}}')
    assert load_node_keys(path) == {b"\x0a\x0b": b"\x11" * 32}
    path.write_text('{"nodes": {"0a0b": {"key": "11"}}}')
    with pytest.raises(ConfigError, match="nodes.0a0b"):
        load_node_keys(path)
