"""The dtypes a report can be computed at, and what a tensor of each costs in bytes.

A report has three: the weights' (``weight_bytes``), the activations' (layer outputs,
inputs, the inference peak) and the KV cache's. ``--dtype`` sets all three and a
specific option overrides it. Sizes stay exact integers: a tensor of a sub-byte dtype
(``int4``) is rounded up to whole bytes, per tensor, as packed storage needs. With a
quantization group size G, each weight tensor also stores one 16-bit scale per G of its
elements (rounded up), as group-wise int4/int8 formats (GPTQ, AWQ, bitsandbytes) do.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import SpecError

DTYPE_BITS = {"float32": 32, "float16": 16, "bfloat16": 16, "int8": 8, "float64": 64,
              "float8_e4m3fn": 8, "float8_e5m2": 8, "int4": 4}
#: dtypes of whole bytes (every one but int4), for figures kept per element
DTYPE_BYTES = {d: b // 8 for d, b in DTYPE_BITS.items() if b % 8 == 0}
INT_BYTES = 8  # token ids are int64, as torch.nn.Embedding expects
SCALE_BYTES = 2  # one float16 scale per quantization group
QUANTIZED = tuple(d for d, b in DTYPE_BITS.items() if b <= 8)  # what group scales apply to


def nbytes(numel: int, dtype: str) -> int:
    """Bytes of one tensor of ``numel`` elements: whole bytes, a partial one rounded up."""
    return -(-numel * DTYPE_BITS[dtype] // 8)


def check_dtype(dtype: object, option: str) -> str:
    if not isinstance(dtype, str) or dtype not in DTYPE_BITS:
        raise SpecError(f"unknown dtype {dtype!r} ({', '.join(DTYPE_BITS)})", file=option)
    return dtype  # type: ignore[return-value]


@dataclass(frozen=True)
class Dtypes:
    """The dtypes of one report; ``dtype`` is the one ``--dtype`` named (JSON ``dtype``)."""

    dtype: str = "float32"
    weight: str = "float32"
    activation: str = "float32"
    kv: str = "float32"
    quant_group_size: int | None = None

    @classmethod
    def of(cls, dtype: "str | Dtypes" = "float32", weight: str | None = None,
           activation: str | None = None, kv: str | None = None,
           quant_group_size: int | None = None, names: dict[str, str] | None = None
           ) -> "Dtypes":
        """Resolve the options: each specific dtype defaults to ``dtype``. Errors name
        the option (``names`` maps dtype/weight/activation/kv/quant_group_size to it)."""
        if isinstance(dtype, Dtypes):
            return dtype
        names = {k: f"--{k.replace('_', '-')}" for k in
                 ("dtype", "weight_dtype", "activation_dtype", "kv_dtype", "quant_group_size")
                 } | (names or {})
        check_dtype(dtype, names["dtype"])
        w = check_dtype(weight or dtype, names["weight_dtype"])
        a = check_dtype(activation or dtype, names["activation_dtype"])
        k = check_dtype(kv or dtype, names["kv_dtype"])
        g = quant_group_size
        if g is not None:
            if not isinstance(g, int) or isinstance(g, bool) or g < 1:
                raise SpecError(f"must be an int >= 1, got {g!r}", file=names["quant_group_size"])
            if w not in QUANTIZED:
                raise SpecError(f"scales apply to quantized weights ({', '.join(QUANTIZED)}), "
                                f"not {w}", file=names["quant_group_size"])
        return cls(dtype, w, a, k, g)

    def weight_bytes(self, numel: int) -> int:
        """Bytes of one weight tensor, with its group scales."""
        scales = -(-numel // self.quant_group_size) * SCALE_BYTES if self.quant_group_size else 0
        return nbytes(numel, self.weight) + scales

    def label(self) -> str:
        """``float16``, then each part that differs: ``float16, weights int4 (scale per
        128 weights)``."""
        group = f" (scale per {self.quant_group_size} weights)" if self.quant_group_size else ""
        parts = [(f"weights {self.weight}{group}", self.weight != self.dtype or group),
                 (f"activations {self.activation}", self.activation != self.dtype),
                 (f"KV cache {self.kv}", self.kv != self.dtype)]
        return ", ".join([self.dtype, *(text for text, differs in parts if differs)])

    def json(self) -> dict[str, object]:
        """The JSON fields beside ``dtype`` (added, so ``dtype`` keeps its meaning)."""
        return {"weight_dtype": self.weight, "activation_dtype": self.activation,
                "kv_dtype": self.kv, "quant_group_size": self.quant_group_size}
