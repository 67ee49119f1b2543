"""Old home of the device limits and their measurement: the names, re-exported.

The limits, the cache and the roofline are torch-free in :mod:`netcalc.hardware`; the
measurement is :mod:`netcalc.torch.calibrate`.
"""

from ..hardware import (  # noqa: F401
    CACHE_FILE, CACHE_VERSION, Hardware, Roof, _read_cache, _write_cache, cache_dir, cpu_name,
    load_average, roofline,
)
from .calibrate import (  # noqa: F401
    _best, cache_key, calibrate, device_name, measure_conv, measure_copy, measure_gemm,
)
