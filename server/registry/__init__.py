"""Registry: sites, gateways and their Ed25519 keys, nodes and their HMAC keys, instruments.

Loaded from a TOML or JSON file (`metrotrace registry load FILE`) or through the HTTP API;
kept in the store, so every worker and `metrotrace verify` see the same registry.

Errors:

    RegistryError        a registry entry is invalid; the message names the entry and field
"""

from __future__ import annotations


class RegistryError(ValueError):
    """A registry entry is invalid; the message names the entry and the field."""
