"""kerasonnx command line: ``kerasonnx inspect``, ``kerasonnx layers``.

Every error a user can cause is printed as one line on stderr, without a traceback, and the
command exits with status 2.
"""
from __future__ import annotations

import functools
import json
import sys

import click

from converter import ConversionError, inspect as inspect_model
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


@main.command()
@click.argument("model", type=click.Path(dir_okay=True))
@click.option("--weights", "weights", type=click.Path(), default=None,
              help="Weights file for a JSON model (.weights.h5 or legacy .h5); "
                   "replaces the stored weights of a .keras/.h5 model.")
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
    """List the Keras layer classes kerasonnx knows, by family."""
    if output_format == "markdown":
        click.echo(markdown_table())
        return
    for family, names in layer_rows():
        click.echo(f"{family}: {', '.join(names)}")


if __name__ == "__main__":
    main()
