"""Progress of the model work, shown on the terminal while pytest captures test output."""

from __future__ import annotations

import sys
from collections.abc import Callable

import pytest
from tqdm import tqdm


def progress_bar(config: pytest.Config) -> Callable[[str, int], Callable[[int], None]]:
    """A factory the engine calls once per request kind; the callback advances the bar."""
    quiet = config.get_verbosity() < 0
    tty = sys.stderr.isatty()

    def start(kind: str, total: int) -> Callable[[int], None]:
        bar = tqdm(
            total=total,
            desc=f"lmeval {kind}",
            unit="req",
            file=sys.stderr,
            disable=quiet,
            mininterval=0.5 if tty else 15.0,
            dynamic_ncols=tty,
        )

        def advance(n: int) -> None:
            bar.update(n)
            if bar.n >= total:
                bar.close()

        if total == 0:
            bar.close()
        return advance

    return start
