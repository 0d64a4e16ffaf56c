"""Reads kept for a sweep (runs.per_sweep): shared within a scope, fresh outside one and once too old."""

from __future__ import annotations

from runs import per_sweep


def test_outside_a_sweep_every_call_gets_a_new_store():
    per_sweep.kept("test.store", set[int]).add(1)
    assert per_sweep.kept("test.store", set) == set()


def test_within_a_sweep_a_store_is_shared_and_ends_with_it():
    with per_sweep.sweep_scope():
        per_sweep.kept("test.store", set[int]).add(1)
        with per_sweep.sweep_scope():  # nested: the same scope
            assert per_sweep.kept("test.store", set) == {1}
        assert per_sweep.kept("test.store", set) == {1}
        assert per_sweep.kept("test.other", set) == set()
    assert per_sweep.kept("test.store", set) == set()


def test_a_store_older_than_max_age_is_emptied(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(per_sweep.time, "monotonic", lambda: clock[0])
    with per_sweep.sweep_scope():
        per_sweep.kept("test.store", set[int]).add(1)
        clock[0] += per_sweep.MAX_AGE
        assert per_sweep.kept("test.store", set) == {1}
        clock[0] += 0.5
        assert per_sweep.kept("test.store", set) == set()
