"""Sphinx configuration of fmmloopy's documentation site.

Build it from the repository root (``pip install -e ".[docs]"`` first)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html

The pages are Markdown, read by MyST exactly as GitHub shows them; the API reference
(``api.md``) is made by autodoc from the docstrings, so the package must be importable.
Nothing is fetched from the network while building (no intersphinx). ``tests/test_docs_build.py``
builds the site with ``-W``: any warning fails the test suite.
"""

from __future__ import annotations

import importlib.util
import os
import sys

DOCS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(DOCS)
# Document the source tree of this checkout, whether or not the package is installed from it.
sys.path.insert(0, ROOT)

from fmmloopy import __version__  # noqa: E402  (after the path above)

project = "fmmloopy"
author = "the fmmloopy developers"
copyright = "the fmmloopy developers"
release = __version__
version = ".".join(__version__.split(".")[:2])

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
# _build: the output. plots/: the figures, their CSV files and run.txt, which plots.md shows;
# never pages, even if a Markdown file lands there.
exclude_patterns = ["_build", "plots", "Thumbs.db", ".DS_Store"]

# MyST with no syntax extensions: the pages are plain CommonMark with GitHub's tables, and read
# the same on GitHub. Headings up to ### get ids, so that [text](page.md#heading) links resolve.
myst_enable_extensions: list[str] = []
myst_heading_anchors = 3

# The docstrings are reST with double-backtick literals and :func:/:class:/:mod: roles. A role
# whose target is not documented on the site (a private helper, numpy) renders as code without
# a warning while nitpicky is off.
nitpicky = False
autodoc_default_options = {"member-order": "bysource"}
autodoc_typehints = "signature"
# Defaults as the source writes them (``dtype=np.float64``, not ``<class 'numpy.float64'>``).
autodoc_preserve_defaults = True
autoclass_content = "class"
# Optional dependencies, imported only where they are used: mocked where this environment lacks
# them, so that the modules importing them still document.
autodoc_mock_imports = [name for name in ("mpi4py", "scipy")
                        if importlib.util.find_spec(name) is None]



html_title = f"fmmloopy {release}"
html_theme = "furo"
pygments_style = "sphinx"
