"""The fault matrix (tests/fault_matrix.py): every failure mode, each value once, messages true.

Each fault runs a short training through the real craft-ai-sdk client into
the platform emulator. The platform's lists must equal the values logged, in
order, each once (after ``craft-callbacks sync`` where the fault outlasted
the run), and the run's summary and warnings must say how many values reached
the platform, how many are in the spool and how many were lost: the numbers
must be the true ones.
"""

from __future__ import annotations

import pytest

from craft_callbacks.delivery.sync import sync_spool
from fault_matrix import FAULTS, SPOOL, Fault, kill_sync, kill_training_during_outage, run_fault, said
from platform_emulator import PlatformEmulator


@pytest.mark.parametrize("fault", FAULTS, ids=[fault.name for fault in FAULTS])
def test_each_value_arrives_once_in_order_and_every_message_tells_where_values_are(
    fault: Fault, platform: PlatformEmulator
) -> None:
    outcome = run_fault(fault, platform)

    assert fault.evidence(outcome), f"the fault never happened: {outcome.statuses} {outcome.warnings}"
    assert outcome.exact, (outcome.fault, outcome.delivered, outcome.duplicated, outcome.lost)
    assert platform.store.scalars[("exec-test-1", "accuracy")] == 0.75
    assert platform.store.scalars[("exec-test-1", "loss")] == outcome.logged["loss"][-1]
    reached, in_spool, lost = said(outcome.summary)
    assert reached == sum(len(values) for values in outcome.stored_at_close.values()), outcome.summary
    assert in_spool == outcome.spooled_at_close, outcome.summary
    assert lost == 0, outcome.summary
    assert reached + in_spool == outcome.values_logged, outcome.summary
    for message in outcome.warnings:
        if "reached" in message:
            assert said(message) == (reached, in_spool, lost), message
    retrying = [message for message in outcome.warnings if "retrying" in message]
    assert len(retrying) <= 1, retrying  # once per run, not once per failure
    if outcome.sync is not None:  # the fault outlasted the run: sync delivered the spooled rest
        assert outcome.sync.complete, outcome.sync.lines()
        assert sum(outcome.sync.values.values()) == in_spool
        assert any(f"craft-callbacks sync --spool {SPOOL}" in message for message in outcome.warnings)
    else:
        assert in_spool == 0
    again = sync_spool(SPOOL, force=True) if SPOOL.is_file() else None
    if again is not None:  # what the spool still holds is already on the platform: nothing resent
        assert sum(again.values.values()) == 0, again.lines()
    assert outcome.exact


def test_a_full_spool_disk_and_an_unwritable_spool_folder_say_so_once(platform: PlatformEmulator) -> None:
    for fault in FAULTS:
        if fault.name not in ("full spool disk", "unwritable spool folder"):
            continue
        outcome = run_fault(fault, platform)
        platform.store.clear()
        about_spool = [message for message in outcome.warnings if "without a durable copy" in message]
        assert len(about_spool) == 1, outcome.warnings
        assert "spool" in about_spool[0] and "craft_metrics" in about_spool[0]
        assert not [m for m in outcome.warnings if "craft-callbacks sync" in m], outcome.warnings


def test_an_outage_longer_than_close_puts_the_rest_in_the_spool_and_says_so(
    platform: PlatformEmulator,
) -> None:
    fault = next(fault for fault in FAULTS if fault.name == "60 s outage")
    outcome = run_fault(fault, platform)
    closing = [m for m in outcome.warnings if "could not be delivered" in m]
    assert len(closing) == 1
    reached, in_spool, lost = said(closing[0])
    assert in_spool > 0 and lost == 0
    assert reached == sum(len(values) for values in outcome.stored_at_close.values())
    retrying = [m for m in outcome.warnings if "retrying" in m]
    assert len(retrying) == 1 and f"kept in the spool {SPOOL}" in retrying[0]
    assert outcome.exact


def test_sigkill_during_an_outage_loses_at_most_three_flush_intervals_and_sync_delivers_once(
    platform: PlatformEmulator,
) -> None:
    outcome = kill_training_during_outage(platform, outage_s=10.0)
    assert outcome.sync is not None and outcome.sync.complete, outcome.sync and outcome.sync.lines()
    assert sum(outcome.sync.values.values()) > 0  # the outage left values that only the spool held
    assert outcome.prefix and outcome.duplicated == 0
    assert outcome.required > 500  # the kill came well after the outage began
    assert outcome.delivered >= outcome.required, (outcome.delivered, outcome.required, outcome.logged)
    assert sync_spool(SPOOL).lines() == ["nothing to deliver"]


def test_sigkill_of_sync_then_sync_again_delivers_each_value_once(platform: PlatformEmulator) -> None:
    outcome = kill_sync(platform)
    assert platform.requests_per_route["list_post"] >= 3  # the first sync was killed part-way
    assert outcome.required == outcome.logged, "the platform's lists differ from the values logged"
    assert outcome.duplicated == 0
    assert outcome.sync is not None and outcome.sync.complete
    assert sync_spool(SPOOL).lines() == ["nothing to deliver"]
