"""What torch cannot do, refused before torch tries: values beyond its domain, a device
it lacks, memory this process cannot get.

A torch failure deep in a forward pass names no spec line and often carries a C++
backtrace; these checks answer one located line instead (a :class:`SpecError`, exit
code 2). The analytic core refuses out-of-domain values at parse time as well: this is
the torch side's own defence, for specs built in Python and for what the core misses.
"""

from __future__ import annotations

import math
import os
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any

import torch

from ..errors import SpecError
from ..graph import Graph

INT64_MAX = 2**63 - 1
#: what torch raises on input it cannot take
TORCH_ERRORS = (RuntimeError, OverflowError, ValueError, TypeError)

#: the container's memory limit and usage: cgroup v2, then v1 (patched in tests)
CGROUP_FILES = (
    (Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory.current")),
    (Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"),
     Path("/sys/fs/cgroup/memory/memory.usage_in_bytes")),
)


def one_line(exc: BaseException, limit: int = 300) -> str:
    """An exception as one short line: torch appends C++ backtraces after the first."""
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:limit]


# ------------------------------------------------------------------------ values
def check_domain(graph: Graph, batch: int, input_shapes: dict[str, Any] | None = None) -> None:
    """Refuse arguments beyond int64 or NaN, and tensors of more than 2**63-1 elements
    (torch indexes with int64). An analysed graph: its layers know their output shapes."""
    for name, info in graph.inputs.items():
        why = _too_many(info.shape, batch, f"input {name!r}")
        if why and name in (input_shapes or {}):
            raise SpecError(why, file="--input")
        if why:
            raise SpecError(why, graph.spec.inputs[name].mark)
    for node in graph.nodes:
        layer = node.layer
        for arg, value in layer.arg_values().items():
            why = _outside(value)
            if why:
                raise layer.fail(f"argument {arg} {why}: torch cannot take it", arg)
        for k, out in enumerate(layer.outputs):
            why = _too_many(out.shape, batch, "its output" + (f" {k}" if k else ""))
            if why:
                raise layer.fail(why)


def _outside(value: Any) -> str:
    """Why torch cannot take ``value`` ('' when it can)."""
    if isinstance(value, bool):
        return ""
    if isinstance(value, int):
        return "" if -INT64_MAX - 1 <= value <= INT64_MAX else "is beyond int64"
    if isinstance(value, float):
        return "is NaN" if math.isnan(value) else ""
    if isinstance(value, Fraction):
        return "is beyond float64" if abs(value) > sys.float_info.max else ""
    if isinstance(value, (tuple, list)):
        return next((why for why in map(_outside, value) if why), "")
    return ""


def _too_many(shape: tuple[int, ...], batch: int, what: str) -> str:
    """Why torch cannot index a tensor of ``shape`` ('' when it can); a SpecError naming
    --batch when one sample would fit."""
    n = math.prod(shape)
    if n <= INT64_MAX:
        return ""
    if batch > 1 and n // batch <= INT64_MAX:
        raise SpecError(f"{what} would hold more than 2**63-1 elements at this batch size, "
                        "beyond what torch can index", file=f"--batch {batch}")
    return f"{what} would hold more than 2**63-1 elements, beyond what torch can index"


# ------------------------------------------------------------------------ device
def cuda_unavailable() -> str | None:
    """Why CUDA cannot be used here, or None when it can."""
    if torch.cuda.is_available():
        return None
    return ("CUDA is not available: torch " + torch.__version__ +
            (" was built without CUDA" if torch.version.cuda is None else " finds no CUDA device"))


def check_device(device: str) -> None:
    """Refuse a device this machine lacks, naming the option (not the spec's first layer)."""
    try:
        dev = torch.device(device)
    except TORCH_ERRORS:
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda", "meta"):
        raise SpecError(f"expected cpu, cuda or meta, got {device!r}", file="--device")
    if dev.type == "cuda":
        why = cuda_unavailable()
        if why:
            raise SpecError(f"{why}; use --device cpu (or meta)", file="--device cuda")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise SpecError(f"no CUDA device {dev.index} ({torch.cuda.device_count()} found)",
                            file=f"--device {device}")


# ------------------------------------------------------------------------ memory
def is_out_of_memory(exc: BaseException) -> bool:
    """An allocation failure (CPU or CUDA): the machine's limit, not the spec's fault."""
    if isinstance(exc, (MemoryError, torch.cuda.OutOfMemoryError)):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("out of memory" in text.lower()
                                              or "can't allocate memory" in text)


def allocatable() -> tuple[int, str] | None:
    """Bytes this process can still allocate, and what limits it: the least of free RAM,
    the address-space limit (RLIMIT_AS, ``ulimit -v``) less what is mapped already, and
    the cgroup's memory limit less its usage. None when none is known."""
    known = [(b, why) for b, why in ((_free_ram(), "free RAM"),
                                     (_address_space_left(), "the address-space limit (ulimit -v)"),
                                     (_cgroup_left(), "the container's memory limit (cgroup)"))
             if b is not None]
    return min(known) if known else None


def _free_ram() -> int | None:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return None


def _address_space_left() -> int | None:
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    except (ImportError, OSError, ValueError):  # pragma: no cover - not POSIX
        return None
    if soft == resource.RLIM_INFINITY:
        return None
    try:  # the first field of statm: pages mapped now (libraries, arenas, stacks)
        mapped = int(Path("/proc/self/statm").read_text().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        mapped = 0
    return max(soft - mapped, 0)


def _cgroup_left() -> int | None:
    for limit_file, usage_file in CGROUP_FILES:
        limit = _read(limit_file)
        if limit is None:  # not this cgroup version
            continue
        if not limit.isdigit():  # ``max`` (v2): no limit
            return None
        usage = _read(usage_file) or ""
        return max(int(limit) - (int(usage) if usage.isdigit() else 0), 0)
    return None


def _read(path: Path) -> str | None:
    """A one-value file of /sys, or None when absent; at most 64 bytes are read."""
    try:
        with open(path, "rb") as f:
            text = f.read(64).decode("ascii", "replace").strip()
    except OSError:
        return None
    return text
