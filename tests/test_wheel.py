"""The wheel: built from a copy of the sources, it holds only ``kerasonnx/`` and its
dist-info; installed into a fresh virtual environment without the editable checkout, its
``kerasonnx`` script converts a fixture and ``import kerasonnx`` finds the wheel's copy.

Offline and fast: the wheel is built without build isolation (the test venv's setuptools),
and the fresh venv has no pip and no packages of its own: a ``.pth`` line lends it the test
venv's site-packages for the dependencies. A path added by a ``.pth`` line is not a site
directory, so the editable install's own ``.pth`` hook there does not run, and the test
checks that ``kerasonnx`` really comes from the fresh venv.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from conftest import FIXTURES, ROOT


def run(*args, **kwargs):
    process = subprocess.run([str(a) for a in args], capture_output=True, text=True,
                             timeout=300, **kwargs)
    assert process.returncode == 0, f"{args}: {process.stdout}\n{process.stderr}"
    return process


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "converter", source / "converter",
                    ignore=shutil.ignore_patterns("__pycache__"))
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
        "--no-index", "-w", work / "dist", source)
    wheels = list((work / "dist").glob("kerasonnx-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_wheel_holds_only_kerasonnx(wheel):
    with zipfile.ZipFile(wheel) as archive:
        tops = {name.split("/")[0] for name in archive.namelist()}
        names = archive.namelist()
    dist_info = {t for t in tops if t.endswith(".dist-info")}
    assert tops - dist_info == {"kerasonnx"}
    assert dist_info == {wheel.name.split("-py")[0] + ".dist-info"}
    assert "kerasonnx/cli.py" in names and "kerasonnx/__main__.py" in names
    assert not any(n.startswith(("converter/", "cli.py", "tests/")) for n in names)


def test_installed_wheel_converts_outside_the_checkout(wheel, tmp_path):
    fresh = tmp_path / "fresh"
    run(sys.executable, "-m", "venv", "--without-pip", fresh)
    python = fresh / "bin" / "python"
    site = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
                .stdout.strip())
    # Dependencies (numpy, onnx, h5py, click, ...) from the test venv, after the wheel.
    lent = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    (site / "zz_test_venv_dependencies.pth").write_text("".join(f"{p}\n" for p in lent))
    run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps",
        "--no-index", "--no-compile", wheel)

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    model = outside / "model.keras"
    shutil.copy(FIXTURES / "keras3" / "three_attention.keras", model)
    found = run(python, "-c", "import kerasonnx, sys; print(kerasonnx.__file__); "
                "print(kerasonnx.convert.__module__); "
                "print(any('editable' in type(f).__module__ for f in sys.meta_path))",
                cwd=outside).stdout.split()
    assert Path(found[0]).is_relative_to(site), found
    assert found[2] == "False", "the editable checkout's finder is active"
    converted = run(fresh / "bin" / "kerasonnx", "convert", model, "-o", outside / "m.onnx",
                    cwd=outside)
    assert "wrote" in converted.stdout
    assert (outside / "m.onnx").stat().st_size > 0
    run(python, "-m", "kerasonnx", "inspect", model, cwd=outside)
