"""``python -m kerasonnx``: the same command line as the ``kerasonnx`` script."""
from .cli import main

main(prog_name="kerasonnx")
