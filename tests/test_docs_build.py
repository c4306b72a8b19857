"""The documentation site builds without a single warning, documents the public API, and every
figure and table its plots page shows is in the repository.

``python -m sphinx -W --keep-going -b html docs OUT`` (docs/conf.py), as a user builds it; the
packages come with the ``docs`` extra, and the ``test`` extra has them too.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

#: Objects the API page must document, by the ids Sphinx gives them: the public API under the
#: names users write, the rest in their modules.
API_OBJECTS = [
    "fmmloopy.Fmm", "fmmloopy.Fmm.__call__", "fmmloopy.Fmm.eval_seconds", "fmmloopy.Fields",
    "fmmloopy.evaluate", "fmmloopy.DistributedFmm", "fmmloopy.linear_operator",
    "fmmloopy.root_box_side",
    "fmmloopy.tuning.recipe.recipe", "fmmloopy.tuning.recipe.Recipe",
    "fmmloopy.tuning.recipe.RecipeError", "fmmloopy.tuning.recipe.RecipeContext",
    "fmmloopy.maths.templates.make_pairwise_kernel", "fmmloopy.maths.templates.make_matvec_kernel",
    "fmmloopy.maths.operators.OperatorSpec", "fmmloopy.maths.operators.math_kernel",
    "fmmloopy.maths.green.GreenKernel", "fmmloopy.maths.green.get_kernel",
    "fmmloopy.maths.green.kernel_names", "fmmloopy.maths.green.yukawa",
    "fmmloopy.maths.green.helmholtz", "fmmloopy.maths.green.user_kernel",
]

#: What the plots page takes from the repository: figures, CSV tables, included files.
_REFERENCE = re.compile(r"^```\{(?:figure|image|literalinclude)\}\s+(\S+)"
                        r"|^:file:\s+(\S+)|!\[[^\]]*\]\(([^)\s]+)\)", re.MULTILINE)


def _require_sphinx() -> None:
    missing = [name for name in ("sphinx", "myst_parser", "furo")
               if importlib.util.find_spec(name) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} not installed: the documentation build needs the "
                    "test extra (pip install -e \".[test]\") or the docs extra "
                    "(pip install -e \".[docs]\")", pytrace=False)


@pytest.fixture(scope="module")
def html(tmp_path_factory) -> Path:
    """The site, built once for the tests of this module."""
    _require_sphinx()
    out = tmp_path_factory.mktemp("docs") / "html"
    done = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         str(DOCS), str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        pytest.fail(f"sphinx exited with status {done.returncode}; its warnings and errors:\n"
                    f"{done.stderr}\n{done.stdout[-4000:]}", pytrace=False)
    return out


def test_site_builds_without_warnings(html):
    assert (html / "index.html").is_file()
    for page in ("api", "plots", "fmm", "kernels", "robustness", "performance", "scale-out",
                 "architecture", "kifmm", "tree", "templates-and-recipes", "recipes"):
        assert (html / f"{page}.html").is_file(), page


def test_api_page_documents_the_public_api(html):
    import fmmloopy

    text = (html / "api.html").read_text(encoding="utf-8")
    ids = set(re.findall(r'<dt class="sig sig-object py" id="([^"]+)"', text))
    missing = [name for name in API_OBJECTS if name not in ids]
    assert not missing, f"not documented on the API page: {missing}"
    # Every name fmmloopy exports is documented, as fmmloopy.<name> or in its own module.
    absent = []
    for name in fmmloopy.__all__:
        obj = getattr(fmmloopy, name)
        if f"fmmloopy.{name}" not in ids and f"{obj.__module__}.{obj.__qualname__}" not in ids:
            absent.append(name)
    assert not absent, f"exported by fmmloopy but not on the API page: {absent}"
    for word in ("Fmm", "linear_operator", "GreenKernel"):
        assert word in text


def plots_page_references() -> list[str]:
    text = (DOCS / "plots.md").read_text(encoding="utf-8")
    return [next(group for group in match.groups() if group)
            for match in _REFERENCE.finditer(text)]


def test_every_file_the_plots_page_shows_exists():
    references = plots_page_references()
    figures = [path for path in references if path.endswith(".png")]
    assert len(figures) == 4, f"the plots page should show four figures: {references}"
    missing = [path for path in references if not (DOCS / path).is_file()]
    assert not missing, (f"docs/plots.md refers to files that are not in the repository: "
                         f"{missing} (python benchmarks/docs_plots.py makes them)")
    for path in references:
        if path.endswith(".png"):  # each figure has its numbers beside it
            assert (DOCS / path).with_suffix(".csv").is_file(), path
