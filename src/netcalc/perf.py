"""What keeps large specs fast: the cyclic garbage collector paused while a spec is built.

A 10,000-layer spec allocates some half a million small objects (YAML nodes, marks,
layers, result rows), none of them garbage yet. Each automatic collection of the
oldest generation rescans all of them, which made parsing and analysis twice as
slow and superlinear (2.5x the time for 2x the layers; ``benchmarks/engine_scaling.py``).
Reference counting still frees everything at once; cycles wait until the end.
"""

from __future__ import annotations

import gc
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def paused_gc() -> Iterator[None]:
    """Disable automatic collection inside the block (usable as a decorator); nests."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
