"""What keeps large specs fast: the cyclic garbage collector paused while a spec is built.

A 10,000-layer spec allocates some half a million small objects (YAML nodes, marks,
layers, result rows), none of them garbage yet. Each automatic collection of the
oldest generation rescans all of them, which made parsing and analysis twice as
slow and superlinear (2.5x the time for 2x the layers; ``benchmarks/engine_scaling.py``).
Reference counting still frees everything at once; cycles wait until the end.
"""

from __future__ import annotations

import gc
import threading
from contextlib import contextmanager
from typing import Iterator

_lock = threading.Lock()
_depth = 0  # pauses in progress, over all threads
_was_enabled = False  # the collector's state when the first of them began


@contextmanager
def paused_gc() -> Iterator[None]:
    """Disable automatic collection inside the block (usable as a decorator).

    Pauses nest and overlap across threads: the last one to end restores the state
    the first one found, so a collector that was on is never left off.
    """
    global _depth, _was_enabled
    with _lock:
        if _depth == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _was_enabled:
                gc.enable()
