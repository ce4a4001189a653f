"""The HIL harness: transports to a device under test, bridges, and spec-like expects."""
