"""The one timer of netcalc's torch side, and the timing loops built on it.

:func:`block_timer` times ``number`` back-to-back calls: ``time.perf_counter`` on the
CPU; on CUDA, events recorded around the block, then synchronised. The calibration
(:mod:`netcalc.torch.calibrate`), the whole-model timing and the per-layer pass of a
profile (:mod:`netcalc.torch.profile`) all use it. :func:`timed_blocks` is the one
loop: blocks sized like ``torch.utils.benchmark``'s ``blocked_autorange``, until
``--repeat`` blocks or ``--min-time`` seconds. :class:`LayerClock` times each layer
with forward hooks (CPU: the clock read in the hooks; CUDA: events recorded in them).
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Iterable

import torch

from ..results import DEFAULT_MIN_TIME, Progress, Stats


class Interrupted(Exception):
    """Ctrl-C during a measurement, carrying the samples taken so far."""

    def __init__(self, partial: "Stats | None" = None):
        super().__init__("interrupted")
        self.partial = partial


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def block_timer(device: str) -> Callable[[Callable[[], Any], int], float]:
    """``time(fn, number)`` -> seconds for ``number`` back-to-back calls, device work included."""
    if device == "cuda":
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)

        def run_cuda(fn: Callable[[], Any], number: int) -> float:
            torch.cuda.synchronize()
            start.record()
            for _ in range(number):
                fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3

        return run_cuda

    clock = time.perf_counter

    def run_cpu(fn: Callable[[], Any], number: int) -> float:
        t0 = clock()
        for _ in range(number):
            fn()
        return clock() - t0

    return run_cpu


def estimate_number(timer, fn, min_time: float) -> int:
    """Calls per block, as ``blocked_autorange`` does: grow ×10 until one block takes at
    least ``min_time / 1000`` (and 100 µs), so the timer's overhead is negligible."""
    target = max(min_time / 1000, 1e-4)
    number = 1
    while True:
        t = timer(fn, number)
        if t >= target or number >= 10**6:
            return number
        # jump close to the target rather than only ×10 for very fast functions
        number = max(number * 2, min(number * 10, math.ceil(number * target / max(t, 1e-9))))


def timed_blocks(timer: Callable[[Callable[[], Any], int], float], fn: Callable[[], Any], *,
                 repeat: int | None, min_time: float, number: int | None = None,
                 progress: Progress | None = None, phase: str = "timing",
                 before: Callable[[], Any] | None = None,
                 after: Callable[[], Any] | None = None) -> Stats:
    """The one timing loop: blocks of ``number`` calls of ``fn``, each timed by
    ``timer(fn, number)``, until ``repeat`` blocks (exactly) or, adaptively, until
    ``min_time`` seconds were measured over at least two blocks. Seconds per call.

    ``before()`` runs first (e.g. warm-up) and ``after()`` after each block, outside
    its timing (e.g. reading per-layer hooks). ``number`` left out is estimated like
    ``blocked_autorange``. Ctrl-C anywhere raises :class:`Interrupted` with the blocks
    so far (None before the first).
    """
    progress = progress or Progress()
    times: list[float] = []
    n = 1
    try:
        if before is not None:
            before()
        n = number or estimate_number(timer, fn, min_time if repeat is None else 0.1)
        if repeat is not None:
            progress.phase(phase, repeat, "runs")
        else:
            progress.phase(phase, min_time, "s")
        total = 0.0
        while True:
            t = timer(fn, n)
            if after is not None:
                after()
            times.append(t / n)
            total += t
            progress.advance(1 if repeat is not None else t)
            if repeat is not None:
                if len(times) >= repeat:
                    break
            elif total >= min_time and len(times) >= 2:
                break
    except KeyboardInterrupt:
        raise Interrupted(Stats(times, n) if times else None) from None
    return Stats(times, n)


def measure(fn: Callable[[], Any], device: str, *, repeat: int | None = None,
            min_time: float = DEFAULT_MIN_TIME, number: int | None = None,
            progress: Progress | None = None) -> Stats:
    """Time ``fn``: ``repeat`` blocks, or blocks until ``min_time`` seconds were measured.

    Warm-up is the caller's. Ctrl-C raises :class:`Interrupted` with the blocks so far.
    """
    return timed_blocks(block_timer(device), fn, repeat=repeat, min_time=min_time,
                        number=number, progress=progress)


def warm_up(fn: Callable[[], Any], device: str, runs: int, progress: Progress | None = None,
            announce: bool = True) -> None:
    progress = progress or Progress()
    if runs and announce:
        progress.phase("warm-up", runs)
    for _ in range(runs):
        fn()
        sync(device)
        progress.advance(1)


# ------------------------------------------------------------------- per layer
class LayerClock:
    """Forward hooks timing each named submodule, one sample per forward.

    CPU: ``perf_counter`` in the pre- and post-hook (CPU ops run synchronously).
    CUDA: events recorded in the hooks, read after the forward's synchronisation.
    A module called several times in one forward gets the sum of its calls.
    """

    def __init__(self, modules: dict[str, torch.nn.Module], device: str):
        self.device = device
        self.names = list(modules)
        self.samples: dict[str, list[float]] = {n: [] for n in self.names}
        self.calls: dict[str, int] = {n: 0 for n in self.names}
        self.run_totals: list[float] = []  # per forward: the sum of its layers' times
        self._open: dict[str, list[Any]] = {n: [] for n in self.names}
        self._done: dict[str, list[Any]] = {n: [] for n in self.names}
        self._handles: list[Any] = []
        self._events: list[Any] = []  # CUDA events free for reuse
        for name, module in modules.items():
            self._handles.append(module.register_forward_pre_hook(self._pre(name)))
            self._handles.append(module.register_forward_hook(self._post(name)))

    def _stamp(self) -> Any:
        if self.device == "cuda":
            ev = self._events.pop() if self._events else torch.cuda.Event(enable_timing=True)
            ev.record()
            return ev
        return time.perf_counter()

    def _pre(self, name: str):
        def hook(module, args):
            self._open[name].append(self._stamp())
        return hook

    def _post(self, name: str):
        def hook(module, args, output):
            end = self._stamp()
            start = self._open[name].pop()
            self._done[name].append((start, end))
        return hook

    def collect(self) -> None:
        """After one forward (synchronised): one sample per layer that ran."""
        run_total = 0.0
        for name in self.names:
            pairs = self._done[name]
            if not pairs:
                continue
            if self.device == "cuda":
                total = sum(s.elapsed_time(e) for s, e in pairs) / 1e3
                for s, e in pairs:
                    self._events += [s, e]
            else:
                total = sum(e - s for s, e in pairs)
            self.samples[name].append(total)
            self.calls[name] = len(pairs)
            run_total += total
            pairs.clear()
        for stack in self._open.values():
            stack.clear()
        self.run_totals.append(run_total)

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()


def time_layers(module: torch.nn.Module, fn: Callable[[], Any], names: Iterable[str],
                device: str, *, warmup: int, repeat: int | None, min_time: float,
                progress: Progress | None = None) -> tuple[Stats, LayerClock]:
    """The hooked pass: one forward per sample, each timed whole and per layer."""
    progress = progress or Progress()
    by_name = dict(module.named_modules())
    targets = {n: by_name[n] for n in names if n in by_name and n != ""}
    clock = LayerClock(targets, device)

    def warm_then_reset() -> None:
        warm_up(fn, device, warmup, progress)
        clock.collect()
        for name in clock.names:
            clock.samples[name].clear()
        clock.run_totals.clear()

    try:
        hooked = timed_blocks(block_timer(device), fn, repeat=repeat, min_time=min_time,
                              number=1, progress=progress, phase="per-layer",
                              before=warm_then_reset, after=clock.collect)
    finally:
        clock.remove()
    return hooked, clock
