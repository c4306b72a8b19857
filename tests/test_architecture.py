"""The layering holds (docs/architecture.md): import-linter's contracts of ``pyproject.toml``,
no import cycle at run time, recipes that never import the registry that loads them, and a wheel
that installs one top-level package, ``fmmloopy``, with the recipes inside it."""

import ast
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DIRS = ("fmmloopy", "transforms")
SHIPPED_RECIPES = ("sequential", "generic", "cpu", "gpu")

# import-linter's Python API (the same as ``lint-imports --no-cache``), in a subprocess: the
# contracts are read from ``pyproject.toml`` in the working directory, and the root packages
# (``fmmloopy`` and the repository's ``transforms``) are found from there.
LINT = ("from importlinter.cli import lint_imports; "
        "raise SystemExit(lint_imports(no_cache=True))")


def _run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    environment = {key: value for key, value in os.environ.items()
                   if key != "FMMLOOPY_RECIPES"} | env
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=300,
                          env=environment)


def _lint(where: Path) -> subprocess.CompletedProcess:
    """import-linter's contracts of ``where/pyproject.toml`` on the packages in ``where``
    (the report is printed with rich, which wraps at ``COLUMNS``)."""
    return _run([sys.executable, "-c", LINT], where, COLUMNS="200")


def test_contracts_are_kept():
    done = _lint(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout, done.stdout


@pytest.mark.parametrize("module, planted, chain", [
    # The math layer importing the driver: the layers and the math contract break.
    ("fmmloopy/maths/green.py", "import fmmloopy.driver.builder",
     "fmmloopy.maths.green -> fmmloopy.driver.builder"),
    # The tree layer importing OpenCL.
    ("fmmloopy/tree/csr.py", "import pyopencl", "fmmloopy.tree.csr -> pyopencl"),
    # A recipe importing the registry that imports it.
    ("transforms/generic.py", "from fmmloopy.tuning import registry",
     "transforms.generic -> fmmloopy.tuning.registry"),
])
def test_a_forbidden_import_breaks_the_contracts(tmp_path, module, planted, chain):
    """The contracts bite: a copy of the package with one forbidden import fails, naming it."""
    for name in PACKAGE_DIRS:
        shutil.copytree(ROOT / name, tmp_path / name,
                        ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    path = tmp_path / module
    path.write_text(path.read_text() + f"\n{planted}  # noqa\n")
    done = _lint(tmp_path)
    assert done.returncode != 0, done.stdout
    assert "BROKEN" in done.stdout, done.stdout
    assert chain in done.stdout, done.stdout


_IMPORT_ALL = """
import importlib, pkgutil, sys

def clear():
    for name in [m for m in sys.modules if m == "fmmloopy" or m.startswith("fmmloopy.")]:
        del sys.modules[name]

import fmmloopy
eager = {m for m in sys.modules if m == "fmmloopy" or m.startswith("fmmloopy.")}
import fmmloopy.transforms
names = sorted(info.name for path, prefix in ((fmmloopy.__path__, "fmmloopy."),
                                               (fmmloopy.transforms.__path__,
                                                "fmmloopy.transforms."))
               for info in pkgutil.walk_packages(path, prefix)
               if not info.name.endswith("__main__"))  # __main__ runs the command line
clear()
for name in names:
    importlib.import_module(name)
# fmmloopy's __init__ runs before any of its modules, so a module it imports is imported first
# in the order of `import fmmloopy`, tested above; each of the others is imported first once.
for name in names:
    if name not in eager:
        clear()
        importlib.import_module(name)
print(len(names), len(eager))
"""


def test_every_module_imports_without_a_cycle():
    """Every module of the package, in sorted order in a fresh interpreter, then each module
    that ``import fmmloopy`` does not load imported first: an import cycle fails here."""
    done = _run([sys.executable, "-c", _IMPORT_ALL], ROOT)
    assert done.returncode == 0, done.stderr
    count, eager = map(int, done.stdout.split())
    assert count > 40 and eager > 10


def _imports_of(path: Path, module: str, modules: set[str]) -> set[str]:
    """The package's modules that ``module`` (file ``path``) imports anywhere in its source,
    at module level or inside a function (a deferred import is a dependency all the same); an
    import of one of its own enclosing packages does not count (``__init__`` re-exports)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != module and not module.startswith(name + "."):
                found.add(name)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for after in graph[node]:
            if after not in index:
                visit(after)
                low[node] = min(low[node], low[after])
            elif after in stack:
                low[node] = min(low[node], index[after])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _module_files() -> dict[str, Path]:
    """Module name -> file, for ``fmmloopy/`` and the recipes (``fmmloopy.transforms``)."""
    files = {}
    for folder, prefix in ((ROOT / "fmmloopy", "fmmloopy"),
                           (ROOT / "transforms", "fmmloopy.transforms")):
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            files[".".join((prefix, *parts))] = path
    return files


def test_no_module_depends_on_itself_through_others():
    """No cycle in the package's import graph, deferred imports included (a cycle that runs
    only because one side imports inside a function is still one)."""
    files = _module_files()
    graph = {module: _imports_of(path, module, set(files)) for module, path in files.items()}
    assert sum(len(targets) for targets in graph.values()) > 200  # the graph was read
    assert _cycles(graph) == []
    # The check bites: a deferred import that closes a loop is found.
    graph["fmmloopy.base.validation"] = graph["fmmloopy.base.validation"] | {"fmmloopy.api.fmm"}
    assert any("fmmloopy.api.fmm" in cycle for cycle in _cycles(graph))


#: Underscored names that are public API (named tuples').
_PUBLIC_UNDERSCORED = {"_asdict", "_replace", "_fields", "_make"}


def test_no_module_reaches_into_another_objects_private_attributes():
    """Only ``self`` and ``cls`` read underscored attributes (a distributed FMM's rank is
    evaluated through ``Fmm.evaluate_in_tree_order``, not its lock and ``_evaluate``)."""
    reached = []
    for module, path in sorted(_module_files().items()):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_")
                    and not node.attr.startswith("__") and node.attr not in _PUBLIC_UNDERSCORED
                    and not (isinstance(node.value, ast.Name)
                             and node.value.id in ("self", "cls"))):
                reached.append(f"{module}:{node.lineno} {ast.unparse(node)}")
    assert reached == []


def test_the_fmm_constructor_stays_short():
    """``Fmm.__init__`` checks the options and hands over (under 60 lines): the set-up
    lives in the steps it calls."""
    module = ast.parse((ROOT / "fmmloopy" / "api" / "fmm.py").read_text())
    (fmm,) = [node for node in module.body if isinstance(node, ast.ClassDef)
              and node.name == "Fmm"]
    (init,) = [node for node in fmm.body if isinstance(node, ast.FunctionDef)
               and node.name == "__init__"]
    assert init.end_lineno - init.lineno + 1 < 60


_REGISTRY_FIRST = """
from fmmloopy.tuning import registry
registry.ensure_loaded()
for recipe in registry.registered():
    print(recipe.name, recipe.function.__module__)
"""


def test_the_registry_loads_the_shipped_recipes_first():
    """``fmmloopy.tuning.registry`` imported first loads every shipped recipe by name."""
    done = _run([sys.executable, "-c", _REGISTRY_FIRST], ROOT)
    assert done.returncode == 0, done.stderr
    loaded = {tuple(line.split()) for line in done.stdout.splitlines()}
    assert {(name, f"fmmloopy.transforms.{name}") for name in SHIPPED_RECIPES} <= loaded


def _imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports (``from a import b`` counts ``a`` and ``a.b``; relative
    imports are resolved inside ``fmmloopy.transforms``) and every string that is a dotted
    name."""
    package = ["fmmloopy", "transforms"]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) + 1 - node.level] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            names |= {module} | {f"{module}.{alias.name}" for alias in node.names}
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
              and all(part.isidentifier() for part in node.value.split("."))):
            names.add(node.value)  # a module named for importlib.import_module
    return names


def test_recipes_never_import_the_registry():
    """The registry imports the shipped recipes by name; they must not import it back."""
    recipes = sorted((ROOT / "transforms").glob("*.py"))
    assert {path.stem for path in recipes} >= set(SHIPPED_RECIPES)
    for path in recipes:
        imported = _imported_modules(path)
        assert not any("fmmloopy.tuning.registry" in name for name in imported), path
        assert "fmmloopy.tuning.recipe" in imported or path.stem == "__init__", path


def _source_modules() -> set[str]:
    """Paths the package's modules have in an installed copy (``transforms/`` inside it)."""
    found = {path.relative_to(ROOT).as_posix() for path in (ROOT / "fmmloopy").rglob("*.py")}
    found |= {f"fmmloopy/transforms/{path.name}" for path in (ROOT / "transforms").glob("*.py")}
    return {path for path in found if "__pycache__" not in path}


def test_the_wheel_installs_only_fmmloopy(tmp_path):
    """``pip install .`` puts one top-level package on the path, holding every module of the
    source tree and the shipped recipes. Built offline, with the running interpreter's
    setuptools (the ``test`` extra brings one that reads this ``pyproject.toml``), from a clean
    copy of the repository, so that a stale ``build/`` cannot add or hide files."""
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis"))
    done = _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                 "--check-build-dependencies", "-w", str(tmp_path), str(source)], tmp_path,
                PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    assert done.returncode == 0, done.stdout + done.stderr
    (wheel,) = tmp_path.glob("fmmloopy-*.whl")
    archive = zipfile.ZipFile(wheel)
    names = archive.namelist()
    dist_info = next(name.split("/")[0] for name in names if name.endswith(".dist-info/RECORD"))
    assert {name.split("/")[0] for name in names} == {"fmmloopy", dist_info}
    assert archive.read(f"{dist_info}/top_level.txt").decode().split() == ["fmmloopy"]
    assert {name for name in names if name.endswith(".py")} == _source_modules()
    assert {f"fmmloopy/transforms/{name}.py" for name in SHIPPED_RECIPES} <= set(names)
    assert "fmmloopy/maths/eps_calibration.json" in names  # the table eps= reads
    assert "fmmloopy = fmmloopy.cli.main:main" in archive.read(
        f"{dist_info}/entry_points.txt").decode()


def test_every_module_is_in_the_architecture_table():
    """docs/architecture.md names every module of every layer."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    missing = [path for path in sorted(_source_modules())
               if not path.endswith("__init__.py")
               and f"`{path.removeprefix('fmmloopy/')}`" not in text]
    assert not missing, f"docs/architecture.md, table 'Modules', lacks {missing}"


#: The most lines a module of the package may have: one purpose each.
MAX_MODULE_LINES = 500


def test_no_module_is_over_the_line_limit():
    long = {str(path.relative_to(ROOT)): lines for path in (ROOT / "fmmloopy").rglob("*.py")
            if (lines := len(path.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def _files_to_touch(heading: str) -> list[str]:
    """The files of the table under ``heading`` in docs/architecture.md's "Where to add"."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text.split(heading, 1)[1].split("\n\n**", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return [name for row in rows for name in re.findall(r"`([^`]+)`", row.split("|")[1])]


@pytest.mark.parametrize("heading", ["**A kernel family with vector densities**",
                                     "**An M2L variant**"])
def test_where_to_add_names_real_files_and_not_the_fmm_shell(heading):
    """The files a new kernel family or a new M2L variant touches exist (or are folders,
    or a module beside an existing one), and the FMM's shell is not among them."""
    files = _files_to_touch(heading)
    assert len(files) >= 5, files
    assert "api/fmm.py" not in files
    for name in files:
        path = ROOT / name if name.split("/")[0] in ("tests", "docs", "transforms") \
            else ROOT / "fmmloopy" / name
        assert path.exists() or "*" in name, name
