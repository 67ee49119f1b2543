"""The command line: options in, one library call, render out.

Exit codes: 0 success; 1 a check (expectation, budget, cross-check) failed;
2 invalid input (a spec error printed as FILE:LINE:COL: message, or a bad option);
and, from :func:`main`, 130 on Ctrl-C, 141 (killed by SIGPIPE, as ``cat`` is) when the
reader of the output goes away, 74 (sysexits' EX_IOERR) when the output cannot be
written, e.g. on a full disk.
"""

# No `from __future__ import annotations` here: typer would evaluate every annotation
# string of every command at each start (about 6 ms).
import os
import signal
import sys
from pathlib import Path
from typing import NoReturn, Optional

import typer

from .dtypes import DTYPE_BITS, Dtypes
from .errors import SpecError
from .textsafe import text

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Layer and model calculator for neural networks, from a YAML spec.",
    pretty_exceptions_enable=False,
)

FORMAT_HELP = "table (human units) | json | csv | markdown (exact integers)"
CONVENTION_HELP = ("MAC counting convention: netcalc (default) | fvcore | flopcounter | "
                   "torchinfo (see netcalc.conventions)")

EXIT_INTERRUPTED = 130  # 128 + SIGINT
EXIT_IO_ERROR = 74  # sysexits.h EX_IOERR


def main() -> None:
    """The ``netcalc`` command: the app, ending quietly when its output goes away.

    ``netcalc shapes big.yaml | head`` ends as ``cat`` would, by SIGPIPE; Ctrl-C exits
    130; a write error (``> /dev/full``) is one line and exit 74. Never a traceback.
    """
    if hasattr(signal, "SIGPIPE"):  # not on Windows
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    code: "int | str | None" = 0
    try:
        try:
            app()
        except SystemExit as exc:  # how the app always ends
            code = exc.code
        sys.stdout.flush()  # small outputs are still buffered: write errors show here
    except KeyboardInterrupt:
        code = EXIT_INTERRUPTED
    except OSError as exc:
        sys.stderr.write(f"netcalc: cannot write the output: {exc.strerror or exc}\n")
        # what stdout still buffers would fail again at exit: let it go to /dev/null
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = EXIT_IO_ERROR
    if _KEPT and "torch" not in sys.modules:
        _fast_exit(code)
    sys.exit(code)


#: a command's large results (10^5 objects for 10^4 layers), alive until the process ends
_KEPT: list[object] = []


def keep_until_exit(*results: object) -> None:
    """Hold a command's results until the process ends, which then exits without
    freeing them one by one (:func:`_fast_exit`): a sixth of ``shapes`` on 10^4 layers.
    Only the last command's are held (a test process calls many)."""
    _KEPT[:] = results


def _fast_exit(code: "int | str | None") -> NoReturn:
    """``sys.exit(code)`` without the interpreter's teardown: the OS frees the memory at
    once (mypy's fast exit does the same). Only where nothing registered work for the
    end (torch would: not then), and after the output is flushed."""
    if isinstance(code, str):  # as sys.exit prints a message: to stderr, status 1
        sys.stderr.write(code + "\n")
        code = 1
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:
        pass  # reported by main() already, or stderr is gone: nothing to tell
    os._exit(0 if code is None else code)


def _version(value: bool) -> None:
    if value:
        from . import __version__

        typer.echo(f"netcalc {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="print the version and exit"),
) -> None:
    """Layer and model calculator for neural networks, from a YAML spec."""


def fail(err: SpecError | str, code: int = 2) -> NoReturn:
    typer.echo(text(err), err=True)  # file names and spec tokens: escaped, one line
    raise typer.Exit(code)


MAX_FILE_SIZE_HELP = "largest spec file read, e.g. 4MB (default), 64MB"
MAX_FILE_SIZE = "4MB"  # spec.MAX_FILE_BYTES, not imported: start-up time


def _file_size(value: str) -> int:
    """--max-file-size: a byte count in human units (4MB, 64MiB, 10_000_000)."""
    from .units import parse_quantity

    try:
        size = parse_quantity(value)
    except ValueError as exc:
        fail(f"--max-file-size: {exc}")
    if size.denominator != 1 or size < 1:
        fail(f"--max-file-size: expected a positive number of bytes, got {value!r}")
    return int(size)


def _check_convention(name: str) -> None:
    if name == "netcalc":  # the default: no need to import the conventions' rules
        return
    from . import conventions

    if name not in conventions.NAMES:
        fail(f"--convention: unknown convention {name!r} ({' | '.join(conventions.NAMES)})")


TRAIN_HELP = "analyse a training step: backward MACs, saved activations, training memory"
DEVICE_HELP = "with --train: cuda (default) | cpu, the kernels that decide what backward keeps"
OPTIMIZER_HELP = "with --train: sgd | momentum | adam | adamw (default)"
PRECISION_HELP = "with --train: fp32 | bf16 | amp-bf16 | amp-fp16 (default: from --dtype)"
CHECKPOINT_HELP = ("with --train: activation checkpointing of these block instances or "
                   "containers (repeatable or comma-separated; a repeat group: each instance)")
LOSS_HELP = "with --train: square (default: sum of out.float().square().mean()) | cross-entropy"
NO_BACKWARD = ("counts no backward pass; --train works with --convention netcalc or "
               "flopcounter")


DTYPE_HELP = f"{' | '.join(DTYPE_BITS)}: weights, activations and KV cache"
# one OptionInfo per option, shared by `shapes` and `fit`
WEIGHT_DTYPE = typer.Option(None, "--weight-dtype", help="dtype of the weights (default: --dtype)")
ACTIVATION_DTYPE = typer.Option(None, "--activation-dtype",
                                help="dtype of inputs and layer outputs (default: --dtype)")
KV_DTYPE = typer.Option(None, "--kv-dtype", help="dtype of the KV cache (default: --dtype)")
GROUP_SIZE = typer.Option(None, "--quant-group-size", metavar="G",
                          help="quantized weights: one 16-bit scale per G weights")


# the training options, shared by shapes, report, fit and verify
TRAIN = typer.Option(False, "--train", help=TRAIN_HELP)
DEVICE = typer.Option("cuda", "--device", "-d", help=DEVICE_HELP)
OPTIMIZER = typer.Option("adamw", "--optimizer", help=OPTIMIZER_HELP)
PRECISION = typer.Option(None, "--precision", help=PRECISION_HELP)
CHECKPOINT = typer.Option(None, "--checkpoint", help=CHECKPOINT_HELP)
LOSS = typer.Option("square", "--loss", help=LOSS_HELP)
MAX_FILE_SIZE_OPTION = typer.Option(MAX_FILE_SIZE, "--max-file-size", help=MAX_FILE_SIZE_HELP)


def dtypes_option(dtype: str, weight: str | None, activation: str | None, kv: str | None,
                  group: str | None) -> Dtypes:
    """The report's Dtypes from the CLI's options; a bad one is a SpecError naming it.
    The group size is read here, not by typer, so a bad one is one line, not a usage."""
    size = None
    if group is not None:
        try:
            size = int(group)
        except ValueError:
            raise SpecError(f"must be an int >= 1, got {group!r}",
                            file="--quant-group-size") from None
    return Dtypes.of(dtype, weight, activation, kv, size)


def train_options(train: bool, device: str, optimizer: str, precision: str | None,
                  checkpoint: list[str] | None, loss: str, convention: str = "netcalc"):
    """The TrainOptions the CLI's training flags ask for, or None without --train."""
    if not train:
        return None
    if convention not in ("netcalc", "flopcounter"):
        raise SpecError(f"convention {convention!r} {NO_BACKWARD}", file="--convention")
    from .training import TrainOptions

    names = tuple(n.strip() for value in checkpoint or () for n in value.split(",") if n.strip())
    return TrainOptions(device, optimizer, precision, names, loss).validate()


def parse_input_option(values: list[str] | None) -> dict[str, tuple[int, ...]] | None:
    """``3x224x224`` for a single-input spec, or ``name=3x224x224`` (repeatable)."""
    if not values:
        return None
    shapes: dict[str, tuple[int, ...]] = {}
    for value in values:
        name, _, dims = value.rpartition("=")
        try:
            shape = tuple(int(d) for d in dims.lower().replace(",", "x").split("x"))
            if not shape or any(d < 1 for d in shape):
                raise ValueError
        except ValueError:
            raise SpecError(f"--input {value!r}: expected sizes like 3x224x224 "
                            "(or name=3x224x224)", file="--input") from None
        shapes[name or ""] = shape
    return shapes


def _input_shapes(spec, values: list[str] | None) -> dict[str, tuple[int, ...]] | None:
    shapes = parse_input_option(values)
    if shapes is None:
        return None
    if "" in shapes:
        if len(spec.inputs) != 1:
            raise SpecError(f"the spec has several inputs ({', '.join(spec.inputs)}): "
                            "use --input name=SIZES", file="--input")
        shapes[next(iter(spec.inputs))] = shapes.pop("")
    for name in shapes:
        if name not in spec.inputs:
            raise SpecError(f"the spec has no input {name!r} ({', '.join(spec.inputs)})",
                            file="--input")
    return shapes


@app.command()
def shapes(
    spec_file: Path = typer.Argument(..., metavar="SPEC", help="YAML spec file"),
    input: Optional[list[str]] = typer.Option(None, "--input", "-i",
                                              help="per-sample input shape, e.g. 3x224x224"),
    batch: int = typer.Option(1, "--batch", "-b", min=1, max=2**63 - 1, help="batch size (dim 0)"),
    dtype: str = typer.Option("float32", help=DTYPE_HELP),
    weight_dtype: Optional[str] = WEIGHT_DTYPE,
    activation_dtype: Optional[str] = ACTIVATION_DTYPE,
    kv_dtype: Optional[str] = KV_DTYPE,
    quant_group_size: Optional[str] = GROUP_SIZE,
    format: str = typer.Option("table", "--format", "-f", help=FORMAT_HELP),
    depth: Optional[int] = typer.Option(None, min=1, help="collapse block instances below this depth"),
    kv_cache: bool = typer.Option(False, "--kv-cache",
                                  help="show KV-cache bytes per token (decoder models)"),
    convention: str = typer.Option("netcalc", "--convention", "-c", help=CONVENTION_HELP),
    train: bool = TRAIN,
    device: str = DEVICE,
    optimizer: str = OPTIMIZER,
    precision: Optional[str] = PRECISION,
    checkpoint: Optional[list[str]] = CHECKPOINT,
    loss: str = LOSS,
    max_file_size: str = MAX_FILE_SIZE_OPTION,
    plot: Optional[Path] = typer.Option(None, "--plot", metavar="FILE",
                                        help="also plot the cost per layer, e.g. costs.png "
                                             "(needs matplotlib: the plots extra)"),
) -> None:
    """Per-layer output shapes, receptive fields, params, MACs and memory (no torch needed).

    --convention fvcore|flopcounter|torchinfo shows, per layer and in total, the MACs
    (and FLOPs = 2 x MACs) that tool reports, by the rules of netcalc.conventions.
    --train adds the backward pass and the memory of a training step (netcalc.training).
    """
    from . import analysis, graph, spec as spec_mod
    from .perf import paused_gc
    from .render import FORMATS, render

    if format not in FORMATS:
        fail(f"--format: unknown format {format!r} ({', '.join(FORMATS)})")
    _check_convention(convention)
    _plots_available(plot)
    max_bytes = _file_size(max_file_size)
    with paused_gc():  # one pause from parse to output (10^5 live objects): netcalc.perf
        try:
            dtypes = dtypes_option(dtype, weight_dtype, activation_dtype, kv_dtype,
                                   quant_group_size)  # an option's fault, not the spec's
            options = train_options(train, device, optimizer, precision, checkpoint, loss,
                                    convention)
            s = spec_mod.load(spec_file, max_bytes)
            g = graph.build(s, batch, _input_shapes(s, input))
            report = analysis.analyze_graph(g, dtypes, options)
        except SpecError as err:
            fail(err)
        if convention != "netcalc":  # netcalc's counts need no conversion (nor its import)
            from . import conventions

            report = conventions.apply(report, convention)
        seq = report.sections.get("sequence")
        if seq is not None and not kv_cache:
            from .sections.sequence import KV_CACHE_FIELDS

            for key in KV_CACHE_FIELDS:
                seq.pop(key, None)
        if kv_cache and (seq is None or "kv_cache_bytes_per_token" not in seq):
            from .sections.sequence import kv_cache_absence

            why = kv_cache_absence(report) or "it has no causal self-attention"
            typer.echo(f"--kv-cache: no KV cache for this model: {text(why)}", err=True)
        sys.stdout.write(render(report, format, depth))
        if plot is not None:
            _plot(lambda plots: plots.costs_plot(report, depth, plot))
        keep_until_exit(report, g, s)


def _plot(draw) -> None:
    """Run ``draw(netcalc.render.plots)``; no matplotlib or an unwritable file: exit 2."""
    from .render import plots

    try:
        draw(plots)
    except plots.PlotError as err:
        fail(str(err))


def _plots_available(plot: "Path | None") -> None:
    """With --plot, fail at once (before any work) when matplotlib is not installed."""
    if plot is not None:
        from .render.plots import PlotError, pyplot

        try:
            pyplot()
        except PlotError as err:
            fail(str(err))


def _analyze(spec_file: Path, input: "list[str] | None", batch: int, max_file_size: str,
             train=None, dtype: str = "float32"):
    """Load and analyse a spec for a picture command (a SpecError is one line, exit 2)."""
    from . import analysis, graph, spec as spec_mod

    max_bytes = _file_size(max_file_size)
    try:
        dtypes = dtypes_option(dtype, None, None, None, None)
        s = spec_mod.load(spec_file, max_bytes)
        return analysis.analyze_graph(graph.build(s, batch, _input_shapes(s, input)),
                                      dtypes, train)
    except SpecError as err:
        fail(err)


def _write(path: Path, data: "bytes | str") -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, str):
            path.write_text(data, encoding="utf-8")
        else:
            path.write_bytes(data)
    except OSError as exc:
        fail(f"--output {text(path)}: cannot write: {exc.strerror or exc}")


DEPTH_HELP = "collapse block instances below this depth"


@app.command()
def draw(
    spec_file: Path = typer.Argument(..., metavar="SPEC", help="YAML spec file"),
    output: Path = typer.Option(..., "--output", "-o",
                                help="net.svg | net.png (laid out by Graphviz's dot) | net.dot"),
    depth: Optional[int] = typer.Option(None, min=1, help=DEPTH_HELP),
    rankdir: str = typer.Option("TB", "--rankdir", help="TB (top to bottom) | LR (left to right)"),
    params: bool = typer.Option(False, "--params", help="show each node's params"),
    macs: bool = typer.Option(False, "--macs", help="show each node's MACs"),
    max_nodes: int = typer.Option(250, "--max-nodes", min=1,
                                  help="fold repeat groups, then depths, beyond this many nodes"),
    input: Optional[list[str]] = typer.Option(None, "--input", "-i",
                                              help="per-sample input shape, e.g. 3x224x224"),
    batch: int = typer.Option(1, "--batch", "-b", min=1, max=2**63 - 1, help="batch size (dim 0)"),
    max_file_size: str = MAX_FILE_SIZE_OPTION,
) -> None:
    """Draw the layer graph: nodes with name, type and output shape, blocks as clusters.

    Graphs of more than --max-nodes nodes (250) fold their repeat groups after the first
    instance, then lower the depth until they fit (the picture's caption says so). SVG
    and PNG need Graphviz's `dot` on PATH (run with a 60 s timeout); .dot needs nothing.
    """
    from .render.dot import FORMATS, RANKDIRS, DotError, run_dot, to_dot

    fmt = output.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        fail(f"--output: unknown picture format {text(output.suffix or output.name)!r} "
             "(.svg, .png, .dot)")
    if rankdir not in RANKDIRS:
        fail(f"--rankdir: unknown value {text(rankdir)!r} (TB, LR)")
    report = _analyze(spec_file, input, batch, max_file_size)
    try:
        dot_text = to_dot(report, depth, rankdir, params, macs, max_nodes)
        _write(output, dot_text if fmt == "dot" else run_dot(dot_text, fmt))
    except DotError as err:
        fail(str(err))


@app.command()
def report(
    spec_file: Path = typer.Argument(..., metavar="SPEC", help="YAML spec file"),
    output: Path = typer.Option(..., "--output", "-o", help="the HTML file to write"),
    profile: Optional[Path] = typer.Option(None, "--profile",
                                           help="a `netcalc profile --format json` file of "
                                                "this spec: adds the measured roofline"),
    profile_config: int = typer.Option(0, "--profile-config", min=0, metavar="N",
                                       help="which run of the profile: the index in its "
                                            "configs (default 0, the first)"),
    depth: Optional[int] = typer.Option(None, min=1, help=DEPTH_HELP),
    input: Optional[list[str]] = typer.Option(None, "--input", "-i",
                                              help="per-sample input shape, e.g. 3x224x224"),
    batch: int = typer.Option(1, "--batch", "-b", min=1, max=2**63 - 1, help="batch size (dim 0)"),
    dtype: str = typer.Option("float32", help=DTYPE_HELP),
    train: bool = TRAIN,
    device: str = DEVICE,
    optimizer: str = OPTIMIZER,
    precision: Optional[str] = PRECISION,
    checkpoint: Optional[list[str]] = CHECKPOINT,
    loss: str = LOSS,
    max_file_size: str = MAX_FILE_SIZE_OPTION,
) -> None:
    """One self-contained HTML report that works offline (no torch needed).

    Totals, the graph (laid out by Graphviz's dot; left out with a note without it),
    the per-layer table (sortable, filterable, folded at --depth), per-layer cost bars,
    receptive-field growth, memory over the layer order and, with --profile, the
    measured per-layer roofline.
    """
    from .render.dot import DotError, run_dot, to_dot
    from .render.html import clean_svg, load_profile, render_html, roofline_data

    try:
        options = train_options(train, device, optimizer, precision, checkpoint, loss)
    except SpecError as err:
        fail(err)
    rep = _analyze(spec_file, input, batch, max_file_size, options, dtype)
    roof = None
    if profile is not None:
        try:
            roof = roofline_data(load_profile(profile), rep, profile_config)
        except SpecError as err:
            fail(err)
        except ValueError as exc:
            fail(f"--profile {text(profile)}: {text(exc)}")
    svg = note = None
    try:
        svg = clean_svg(run_dot(to_dot(rep, depth), "svg"))
    except DotError as err:
        note = f"Graph left out: {err}"
    _write(output, render_html(rep, depth, svg, note, roof))


@app.command()
def fit(
    spec_file: Path = typer.Argument(..., metavar="SPEC", help="YAML spec file"),
    memory: str = typer.Option(..., "--memory", "-m",
                               help="device memory, e.g. 24GB (24e9 bytes) or 24GiB (24*2^30)"),
    input: Optional[list[str]] = typer.Option(None, "--input", "-i",
                                              help="per-sample input shape, e.g. 3x224x224"),
    dtype: str = typer.Option("float32", help=DTYPE_HELP),
    weight_dtype: Optional[str] = WEIGHT_DTYPE,
    activation_dtype: Optional[str] = ACTIVATION_DTYPE,
    kv_dtype: Optional[str] = KV_DTYPE,
    quant_group_size: Optional[str] = GROUP_SIZE,
    format: str = typer.Option("table", "--format", "-f", help="table | json"),
    train: bool = typer.Option(False, "--train", help="fit a training step (else inference)"),
    device: str = DEVICE,
    optimizer: str = OPTIMIZER,
    precision: Optional[str] = PRECISION,
    checkpoint: Optional[list[str]] = CHECKPOINT,
    loss: str = LOSS,
) -> None:
    """The largest batch that fits in --memory, with the memory breakdown at that batch.

    Inference: weights + buffers + the inference peak of live activations. With --train:
    the peak of a training step (weights, gradients, optimizer state, saved activations).
    Exit codes: 0 a batch fits; 1 not even batch 1 fits (the memory it needs is shown);
    2 invalid input or option.
    """
    from . import spec as spec_mod
    from .fit import fit_batch
    from .render.fit import render_fit

    if format not in ("table", "json"):
        fail(f"--format: unknown format {format!r} (table, json)")
    try:
        budget = _parse_memory(memory)
        dtypes = dtypes_option(dtype, weight_dtype, activation_dtype, kv_dtype,
                               quant_group_size)
        options = train_options(train, device, optimizer, precision, checkpoint, loss)
        s = spec_mod.load(spec_file)
        result = fit_batch(s, budget, dtype=dtypes, input_shapes=_input_shapes(s, input),
                           train=options)
    except SpecError as err:
        fail(err)
    sys.stdout.write(render_fit(result, format))
    if result.batch is None:
        raise typer.Exit(1)


def _parse_memory(text: str) -> int:
    from .units import parse_quantity

    try:
        value = parse_quantity(text)
    except ValueError as exc:
        raise SpecError(str(exc), file="--memory") from None
    if value < 1 or value.denominator != 1:
        raise SpecError(f"{text!r} is not a whole positive number of bytes", file="--memory")
    return int(value)


CHECK_FORMAT_HELP = "text | json | github (workflow annotations) | junit (XML)"


@app.command()
def check(
    paths: Optional[list[Path]] = typer.Argument(None, metavar="[PATH]...",
                                                 help="spec files or folders (default: specs/)"),
    torch: bool = typer.Option(False, "--torch",
                               help="also cross-check every spec against PyTorch (the torch extra)"),
    format: str = typer.Option("text", "--format", "-f", help=CHECK_FORMAT_HELP),
    output: Optional[Path] = typer.Option(None, "--output", "-o",
                                          help="write the report to this file (e.g. junit XML) "
                                               "and a text summary to stdout"),
    convention: Optional[str] = typer.Option(None, "--convention",
                                             help="MAC counting convention of macs/flops "
                                                  "expectations: netcalc (default) | fvcore | "
                                                  "flopcounter | torchinfo"),
    follow_symlinks: bool = typer.Option(False, "--follow-symlinks",
                                         help="follow symbolic links that stay inside the "
                                              "folder given (else they are reported)"),
    max_files: int = typer.Option(1000, "--max-files", min=1,
                                  help="stop (exit 2) when more spec files are found"),
    max_seconds: float = typer.Option(600.0, "--max-seconds", min=0,
                                      help="stop (exit 2) when the run takes longer"),
    max_file_size: str = MAX_FILE_SIZE_OPTION,
) -> None:
    """Check specs: validate them, evaluate their `expect:` and `budget:` blocks.

    Exit code 0: all pass; 1: an expectation, budget or cross-check failed; 2: a spec
    is invalid (FILE:LINE:COL: message), an option is wrong or a --max-* cap is hit.
    """
    from . import check as check_mod
    from .render.check import CHECK_FORMATS, render_check, render_text

    if format not in CHECK_FORMATS:
        fail(f"--format: unknown format {format!r} ({', '.join(CHECK_FORMATS)})")
    if torch and not check_mod.torch_available():
        fail(check_mod.TORCH_MISSING)
    max_bytes = _file_size(max_file_size)
    try:
        run = check_mod.run(paths or [Path("specs")], torch=torch, convention=convention,
                            follow_symlinks=follow_symlinks, max_files=max_files,
                            max_seconds=max_seconds, max_file_bytes=max_bytes)
    except (check_mod.TorchUnavailable, check_mod.RunLimit, ValueError) as exc:
        fail(f"--convention: {exc}" if isinstance(exc, ValueError) else str(exc))
    text = render_check(run, format)
    if output is not None:
        try:
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_text(text, encoding="utf-8")
        except OSError as exc:
            fail(f"--output {output}: cannot write: {exc.strerror or exc}")
        if format != "text":
            text = render_text(run)
    sys.stdout.write(text)
    raise typer.Exit(run.exit_code)


@app.command()
def schema() -> None:
    """Print the JSON Schema of the spec format (generated from the layer registry)."""
    from .schema import schema_json

    sys.stdout.write(schema_json())


@app.command()
def layers(
    name: Optional[str] = typer.Argument(None, help="one layer type, e.g. Conv2d"),
    format: str = typer.Option("text", "--format", "-f", help="text | json"),
) -> None:
    """List the supported layer types, or one with its arguments, defaults and formulas."""
    from .errors import did_you_mean
    from .layers import REGISTRY
    from .schema import layers_dict, layers_text

    if format not in ("text", "json"):
        fail(f"--format: unknown format {format!r} (text, json)")
    if name is not None and name not in REGISTRY:
        fail(f"unknown layer type {name!r}{did_you_mean(name, REGISTRY)}; "
             "`netcalc layers` lists them")
    if format == "json":
        import json

        data = layers_dict()
        sys.stdout.write(json.dumps(data if name is None else {name: data[name]}, indent=2) + "\n")
    else:
        sys.stdout.write(layers_text(name))


@app.command()
def profile(
    spec_file: Path = typer.Argument(..., metavar="SPEC", help="YAML spec file"),
    device: str = typer.Option("cpu", "--device", "-d", help="cpu | cuda | all"),
    batch: str = typer.Option("1", "--batch", "-b", help="batch sizes to sweep, e.g. 1,8,32"),
    dtype: str = typer.Option("float32", help="float32 | float16 | bfloat16"),
    warmup: int = typer.Option(3, min=0, help="untimed runs before timing (per configuration)"),
    repeat: Optional[int] = typer.Option(None, min=1,
                                         help="exactly N timed blocks (else adaptive, --min-time)"),
    min_time: Optional[float] = typer.Option(None, "--min-time",
                                             help="seconds of timed blocks per configuration "
                                                  "(adaptive, default 1.0)"),
    threads: Optional[int] = typer.Option(None, min=1, help="CPU threads (torch.set_num_threads)"),
    channels_last: bool = typer.Option(False, "--channels-last",
                                       help="channels-last memory format for model and input"),
    compile: bool = typer.Option(False, "--compile",
                                 help="torch.compile the model (falls back to eager on failure)"),
    cudnn_benchmark: bool = typer.Option(False, "--cudnn-benchmark",
                                         help="let cuDNN autotune kernels (off by default)"),
    per_layer: bool = typer.Option(True, "--per-layer/--no-per-layer",
                                   help="time every layer in a separate hooked pass"),
    top: int = typer.Option(10, min=1, help="layers shown per configuration in the table"),
    recalibrate: bool = typer.Option(False, "--recalibrate",
                                     help="measure peak FLOP/s and bandwidth again (else cached)"),
    input: Optional[list[str]] = typer.Option(None, "--input", "-i",
                                              help="per-sample input shape, e.g. 3x224x224"),
    format: str = typer.Option("table", "--format", "-f", help="table | json"),
    plot: Optional[Path] = typer.Option(None, "--plot", metavar="FILE",
                                        help="also plot the per-layer roofline, e.g. "
                                             "roofline.png (needs matplotlib: the plots extra)"),
) -> None:
    """Time the network on CPU and/or CUDA: latency, throughput, per-layer, roofline (needs torch).

    Runs the cross-check first (a mismatch is reported and exits 1 after timing).
    Exit codes: 0 ok, 1 cross-check mismatch, 2 invalid input or device, 130 Ctrl-C.
    """
    from . import spec as spec_mod

    if format not in ("table", "json"):
        fail(f"--format: unknown format {format!r} (table, json)")
    if repeat is not None and min_time is not None:
        fail("use one of --repeat N or --min-time S, not both")
    _plots_available(plot)
    try:
        import torch  # noqa: F401
    except ImportError:
        fail("netcalc profile needs torch: pip install torch fvcore (the CPU wheel of torch "
             "is enough)")
    from .render.profile import make_progress, render_profile_json, render_profile_table
    from .torch.profile import ProfileError, ProfileOptions, parse_batches, profile_spec

    try:
        s = spec_mod.load(spec_file)
        shapes_ = _input_shapes(s, input)
        options = ProfileOptions(
            device=device, batches=parse_batches(batch), dtype=dtype, warmup=warmup,
            repeat=repeat, min_time=1.0 if min_time is None else min_time, threads=threads,
            channels_last=channels_last, compile=compile, cudnn_benchmark=cudnn_benchmark,
            per_layer=per_layer, recalibrate=recalibrate, top=top)
        options.validate()
        result = profile_spec(spec_file, options, input_shapes=shapes_,
                              progress=make_progress(format == "table"))
    except SpecError as err:
        fail(err.located(str(spec_file)))
    except ProfileError as err:
        fail(err)
    for skipped in result.skipped:
        typer.echo(f"{skipped['device']} skipped: {text(skipped['reason'])}", err=True)
    if plot is not None:
        _plot(lambda plots: plots.roofline_plot(result, plot))
    if format == "json":
        sys.stdout.write(render_profile_json(result))
    else:
        sys.stdout.write(render_profile_table(result, top))
    if result.interrupted:
        typer.echo("interrupted: reported what was measured", err=True)
        raise typer.Exit(130)
    if not result.ok:
        cc = result.crosscheck
        if cc.ran:
            typer.echo(f"cross-check failed: {len(cc.mismatches)} mismatch(es) "
                       "between the built module and the analysis (see the report)", err=True)
        else:
            typer.echo(f"cross-check could not run: {text(cc.error)}", err=True)
        raise typer.Exit(1)


@app.command()
def verify(
    spec_file: Path = typer.Argument(..., metavar="SPEC", help="YAML spec file"),
    batch: int = typer.Option(1, "--batch", "-b", min=1, help="batch size (dim 0)"),
    device: str = typer.Option("cpu", "--device", "-d",
                               help="cpu | cuda | meta (meta: no weights allocated; no fvcore, "
                                    "no receptive fields)"),
    convention: str = typer.Option("netcalc", "--convention", "-c", help=CONVENTION_HELP),
    input: Optional[list[str]] = typer.Option(None, "--input", "-i",
                                              help="per-sample input shape, e.g. 3x224x224"),
    format: str = typer.Option("table", "--format", "-f", help="table | json"),
    show: str = typer.Option("all", "--show", help="all | differences (rows not a plain match)"),
    rf: bool = typer.Option(True, "--rf/--no-rf", help="measure receptive fields by backprop"),
    train: bool = TRAIN,
    optimizer: str = OPTIMIZER,
    precision: Optional[str] = PRECISION,
    checkpoint: Optional[list[str]] = CHECKPOINT,
    loss: str = LOSS,
) -> None:
    """Cross-check every analytic number against PyTorch (needs the torch extra).

    Builds the spec as an nn.Module and compares, per layer and in total: output
    shapes, params, trainable params, buffers, MACs against fvcore,
    torch.utils.flop_counter and torchinfo, and receptive fields measured by
    backpropagation. Each row's verdict: match, convention (a documented rule of
    netcalc.conventions gives the tool's number exactly) or MISMATCH.

    With --train: one real training step on --device (cpu, or cuda), proving per layer
    backward FLOPs (FlopCounterMode) and saved bytes (saved_tensors_hooks), and in total
    the optimizer state and the peak of live storages (within 5%).

    Exit codes: 0 no mismatch; 1 a mismatch; 2 invalid input, or torch missing.
    """
    from . import spec as spec_mod
    from .render.crosscheck import CROSSCHECK_FORMATS, SHOW, render_crosscheck

    if format not in CROSSCHECK_FORMATS:
        fail(f"--format: unknown format {format!r} ({', '.join(CROSSCHECK_FORMATS)})")
    if show not in SHOW:
        fail(f"--show: unknown value {show!r} ({', '.join(SHOW)})")
    _check_convention(convention)
    try:
        from .torch.crosscheck import crosscheck
    except ImportError as exc:
        fail(f"netcalc verify needs torch and fvcore: pip install torch fvcore ({exc})")
    try:
        s = spec_mod.load(spec_file)
        opts = train_options(train, device, optimizer, precision, checkpoint, loss, convention)
        if opts is not None:
            from .torch.traincheck import crosscheck_training

            result = crosscheck_training(s, opts, batch=batch, convention=convention,
                                         input_shapes=_input_shapes(s, input))
        else:
            result = crosscheck(s, batch=batch, device=device, convention=convention,
                                input_shapes=_input_shapes(s, input), rf=None if rf else False)
    except SpecError as err:  # torch's refusals too, as one line (netcalc.torch.guard)
        fail(err.located(str(spec_file)))
    sys.stdout.write(render_crosscheck(result, format, show))
    if not result.ok:
        raise typer.Exit(1)


from . import cli_convert  # noqa: E402,F401 - registers `import` and `export` on app
