"""Run the command line from a checkout: ``python cli.py convert model.keras``.

The command line itself is ``converter/cli.py``, installed as ``kerasonnx.cli`` (the
``kerasonnx`` script and ``python -m kerasonnx``); this file only starts it.
"""
from kerasonnx.cli import main

if __name__ == "__main__":
    main(prog_name="kerasonnx")
