"""`netcalc import` and `netcalc export`: a module or a Hugging Face config into a
spec, and a spec into PyTorch code. Registered on :data:`netcalc.cli.app`; torch and
the importers load only when a command runs."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from .cli import _input_shapes, app, fail, parse_input_option
from .errors import SpecError

IMPORT_INPUT_HELP = ("per-sample input shape, e.g. 3x224x224, or NAME=SIZES[:int64] "
                     "(repeatable; int64 for token ids)")
INPUT_DTYPES = ("float32", "int64")


def parse_import_inputs(values: list[str] | None) -> list[tuple[str, tuple[int, ...], str]]:
    """``--input`` of ``import``: ``3x224x224``, or ``NAME=SIZES[:DTYPE]`` (repeatable);
    DTYPE is float32 (default) or int64. Returns (name, sizes, dtype) in order; the name
    is '' for an unnamed input, which then must be the only one."""
    parsed = []
    for value in values or ():
        sizes, _, dtype = value.partition(":")
        dtype = dtype or "float32"
        if dtype not in INPUT_DTYPES:
            raise SpecError(f"{value!r}: unknown dtype {dtype!r} ({' | '.join(INPUT_DTYPES)})",
                            file="--input")
        shape = parse_input_option([sizes])
        assert shape is not None
        [(name, dims)] = shape.items()
        if name and not name.isidentifier():
            raise SpecError(f"{value!r}: the input name must be an identifier", file="--input")
        if any(n == name for n, _, _ in parsed):
            raise SpecError(f"{value!r}: input {name or '(unnamed)'!r} given twice",
                            file="--input")
        parsed.append((name, dims, dtype))
    if len(parsed) > 1 and any(not name for name, _, _ in parsed):
        raise SpecError("several inputs: name each one, NAME=SIZES", file="--input")
    return parsed


def _kwargs_option(value: str | None) -> dict:
    if value is None:
        return {}
    import json

    try:
        kwargs = json.loads(value)
    except ValueError as exc:
        raise SpecError(f"not JSON: {exc}", file="--kwargs") from None
    if not isinstance(kwargs, dict):
        raise SpecError(f"expected a JSON object like '{{\"num_classes\": 10}}', got "
                        f"{type(kwargs).__name__}", file="--kwargs")
    return kwargs


def _write_source(source: str, output: Path | None, force: bool) -> None:
    """A written spec or module to ``-o`` (refusing to overwrite without --force), or to
    stdout."""
    if output is None:
        sys.stdout.write(source)
        return
    try:
        with open(output, "w" if force else "x", encoding="utf-8") as f:
            f.write(source)
    except FileExistsError:
        fail(f"--output: {output} exists (add --force to overwrite it)")
    except OSError as exc:
        fail(f"--output: cannot write {output}: {exc.strerror or exc}")


@app.command("import")
def import_(
    target: Optional[str] = typer.Argument(None, metavar="[TARGET]",
                                           help="package.module:callable building an "
                                                "nn.Module, e.g. torchvision.models:resnet50"),
    input: Optional[list[str]] = typer.Option(None, "--input", "-i", help=IMPORT_INPUT_HELP),
    kwargs: Optional[str] = typer.Option(None, "--kwargs",
                                         help="keyword arguments of TARGET as a JSON object"),
    output: Optional[Path] = typer.Option(None, "--output", "-o",
                                          help="write the spec to this file (else stdout)"),
    force: bool = typer.Option(False, "--force", help="overwrite the -o file"),
    opaque: bool = typer.Option(False, "--opaque",
                                help="write what cannot be expressed as Opaque layers "
                                     "(measured shape and params; MACs unknown)"),
    verify: bool = typer.Option(False, "--verify",
                                help="prove the spec against the source module (netcalc verify)"),
    hf_config: Optional[Path] = typer.Option(None, "--hf-config",
                                             help="a local Hugging Face config.json "
                                                  "(instead of TARGET)"),
    seq_len: Optional[int] = typer.Option(None, "--seq-len", min=1,
                                          help="with --hf-config: the sequence length"),
    decoder_seq_len: Optional[int] = typer.Option(None, "--decoder-seq-len", min=1,
                                                  help="with --hf-config: the decoder's "
                                                       "sequence length (seq2seq)"),
    task: Optional[str] = typer.Option(None, "--task",
                                       help="with --hf-config: causal-lm | seq2seq | encoder"),
) -> None:
    """Write a spec from a PyTorch module (TARGET) or a Hugging Face config (--hf-config).

    The spec keeps the module's names (its state_dict keys), starts with a provenance
    comment and an `expect:` block measured on the source; --verify proves it against
    the source module. Import runs TARGET's code: use it on trusted code only.
    Exit codes: 0 written (and verified); 1 --verify found a mismatch; 2 invalid input.
    """
    if (target is None) == (hf_config is None):
        fail("give one of TARGET (package.module:callable) or --hf-config config.json")
    try:
        if hf_config is not None:
            if input or kwargs is not None or opaque:
                raise SpecError("--input, --kwargs and --opaque are for TARGET; "
                                "--hf-config takes --seq-len, --decoder-seq-len, --task",
                                file="--hf-config")
            _import_hf(str(hf_config), task, seq_len, decoder_seq_len, output, force, verify)
        else:
            if seq_len is not None or decoder_seq_len is not None or task is not None:
                raise SpecError("--seq-len, --decoder-seq-len and --task are for "
                                "--hf-config; TARGET takes --input", file="--task")
            _import_target(target or "", parse_import_inputs(input), _kwargs_option(kwargs),
                           opaque, output, force, verify)
    except SpecError as err:
        fail(err)


def _import_hf(path: str, task: str | None, seq_len: int | None, decoder_seq_len: int | None,
               output: Path | None, force: bool, verify: bool) -> None:
    try:
        from .importers import hf
    except ImportError as exc:
        fail(f"--hf-config: the Hugging Face importer is not available ({exc})")
    spec_text = hf.spec_text(path, task=task, seq_len=seq_len, decoder_seq_len=decoder_seq_len)
    _write_source(spec_text, output, force)
    if verify:
        _report_verify(hf.verify(path, spec_text, task=task), output)


def _import_target(target: str, inputs: list, kwargs: dict, opaque: bool,
                   output: Path | None, force: bool, verify: bool) -> None:
    try:
        import torch  # noqa: F401
    except ImportError as exc:
        fail(f"netcalc import needs torch: pip install torch ({exc})")
    from .torch import importer

    imported = importer.import_target(target, kwargs, inputs, opaque=opaque)
    _write_source(imported.text, output, force)
    if verify:
        _report_verify(importer.verify(imported), output)


def _report_verify(result, output: Path | None) -> None:
    """The cross-check of an imported spec: to stdout when the spec went to a file, else
    to stderr (stdout holds the spec); exit 1 on a mismatch."""
    from .render.crosscheck import render_crosscheck

    typer.echo(render_crosscheck(result, "table", "differences").rstrip("\n"),
               err=output is None)
    if not result.ok:
        raise typer.Exit(1)


@app.command()
def export(
    spec_file: Path = typer.Argument(..., metavar="SPEC", help="YAML spec file"),
    output: Optional[Path] = typer.Option(None, "--output", "-o",
                                          help="Python file to write (default: stdout)"),
    force: bool = typer.Option(False, "--force", help="overwrite --output if it exists"),
    input: Optional[list[str]] = typer.Option(None, "--input", "-i",
                                              help="per-sample input shape, e.g. 3x224x224 "
                                                   "(for arguments inferred from it)"),
    verify: bool = typer.Option(False, "--verify",
                                help="load the written code and cross-check it against the "
                                     "spec (as netcalc verify, on the meta device)"),
) -> None:
    """Write the spec as readable PyTorch code (needs torch): one nn.Module class per block.

    Submodules are created under the spec's names (state_dict keys are the report's
    paths), forward is straight-line code. The file imports only torch.
    Exit codes: 0 written; 1 --verify found a mismatch; 2 invalid input, an existing
    --output without --force, or torch missing.
    """
    from . import spec as spec_mod

    try:
        from .torch.export import export_source, verify_source
    except ImportError as exc:
        fail(f"netcalc export needs torch: pip install torch ({exc})")
    try:
        s = spec_mod.load(spec_file)
        source = export_source(s, input_shapes=_input_shapes(s, input))
    except SpecError as err:
        fail(err.located(str(spec_file)))
    _write_source(source, output, force)
    if verify:
        from .render.crosscheck import render_crosscheck

        try:
            result = verify_source(s, source, input_shapes=_input_shapes(s, input))
        except SpecError as err:
            fail(err.located(str(spec_file)))
        if not result.ok:
            sys.stderr.write(render_crosscheck(result, "table", "differences"))
            raise typer.Exit(1)
        typer.echo(f"verified: {len(result.rows)} checks of the exported module against the "
                   "spec match", err=True)
