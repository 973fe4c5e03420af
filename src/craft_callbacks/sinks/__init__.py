"""Sinks: where a run's metrics land (the platform, DigitalHub, the local store, memory)."""

from craft_callbacks.sinks.digitalhub import DigitalHubSink
from craft_callbacks.sinks.local_store import LocalStore
from craft_callbacks.sinks.memory import MemorySink

__all__ = ["DigitalHubSink", "LocalStore", "MemorySink"]
