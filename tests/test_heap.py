"""Python's collector around a model load (pytest_lmeval/heap.py): paused while the model loads,
the load's own garbage collected, the rest frozen, and all of it given back when the run ends."""

from __future__ import annotations

import gc
import weakref

import pytest
from quiz_project import run, write_quiz

from pytest_lmeval.run import load_gc as heap


def test_the_load_s_garbage_cycles_are_freed_and_the_rest_frozen_until_thawed() -> None:
    config = type("Config", (), {"stash": pytest.Stash()})()

    class Node:
        pass

    gc.collect()
    kept = Node()
    with heap.loading(config):
        assert not gc.isenabled()
        cycle = Node()
        cycle.self = cycle
        dropped = weakref.ref(cycle)
        del cycle
    assert gc.isenabled()
    assert dropped() is None  # garbage of the load: collected, not frozen
    assert gc.get_freeze_count() > 0
    assert kept is not None
    heap.thaw(config)
    assert gc.get_freeze_count() == 0


def test_a_failed_load_freezes_nothing() -> None:
    config = type("Config", (), {"stash": pytest.Stash()})()
    with pytest.raises(RuntimeError), heap.loading(config):
        raise RuntimeError("no such model")
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_the_heap_a_model_load_froze_is_thawed_when_the_run_ends(pytester: pytest.Pytester) -> None:
    """Loading the model pauses Python's collector and then freezes what it built (heap.py);
    a process that goes on after the run (this one) gets its collector back as it was."""
    write_quiz(pytester.path)
    pytester.makepyfile(
        test_frozen_heap="""
        import gc

        def test_frozen_after_the_load(lm):
            assert gc.get_freeze_count() > 0
            assert gc.isenabled()
        """
    )
    gc.collect()
    assert gc.get_freeze_count() == 0
    result = run(
        pytester, "evals", "test_frozen_heap.py", "--data-dir", "data", "--model", "dummy:d", "--output-path", "out"
    )
    result.assert_outcomes(passed=9)
    assert gc.get_freeze_count() == 0
    assert gc.isenabled()
