"""Sinks: where a run's metrics land (the platform, the local store, memory)."""

from craft_callbacks.sinks.local_store import LocalStore
from craft_callbacks.sinks.memory import MemorySink

__all__ = ["LocalStore", "MemorySink"]
