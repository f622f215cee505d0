"""kerasonnx command line: ``convert``, ``verify``, ``inspect``, ``layers``.

The contract, for every command and every input: exit 0 on success, 1 only when ``verify``
finds that the models compute different numbers, 2 for every error, which is printed as
exactly one line on stderr, ``error: <file>: <what is wrong, where, what to do>``, without
a traceback (``kerasonnx --debug <command> ...`` prints one first).
"""
from __future__ import annotations

import functools
import json
import os
import sys
import time
import traceback
import warnings

import click

from . import ConversionError, inspect as inspect_model
from .errors import describe_exception, one_line
from .convert import (DEFAULT_OPSET, EXTERNAL_DATA_THRESHOLD, MAX_OPSET, MIN_OPSET,
                      convert as convert_model)
from .verify import verify as verify_models
from .layer_table import layer_rows, markdown_table
from .report import render_text


FILE_ARGUMENTS = ("model", "keras_model", "onnx_model", "weights", "inputs", "output",
                  "json_path")


def fail(message: str) -> None:
    """The one line of an error, and exit status 2."""
    click.echo(f"error: {one_line(message)}", err=True)
    sys.exit(2)


def _debugging() -> bool:
    context = click.get_current_context(silent=True)
    return bool(context and (context.find_root().params or {}).get("debug"))


def user_errors(command):
    """Run a command under the contract: a ``ConversionError`` (or anything unexpected) is
    printed as one ``error: <file>: ...`` line and the command exits with 2. Warnings of
    the libraries kerasonnx uses are not shown (a traceback and warnings with --debug)."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        files = [str(kwargs[k]) for k in FILE_ARGUMENTS if kwargs.get(k) is not None]
        debug = _debugging()
        try:
            with warnings.catch_warnings():
                if not debug:
                    warnings.simplefilter("ignore")
                return command(*args, **kwargs)
        except Exception as exc:
            if debug:
                traceback.print_exc()
            if isinstance(exc, ConversionError):
                message = str(exc)
            else:
                message = (f"kerasonnx failed unexpectedly ({describe_exception(exc)}); "
                           f"please report this with the model (--debug shows where)")
            if files and not any(message.startswith(f) for f in files):
                message = f"{files[0]}: {message}"
            fail(message)

    return run


class ContractGroup(click.Group):
    """Click's own usage errors (a missing argument, an unknown option) follow the contract
    too: one ``error:`` line, exit status 2."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True,
             **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            status = super().main(args, prog_name, complete_var, standalone_mode=False,
                                  **extra)
        except click.ClickException as exc:
            usage = ""
            if isinstance(exc, click.UsageError) and exc.ctx is not None:
                usage = f" (see {exc.ctx.command_path} --help)"
            fail(f"{exc.format_message()}{usage}")
        except click.Abort:
            fail("interrupted")
        sys.exit(status if isinstance(status, int) else 0)


@click.group(cls=ContractGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="kerasonnx", prog_name="kerasonnx")
@click.option("--debug", is_flag=True,
              help="On an error, print the Python traceback before the error line.")
def main(debug):
    """Convert saved Keras attention models to ONNX, without TensorFlow.

    MODEL is a .keras file, a legacy .h5 file, or model.to_json() text (then pass its
    weights with --weights). Exit status: 0 success, 1 `verify` found different numbers,
    2 error (one line on stderr: error: <file>: ...).
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
@click.option("--precision", type=click.Choice(["keras", "float32", "float16"]),
              default="keras", show_default=True,
              help="keras: compute in the dtypes the model's dtype policies say (mixed_float16 "
                   "-> float16 with float32 where Keras upcasts); float32: everything in "
                   "float32, for runtimes without half precision; float16: weights and "
                   "compute of a float32 model in half, normalizations and softmax in "
                   "float32, inputs and outputs unchanged.")
@click.option("--verify", "then_verify", is_flag=True,
              help="Then run `kerasonnx verify` on the result (needs TensorFlow); exit 1 if "
                   "the numbers differ (the ONNX file is kept).")
@click.option("--external-data/--no-external-data", default=None,
              help=f"Keep the weights in a data file beside the model, OUTPUT.data (needed "
                   f"past 2 GiB) [default: when the weights pass "
                   f"{EXTERNAL_DATA_THRESHOLD >> 20} MiB].")
@click.option("--with-past", is_flag=True,
              help="Export a causal decoder with a key/value cache, in Optimum's names: "
                   "inputs past_key_values.{i}.key/.value (batch, kv_heads, past_length, "
                   "head_dim) and outputs present.{i}.key/.value (past and new positions) "
                   "for the i-th causal self-attention layer; feed only the new tokens (and "
                   "positions past_length...). A layer masked by Embedding(mask_zero=True) "
                   "also caches its key mask: past_key_values.{i}.mask (batch, past_length) "
                   "bool in, present.{i}.mask out. Feed each present.* back as "
                   "past_key_values.*; an empty cache runs the prompt. Refused, saying why, "
                   "for models that are not causal decoders.")
@click.option("-q", "--quiet", is_flag=True,
              help="No progress bar or messages (shown on stderr when it is a terminal).")
@user_errors
def convert(model, output, weights, opset, precision, then_verify, external_data, with_past,
            quiet):
    """Convert MODEL to ONNX. Input and output names stay Keras' names; None dims stay
    dynamic (batch, sequence length). Nothing is written if conversion fails."""
    output = output or os.path.splitext(model)[0] + ".onnx"
    if os.path.exists(output) and os.path.exists(model) and os.path.samefile(output, model):
        raise ConversionError(f"{model}: the output would overwrite the model itself; pass "
                              f"another file with -o")
    bar = None if quiet or not sys.stderr.isatty() else ProgressBar()
    try:
        result = convert_model(model, weights, opset, precision, external_data=external_data,
                               data_folder=os.path.dirname(os.path.abspath(output)),
                               progress=bar, with_past=with_past)
        result.save(output)
    finally:
        if bar is not None:
            bar.close()
    graph = result.model.graph
    weights_in = "" if result.data is None else f", weights in {result.data.path}"
    click.echo(f"wrote {output}: opset {opset}, {precision} precision, "
               f"{len(graph.input)} input(s), {len(graph.output)} output(s), "
               f"{len(graph.node)} ONNX nodes{weights_in}")
    for note in result.notes:
        click.echo(f"note: {note}")
    if then_verify:
        report = verify_models(model, output, weights=weights, progress=_progress(quiet),
                               with_past=with_past)
        click.echo(report.summary())
        sys.exit(0 if report.passed else 1)


class ProgressBar:
    """Weight bytes folded and written, as a bar on stderr, drawn only once a conversion has
    taken a second (short ones print nothing) and at most ten times a second."""

    WIDTH = 30

    def __init__(self):
        self._start = self._drawn = time.monotonic()
        self._shown = False
        self._last = (0, 0)

    def __call__(self, done: int, total: int) -> None:
        self._last = (done, total)
        now = time.monotonic()
        if now - self._start < 1 or (self._shown and now - self._drawn < 0.1):
            return
        self._draw(done, total)
        self._drawn, self._shown = now, True

    def close(self) -> None:
        if self._shown:
            self._draw(*self._last)
            sys.stderr.write("\n")
            sys.stderr.flush()

    def _draw(self, done: int, total: int) -> None:
        fraction = min(done / total, 1.0) if total else 1.0
        filled = int(self.WIDTH * fraction)
        sys.stderr.write(f"\rconverting [{'#' * filled}{'.' * (self.WIDTH - filled)}] "
                         f"{done / 2**20:,.0f} of {total / 2**20:,.0f} MiB of weights")
        sys.stderr.flush()


def _integers(text: str) -> tuple:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a comma-separated list of integers") from None
    if not values or min(values) < 1:
        raise click.BadParameter(f"{text!r}: give positive integers, like 1,4")
    return values


def _progress(quiet: bool):
    """Progress lines on stderr, only when it is a terminal: in a pipe or a CI log, stderr
    holds nothing but the one error line of the contract."""
    if quiet or not click.get_text_stream("stderr").isatty():
        return None
    return lambda message: click.echo(message, err=True)


@main.command()
@click.argument("keras_model", type=click.Path(dir_okay=True))
@click.argument("onnx_model", type=click.Path(dir_okay=False))
@click.option("--weights", type=click.Path(), default=None, help=WEIGHTS_HELP)
@click.option("--inputs", type=click.Path(dir_okay=False), default=None,
              help="An .npz with one array per model input, named after it, used as given "
                   "[default: inputs generated from the model's signature].")
@click.option("--batch", "batches", default="1,4", show_default=True,
              help="Batch sizes to generate inputs for.")
@click.option("--length", "lengths", default="7,32", show_default=True,
              help="Comma-separated lengths for the None dims (sequence lengths) of "
                   "generated inputs, e.g. 3,6 (given twice, the last one counts).")
@click.option("--atol", type=float, default=None,
              help="Absolute tolerance: an element passes if |onnx - keras| <= atol + "
                   "rtol * |keras| [default: by the least precise dtype either side computes "
                   "in: float32 1e-5, float16 1e-2, bfloat16 8e-2].")
@click.option("--rtol", type=float, default=None,
              help="Relative tolerance [default: float32 1e-4, float16 1e-2, bfloat16 8e-2].")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="Also write the report as JSON (schema kerasonnx.verify/2) to this file.")
@click.option("--per-layer", is_flag=True,
              help="Compare every layer output even when the outputs agree.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of generated inputs.")
@click.option("--with-past", is_flag=True,
              help="ONNX_MODEL was converted --with-past: run it as a generation loop, a "
                   "prompt of the shortest --length on an empty cache, then one token at a "
                   "time up to the longest (4 tokens past a single length), and compare "
                   "every step with Keras run on the whole prefix.")
@click.option("-q", "--quiet", is_flag=True,
              help="No progress messages (shown on stderr when it is a terminal).")
@user_errors
def verify(keras_model, onnx_model, weights, inputs, batches, lengths, atol, rtol, json_path,
           per_layer, seed, with_past, quiet):
    """Check that ONNX_MODEL computes what KERAS_MODEL computes, element by element.

    Runs the Keras model in the Keras that wrote it (Keras 3, or tf_keras for Keras 2
    files; needs TensorFlow) and the ONNX model in onnxruntime, on the same inputs. When
    outputs differ, names the first layer whose output diverges. Exit status: 0 equal,
    1 different, 2 error.
    """
    report = verify_models(keras_model, onnx_model, weights=weights, inputs=inputs,
                           batches=_integers(batches), lengths=_integers(lengths), atol=atol,
                           rtol=rtol, per_layer=per_layer, seed=seed, progress=_progress(quiet),
                           with_past=with_past)
    if json_path:
        try:
            with open(json_path, "w") as f:
                json.dump(report.to_json(), f, indent=2)
        except OSError as exc:
            raise ConversionError(f"{json_path}: cannot write the report there "
                                  f"({exc.strerror})") from None
    click.echo(report.summary())
    sys.exit(0 if report.passed else 1)


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
