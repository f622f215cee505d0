"""kerasonnx command line: ``kerasonnx convert``, ``kerasonnx inspect``, ``kerasonnx layers``.

Every error a user can cause is printed as one line on stderr, without a traceback, and the
command exits with status 2.
"""
from __future__ import annotations

import functools
import json
import os
import sys

import click

from converter import ConversionError, inspect as inspect_model
from converter.convert import DEFAULT_OPSET, MAX_OPSET, MIN_OPSET, convert as convert_model
from converter.layer_table import layer_rows, markdown_table
from converter.report import render_text


def user_errors(command):
    """Print ``ConversionError`` as ``error: ...`` and exit 2."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except ConversionError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)

    return run


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="kerasonnx", prog_name="kerasonnx")
def main():
    """Convert saved Keras attention models to ONNX, without TensorFlow.

    MODEL is a .keras file, a legacy .h5 file, or model.to_json() text (then pass its
    weights with --weights).
    """


WEIGHTS_HELP = ("Weights file for a JSON model (.weights.h5 or legacy .h5); replaces the "
                "stored weights of a .keras/.h5 model.")


@main.command()
@click.argument("model", type=click.Path(dir_okay=True))
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Where to write the ONNX model [default: MODEL with the suffix .onnx].")
@click.option("--weights", type=click.Path(), default=None, help=WEIGHTS_HELP)
@click.option("--opset", type=int, default=DEFAULT_OPSET, show_default=True,
              help=f"ONNX opset, {MIN_OPSET} to {MAX_OPSET}. 23 and up run attention on ONNX's "
                   f"Attention operator (onnxruntime 1.23 or newer) wherever it matches Keras "
                   f"exactly; {MIN_OPSET}-22 use MatMul/Softmax, for older runtimes.")
@user_errors
def convert(model, output, weights, opset):
    """Convert MODEL to ONNX. Input and output names stay Keras' names; None dims stay
    dynamic (batch, sequence length). Nothing is written if conversion fails."""
    result = convert_model(model, weights, opset)
    output = output or os.path.splitext(model)[0] + ".onnx"
    result.save(output)
    graph = result.model.graph
    click.echo(f"wrote {output}: opset {opset}, {len(graph.input)} input(s), "
               f"{len(graph.output)} output(s), {len(graph.node)} ONNX nodes")


@main.command()
@click.argument("model", type=click.Path(dir_okay=True))
@click.option("--weights", "weights", type=click.Path(), default=None, help=WEIGHTS_HELP)
@click.option("--format", "output_format", type=click.Choice(["text", "json"]),
              default="text", show_default=True, help="text for people, json for tools.")
@user_errors
def inspect(model, weights, output_format):
    """Show every layer call of MODEL: class, inputs by role (query=, value=, key=, ...),
    output shapes and dtypes, parameter count and the masks that flow in and out."""
    report = inspect_model(model, weights)
    if output_format == "json":
        click.echo(json.dumps(report, indent=2))
    else:
        click.echo(render_text(report))


@main.command()
@click.option("--format", "output_format", type=click.Choice(["text", "markdown"]),
              default="text", show_default=True)
def layers(output_format):
    """List the Keras layer classes kerasonnx converts, and those it only reads."""
    if output_format == "markdown":
        click.echo(markdown_table())
        return
    for family, converted, read_only in layer_rows():
        click.echo(f"{family}:")
        if converted:
            click.echo(f"  converted: {', '.join(converted)}")
        if read_only:
            click.echo(f"  inspect only: {', '.join(read_only)}")


if __name__ == "__main__":
    main()
