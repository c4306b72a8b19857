"""The layering holds: import-linter's contracts (pyproject.toml), no import cycle at run time,
and an installed wheel that brings one top-level package, ``fmmloopy``."""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINT = ("from importlinter.cli import lint_imports; "
        "raise SystemExit(lint_imports(no_cache=True, no_logo=True))")


def _lint(where: Path) -> subprocess.CompletedProcess:
    """import-linter's contracts of ``where/pyproject.toml`` on the packages in ``where``."""
    return subprocess.run([sys.executable, "-c", LINT], cwd=where, capture_output=True,
                          text=True, timeout=300)


def test_contracts_are_kept():
    done = _lint(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def test_a_math_module_importing_the_driver_breaks_the_contracts(tmp_path):
    """The contracts bite: the same tree with one math module importing the driver fails."""
    for name in ("fmmloopy", "transforms"):
        shutil.copytree(ROOT / name, tmp_path / name,
                        ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    green = tmp_path / "fmmloopy" / "maths" / "green.py"
    green.write_text(green.read_text() + "\nimport fmmloopy.driver.builder  # noqa\n")
    done = _lint(tmp_path)
    assert done.returncode != 0
    assert "BROKEN" in done.stdout
    assert "fmmloopy.maths.green -> fmmloopy.driver.builder" in done.stdout, done.stdout


_IMPORT_EACH_FIRST = """
import importlib, pkgutil, sys
import fmmloopy, fmmloopy.transforms
names = sorted(info.name for path, prefix in ((fmmloopy.__path__, "fmmloopy."),
                                               (fmmloopy.transforms.__path__,
                                                "fmmloopy.transforms."))
               for info in pkgutil.walk_packages(path, prefix)
               if not info.name.endswith("__main__"))  # __main__ runs the command line
for name in names:
    for loaded in [m for m in sys.modules if m == "fmmloopy" or m.startswith("fmmloopy.")]:
        del sys.modules[loaded]
    importlib.import_module(name)  # a cycle fails here when its module is imported first
from fmmloopy.tuning import registry
registry.ensure_loaded()
print(len(names), sorted({r.name for r in registry.registered()}))
"""


def test_every_module_imports_first_without_a_cycle():
    done = subprocess.run([sys.executable, "-c", _IMPORT_EACH_FIRST], capture_output=True,
                          text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    count, recipes = done.stdout.split(" ", 1)
    assert int(count) > 40
    assert all(name in recipes for name in ("sequential", "generic", "cpu", "gpu"))


def test_the_wheel_installs_only_fmmloopy(tmp_path):
    """``pip install .`` puts one top-level package on the path, the recipes inside it."""
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w",
                           str(tmp_path), str(ROOT)], capture_output=True, text=True,
                          timeout=600, env=env)
    assert done.returncode == 0, done.stderr
    (wheel,) = tmp_path.glob("fmmloopy-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {name.split("/")[0] for name in names} == {"fmmloopy", wheel.name.split("-py")[0]
                                                      + ".dist-info"}
    shipped = {Path(name).name for name in names if name.startswith("fmmloopy/transforms/")}
    assert {"__init__.py", "sequential.py", "generic.py", "cpu.py", "gpu.py"} <= shipped
