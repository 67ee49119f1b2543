"""Importers: specs written from models that exist elsewhere.

:mod:`netcalc.importers.hf` maps a local Hugging Face ``config.json`` to a spec
(``netcalc import --hf-config``) without torch or transformers, and proves it against
the transformers model built on the meta device (``--verify``).
"""
