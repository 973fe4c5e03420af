"""The destination for a sink: the one place that knows every concrete sink.

The recorder gives what the user passed (``"auto"``, a ``LocalStore``, a
``CraftAiSdk``, a ``DigitalHubSink``, any object with the SDK's two methods)
and the run's settings; it gets back a :class:`Destination`, opened, with its
spool when it is a remote.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from craft_callbacks.delivery.craft_ai import CraftAiDestination
from craft_callbacks.delivery.destination import Destination, Sink, StoreDestination
from craft_callbacks.delivery.digitalhub import DigitalHubDestination
from craft_callbacks.delivery.remote import RemoteDestination
from craft_callbacks.delivery.spool import Spool, default_spool_path
from craft_callbacks.exceptions import DeliveryWarning, LocalStoreError
from craft_callbacks.sinks.auto import platform_execution_id, resolve_auto_sink
from craft_callbacks.sinks.craft_ai import is_craft_ai_sdk
from craft_callbacks.sinks.digitalhub import DigitalHubSink
from craft_callbacks.sinks.local_store import LocalStore, new_execution_id


def resolve_sink(sink: Any, store_path: str | os.PathLike[str] | None) -> Any:
    """The concrete sink for ``sink`` ("auto", a LocalStore or an SDK-like object); raises on bad set-up."""
    if isinstance(sink, str):
        if sink != "auto":
            raise ValueError(
                f"sink must be 'auto', a LocalStore or an object with the SDK's methods, not {sink!r}"
            )
        return resolve_auto_sink(store_path)
    if isinstance(sink, (LocalStore, Sink)):
        return sink
    raise TypeError(
        f"sink {sink!r} has no record_metric_value / record_list_metric_values methods; "
        "give a CraftAiSdk, a LocalStore, a MemorySink or 'auto'"
    )


@dataclass(frozen=True)
class RunSettings:
    """What the recorder was told about the run, for choosing and opening its destination."""

    store_path: str | os.PathLike[str] | None
    request_timeout: float
    pipeline_name: str | None
    deployment_name: str | None
    execution_id: str | None
    hyperparameters: Mapping[str, Any] | None
    max_list_values: int  # the per-list cap a remote's last guard keeps every request under


def destination_for(sink: Any, run: RunSettings) -> Destination:
    """The opened destination of a run for a concrete sink (see :func:`resolve_sink`)."""
    if isinstance(sink, LocalStore):
        local_run = sink.start_execution(
            run.pipeline_name, run.deployment_name, run.hyperparameters, run.execution_id
        )
        return StoreDestination(sink, local_run, f"local store {sink.path}")
    if is_craft_ai_sdk(sink):
        platform_run = platform_execution_id()  # the SDK writes only to its own execution
        if not platform_run:
            warnings.warn(
                "craft_callbacks: a CraftAiSdk was given but this process is not inside a Craft AI "
                "execution, where the platform records nothing; the metrics go to the local store "
                "instead (sink='auto' chooses for you)",
                DeliveryWarning,
                stacklevel=4,
            )
            return destination_for(LocalStore(run.store_path), run)
        remote: RemoteDestination | None = CraftAiDestination(sink, platform_run, None, run.request_timeout)
    elif isinstance(sink, DigitalHubSink):
        remote = DigitalHubDestination(sink, None)
    else:
        remote = None
    if remote is not None:
        remote.cap = run.max_list_values
        open_spool(remote, run.store_path)
        destination: Destination = remote
    else:
        destination = Destination(
            sink,
            run.execution_id or getattr(sink, "execution_id", None) or new_execution_id(),
            getattr(sink, "description", None) or type(sink).__name__,
        )
    if run.hyperparameters:
        destination.record_hyperparameters(dict(run.hyperparameters))
    return destination


def open_spool(destination: RemoteDestination, store_path: str | os.PathLike[str] | None) -> None:
    """Give a remote destination the durable spool beside the store; one warning when it cannot.

    Delivery to a reachable remote goes on without it: an unusable spool
    costs durability, never the metrics.
    """
    try:
        destination.spool = Spool(default_spool_path(store_path))
    except LocalStoreError as error:
        destination.spool_error = str(error)
        warnings.warn(
            f"craft_callbacks: {error}; metrics go to {destination.description} without a durable copy: "
            "values it has not accepted are lost if this process dies or it stays down past close",
            DeliveryWarning,
            stacklevel=5,
        )
