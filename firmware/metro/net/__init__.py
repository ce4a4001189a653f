# Networking for Wi-Fi boards: MQTT 3.1.1 (packets sans-IO in mqtt.py, one asyncio
# connection in client.py, the node's uplink with reconnect in uplink.py) and SNTP
# (packets in sntp.py, the asyncio query in timesync.py).
#
# Errors:  OSError                  the socket failed (the platform's own)
#            +-- mqtt.MQTTError     the broker broke the protocol or refused us
# MQTTError is an OSError on purpose: both mean "this connection is unusable, drop it
# and reconnect", so the reconnect layer catches one class.
