"""Every quantity a report carries, declared once.

A :class:`Metric` names a per-layer row field and/or a total, its unit, what it
means, how the total comes about (the sum of the rows, or a figure of its own such as
a peak) and whether ``check`` accepts it in ``expect:``/``budget:``. The fields of
:class:`~netcalc.analysis.LayerResult` and :class:`~netcalc.analysis.Totals`, the
totals loop, ``--depth`` folding, the JSON, the table/CSV/Markdown columns, ``check``'s
keys and the JSON Schema all read :data:`METRICS`: adding a metric touches this file
(plus the rule that computes it, and its tests).
"""

from __future__ import annotations

from dataclasses import dataclass

SUM, OWN = "sum", "own"  # a total is the sum of the rows, or computed on its own


@dataclass(frozen=True)
class Metric:
    """One figure of the report, declared once: its row field, total, unit and JSON key."""

    name: str  # row field (and total, unless ``total_name`` says otherwise) and JSON key
    unit: str  # "", "MAC", "FLOP" or "B"
    doc: str
    #: SUM: the total is the sum of the rows; OWN: computed by the analysis (a peak)
    total: str = SUM
    #: per-layer field; False for totals only (inputs, peaks)
    row: bool = True
    #: the total's name when it differs from the row's (``saved_bytes`` rows sum to
    #: ``saved_activation_bytes``)
    total_name: str | None = None
    #: present only when the report was made with training options (``--train``)
    training: bool = False
    #: the total falls back to this metric for rows without a value of their own
    #: (``nonzero_params`` of an unpruned layer is its ``params``), and the JSON shows
    #: the total only when it differs from that one
    fallback: str | None = None
    #: accepted by ``check`` in ``expect:``/``budget:``
    budget: bool = True
    #: table column title; None: not a column
    column: str | None = None
    #: None for a layer whose count netcalc cannot know (an Opaque layer of an imported
    #: spec): shown "unknown", null in JSON, and every total that includes one is None
    unknowable: bool = False
    #: metrics with a fallback shown together: the JSON shows every total of a group as
    #: soon as one of them differs from its fallback (pruning's two figures)
    group: str = ""

    @property
    def key(self) -> str:
        """The name of the total (and of the ``check`` key)."""
        return self.total_name or self.name

    @property
    def bytes(self) -> bool:
        return self.unit == "B"


METRICS: tuple[Metric, ...] = (
    Metric("params", "", "parameters, as sum(p.numel() for p in module.parameters())",
           column="Params"),
    Metric("trainable_params", "", "parameters of trainable layers"),
    Metric("buffers", "", "buffer elements (BatchNorm running statistics)"),
    Metric("macs", "MAC", "multiply-accumulates of one forward pass", column="MACs",
           unknowable=True),
    Metric("flops", "FLOP", "2 * MACs + element-wise FLOPs", column="FLOPs", unknowable=True),
    Metric("weight_bytes", "B", "parameter bytes at the dtype"),
    Metric("activation_bytes", "B", "bytes of all layer outputs at the dtype",
           column="Activations"),
    Metric("input_bytes", "B", "bytes of the inputs", total=OWN, row=False),
    Metric("peak_activation_bytes", "B", "largest set of tensors alive at once in inference",
           total=OWN, row=False),
    Metric("nonzero_params", "", "parameters left after `sparsity:` pruning",
           fallback="params", group="pruning"),
    Metric("nonzero_macs", "MAC", "MACs left after `sparsity:` pruning", fallback="macs",
           group="pruning", unknowable=True),
    Metric("active_params", "",
           "parameters one token uses: a MixtureOfExperts counts its router and top_k "
           "of its experts (params counts all of them)", fallback="params", group="active"),
    Metric("backward_macs", "MAC",
           "multiply-accumulates of the backward pass: the gradient of every input that "
           "needs one and of every trainable weight (recomputation excluded)",
           training=True, column="Bwd MACs"),
    Metric("backward_flops", "FLOP",
           "2 * backward MACs (under --convention flopcounter: what FlopCounterMode "
           "reports for loss.backward(), recomputation included)",
           training=True, budget=False),
    Metric("saved_bytes", "B",
           "bytes of the tensors autograd keeps for backward that this layer is the first "
           "to keep (checkpointing applied)",
           total_name="saved_activation_bytes", training=True, column="Saved"),
    Metric("train_peak_bytes", "B",
           "peak memory of a training step (training.peak_bytes): weights, buffers, "
           "gradients, optimizer state and live activations", total=OWN, row=False,
           training=True),
)

UNKNOWN = "unknown"  # how tables show an unknowable metric's None


def total(values: list[int | None]) -> int | None:
    """The sum of an unknowable metric: None (unknown) when one value is."""
    try:  # ints, or a None somewhere: one pass in C either way
        return sum(values)  # type: ignore[arg-type]
    except TypeError:
        return None


BY_KEY: dict[str, Metric] = {m.key: m for m in METRICS}
ROW_METRICS = tuple(m for m in METRICS if m.row)
SUMMED = tuple(m for m in METRICS if m.row and m.total == SUM)
#: totals ``check`` accepts in ``expect:``/``budget:``
BUDGETABLE = tuple(m.key for m in METRICS if m.budget)
COLUMNS = tuple(m for m in METRICS if m.column)
