"""Python's garbage collector while the model loads.

Importing torch and transformers and building a model create some 600,000 objects that live
as long as the session. Python walks its oldest generation again each time that generation
grows by a quarter: for SmolLM2 that is six full collections during the load, and two more
as pytest finishes, each 0.1-0.3 s on a small CPU, over objects that are never garbage.
So while a model loads, automatic collection is paused; then one collection of what the load
built (all of it still in the youngest generation) frees the load's own garbage cycles (0.2 s
for SmolLM2), and everything left is frozen (`gc.freeze`: left out of later collections, as
the gc documentation suggests for a program that has finished its initialisation) and thawed
at pytest's cleanup, so a process that goes on afterwards (pytester's in-process runs, a
program embedding pytest) collects those objects again.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Generator

import pytest

_FROZEN = pytest.StashKey[bool]()


@contextlib.contextmanager
def loading(config: pytest.Config) -> Generator[None, None, None]:
    """Around a model's load: no automatic collection inside; once the model is loaded, the
    load's garbage is collected and the heap built so far frozen until `thaw`."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
        gc.collect(0)
        gc.freeze()
        config.stash[_FROZEN] = True
    finally:
        if enabled:
            gc.enable()


def thaw(config: pytest.Config) -> None:
    """Give what `loading` froze back to the collector."""
    if config.stash.get(_FROZEN, False):
        gc.unfreeze()
        config.stash[_FROZEN] = False
