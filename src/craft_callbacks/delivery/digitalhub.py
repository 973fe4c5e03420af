"""Delivery to a DigitalHub run or model: spooled, retried, reconciled by each series' length.

Spool keys of DigitalHub entities are ``digitalhub:`` and the entity's key,
so ``craft-callbacks sync`` finds the entity a spooled list was recorded for.
"""

from __future__ import annotations

from typing import Final

from craft_callbacks.delivery.remote import RemoteDestination
from craft_callbacks.delivery.spool import Spool
from craft_callbacks.sinks.digitalhub import DigitalHubSink

SPOOL_PREFIX: Final = "digitalhub:"  # spool keys of DigitalHub entities: the prefix and the entity's key


class DigitalHubDestination(RemoteDestination):
    """One DigitalHub entity: spooled, retried, and reconciled by each series' length."""

    sink: DigitalHubSink

    def __init__(self, sink: DigitalHubSink, spool: Spool | None) -> None:
        super().__init__(sink, sink.execution_id, sink.description, spool, SPOOL_PREFIX + sink.key)

    def remote_count(self, name: str) -> int:
        return self.sink.list_count(name)


def sink_for_key(key: str) -> DigitalHubSink:
    """The sink of the entity a spool key names (``digitalhub:store://project/run/...``)."""
    import digitalhub as dh

    entity_key = key.removeprefix(SPOOL_PREFIX)
    entity_type = entity_key.removeprefix("store://").split("/")[1]
    return DigitalHubSink(getattr(dh, f"get_{entity_type}")(entity_key))
