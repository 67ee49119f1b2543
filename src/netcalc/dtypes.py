"""Bytes per element of the dtypes a report can be computed at."""

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "int8": 1, "float64": 8}
INT_BYTES = 8  # token ids are int64, as torch.nn.Embedding expects
