"""The command line: options in, one library call, render out.

Exit codes: 0 success; 1 a check (expectation, budget, cross-check) failed;
2 invalid input (a spec error printed as FILE:LINE:COL: message, or a bad option).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn, Optional

import typer

from .errors import SpecError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Layer and model calculator for neural networks, from a YAML spec.",
    pretty_exceptions_enable=False,
)

FORMAT_HELP = "table (human units) | json | csv | markdown (exact integers)"


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
    typer.echo(str(err), err=True)
    raise typer.Exit(code)


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
    batch: int = typer.Option(1, "--batch", "-b", min=1, help="batch size (dim 0)"),
    dtype: str = typer.Option("float32", help="float32 | float16 | bfloat16 | int8"),
    format: str = typer.Option("table", "--format", "-f", help=FORMAT_HELP),
    depth: Optional[int] = typer.Option(None, min=1, help="collapse block instances below this depth"),
    kv_cache: bool = typer.Option(False, "--kv-cache",
                                  help="show KV-cache bytes per token (decoder models)"),
) -> None:
    """Per-layer output shapes, receptive fields, params, MACs and memory (no torch needed)."""
    from . import analysis, graph, spec as spec_mod
    from .render import FORMATS, render

    if format not in FORMATS:
        fail(f"--format: unknown format {format!r} ({', '.join(FORMATS)})")
    try:
        s = spec_mod.load(spec_file)
        report = analysis.analyze_graph(graph.build(s, batch, _input_shapes(s, input)), dtype)
    except SpecError as err:
        fail(err)
    sys.stdout.write(render(report, format, depth))
