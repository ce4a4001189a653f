# The node application: configuration, the Node that turns instrument readings into
# records, the asyncio tasks that drive it, and the uplinks (UART/TCP frames, MQTT).
