"""The generated Mosquitto configuration, run by a real Mosquitto: ACLs and passwords hold;
a gateway publishes its status and its own site's alerts, nothing of another's."""

import getpass
import threading
import time

import paho.mqtt.client as mqtt
import pytest

from metrotrace.server import broker


def connect(port, user, password, received=None, subscribe=None):
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"t-{user}",
                         protocol=mqtt.MQTTv5)
    client.username_pw_set(user, password)
    connected = threading.Event()
    results = {}

    def on_connect(c, userdata, flags, reason_code, properties):
        results["connect"] = reason_code
        if subscribe and not reason_code.is_failure:
            c.subscribe(subscribe, qos=1)
        connected.set()

    def on_subscribe(c, userdata, mid, reason_codes, properties):
        results["subscribed"] = True
        connected.set()

    def on_message(c, userdata, msg):
        received.append((msg.topic, msg.payload))

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.connect("127.0.0.1", port)
    client.loop_start()
    assert connected.wait(10)
    return client, results


def test_gateway_may_publish_only_under_its_own_id(tmp_path, start_mosquitto, port):
    files = broker.write_config(tmp_path / "broker", ["market-1", "market-2"],
                                server_users=["metrotrace-server"], port=port, tls=False,
                                run_as=getpass.getuser())  # the 0600 files are ours
    start_mosquitto(files["conf"], port)
    password = {p.stem: p.read_text().strip() for p in files["credentials"].iterdir()}

    received = []
    server, state = connect(port, "metrotrace-server", password["metrotrace-server"],
                            received, subscribe="$share/metrotrace/metrotrace/v1/gw/+/up")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not state.get("subscribed"):
        time.sleep(0.02)
    gw1, _ = connect(port, "market-1", password["market-1"])
    gw1.publish("metrotrace/v1/gw/market-1/up", b"own", qos=1).wait_for_publish(5)
    gw1.publish("metrotrace/v1/gw/market-2/up", b"forged", qos=1).wait_for_publish(5)
    gw1.publish("metrotrace/v1/gw/market-1/up", b"own-2", qos=1).wait_for_publish(5)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and len(received) < 2:
        time.sleep(0.02)
    time.sleep(0.3)  # room for the refused message to arrive, were it let through
    assert received == [("metrotrace/v1/gw/market-1/up", b"own"),
                        ("metrotrace/v1/gw/market-1/up", b"own-2")]

    # a wrong password is refused, and so is an anonymous client
    bad = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bad", protocol=mqtt.MQTTv5)
    bad.username_pw_set("market-1", "not-the-password")
    codes = []
    bad.on_connect = lambda c, u, f, rc, p: codes.append(rc)
    bad.connect("127.0.0.1", port)
    bad.loop_start()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not codes:
        time.sleep(0.02)
    bad.loop_stop()
    assert codes and codes[0].is_failure
    for c in (server, gw1):
        c.disconnect()
        c.loop_stop()


def test_config_turns_on_what_mosquittos_defaults_leave_off(tmp_path):
    files = broker.write_config(tmp_path, ["g1"], ["srv"])
    conf = files["conf"].read_text()
    for line in ("persistence true", "autosave_interval 60", "max_queued_messages 1000000",
                 "allow_anonymous false", "listener 8883", "cafile "):
        assert line in conf
    assert (files["credentials"] / "g1.password").stat().st_mode & 0o777 == 0o600
    again = broker.write_config(tmp_path, ["g1"], ["srv"])  # passwords kept on a rerun
    assert (again["credentials"] / "g1.password").read_text() == \
        (files["credentials"] / "g1.password").read_text()


def test_gateway_publishes_its_status_and_its_sites_alerts_and_nothing_else(tmp_path,
                                                                          start_mosquitto,
                                                                          port):
    files = broker.write_config(tmp_path / "broker", {"market-1": "market",
                                                      "station-7": "station"},
                                server_users=["metrotrace-server"], port=port, tls=False,
                                run_as=getpass.getuser())
    start_mosquitto(files["conf"], port)
    password = {p.stem: p.read_text().strip() for p in files["credentials"].iterdir()}
    received = []
    server, state = connect(port, "metrotrace-server", password["metrotrace-server"],
                            received, subscribe=[("metrotrace/v1/gw/+/status", 1),
                                                 ("metrotrace/v1/alerts/#", 1)])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not state.get("subscribed"):
        time.sleep(0.02)
    gw, _ = connect(port, "market-1", password["market-1"])
    acks = {}
    gw.on_publish = lambda c, u, mid, rc, p: acks.__setitem__(mid, rc)
    sent = {topic: gw.publish(topic, topic.encode(), qos=1) for topic in (
        "metrotrace/v1/gw/market-1/status", "metrotrace/v1/alerts/market",  # its own
        "metrotrace/v1/gw/station-7/status", "metrotrace/v1/alerts/station",  # not its own
        "metrotrace/v1/alerts/market/extra")}
    for info in sent.values():
        info.wait_for_publish(5)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and (len(received) < 2 or len(acks) < len(sent)):
        time.sleep(0.02)
    time.sleep(0.3)  # room for a refused message to arrive, were it let through
    assert sorted(t for t, _ in received) == ["metrotrace/v1/alerts/market",
                                              "metrotrace/v1/gw/market-1/status"]
    refused = {t for t, info in sent.items() if acks[info.mid].is_failure}
    assert refused == {"metrotrace/v1/gw/station-7/status", "metrotrace/v1/alerts/station",
                       "metrotrace/v1/alerts/market/extra"}
    assert all(str(acks[sent[t].mid]) == "Not authorized" for t in refused)
    for c in (server, gw):
        c.disconnect()
        c.loop_stop()


def test_a_site_that_cannot_be_one_topic_level_is_refused(tmp_path):
    with pytest.raises(ValueError, match="site: 'a/b'"):
        broker.write_config(tmp_path, {"g1": "a/b"}, ["srv"])
