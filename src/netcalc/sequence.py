"""Old import path of the sequence-model section (now :mod:`netcalc.sections.sequence`)."""

from .sections.sequence import kv_cache_bytes_per_token, sequence_section

__all__ = ["kv_cache_bytes_per_token", "sequence_section"]
