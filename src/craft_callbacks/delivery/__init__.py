"""Delivery: how a run's values leave the process, each once.

One idea per module: :mod:`~craft_callbacks.delivery.destination` (where a
run's values go and where each one is), :mod:`~craft_callbacks.delivery.worker`
(the daemon thread), :mod:`~craft_callbacks.delivery.retry` (which errors to
retry and how long to wait), :mod:`~craft_callbacks.delivery.spool` (the
durable file), :mod:`~craft_callbacks.delivery.remote` (a remote reached
through the spool, reconciled by count), :mod:`~craft_callbacks.delivery.craft_ai`
and :mod:`~craft_callbacks.delivery.digitalhub` (the two remotes),
:mod:`~craft_callbacks.delivery.factory` (the destination for a sink) and
:mod:`~craft_callbacks.delivery.sync` (delivering a spool later).
"""
