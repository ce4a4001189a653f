"""Noticing registry changes in a running worker: one cheap read of a counter.

Invariant: `changed(now)` reads the store's registry version at most once per `every_ms`
and says True exactly when it differs from the version last seen, so a caller that then
re-reads the registry sees every write committed before that read (the counter is raised
in the same transaction as the write; a write landing between the two reads only makes
the next check reload once more).
"""

from __future__ import annotations

from ..store.rows import Store

CHECK_EVERY_MS = 250  # a revocation reaches a busy worker within this, plus one group


class RegistryWatch:
    def __init__(self, store: Store, every_ms: int = CHECK_EVERY_MS) -> None:
        self.store, self.every_ms = store, every_ms
        self.version = store.registry_version()  # read before the caller's first load
        self._checked_at: int | None = None

    def changed(self, now: int) -> bool:
        if self._checked_at is not None and 0 <= now - self._checked_at < self.every_ms:
            return False
        self._checked_at = now
        version = self.store.registry_version()
        if version == self.version:
            return False
        self.version = version
        return True
