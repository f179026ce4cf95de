"""The messages workers post: only the latest of a high-rate kind is kept in the queue, never an event batch."""

from __future__ import annotations

from ui_helpers import HOST

from vittui.ui.messages import EventsArrived, HardwareSampled, MemoryEstimated, RunsScanned, RunStateChanged


def test_latest_only_replaces_its_own_kind():
    state = RunStateChanged("running", None)
    assert state.can_replace(RunStateChanged("paused", None))
    assert not state.can_replace(HardwareSampled([], HOST, False, ""))
    assert HardwareSampled([], HOST, False, "").can_replace(HardwareSampled([], HOST, True, ""))
    assert RunsScanned([]).can_replace(RunsScanned([]))
    assert not MemoryEstimated(None, "x").can_replace(RunsScanned([]))


def test_event_batches_are_never_replaced():
    batch = EventsArrived([], initial=True)
    assert not batch.can_replace(EventsArrived([]))
    assert (batch.events, batch.initial) == ([], True)
