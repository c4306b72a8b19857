"""``docs/recipes.md`` runs as written: every ``bash`` and ``python`` block, in order, in a
temporary directory that stands in for the repository root.

A block whose first line is ``# expect: exit N`` must exit with status ``N``; every other block
must succeed. Bash blocks run with ``set -e -o pipefail``; Python blocks are whole scripts. The
virtual environment's ``bin`` comes first on ``PATH`` (``fmmloopy``, ``python``), as after
``source .venv/bin/activate``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
TUTORIAL = ROOT / "docs" / "recipes.md"

#: Fenced blocks: the language after the opening fence, the text up to the closing one.
BLOCK = re.compile(r"^```([\w+-]*)[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
EXPECT = re.compile(r"\A#\s*expect:\s*exit\s+(\d+)\s*$", re.MULTILINE)


def runnable_blocks(markdown: str) -> list[tuple[str, str, int]]:
    """``(language, code, expected exit status)`` of every bash and python block, in order."""
    blocks = []
    for language, code in BLOCK.findall(markdown):
        if language in ("bash", "python"):
            expected = EXPECT.match(code)
            blocks.append((language, code, int(expected.group(1)) if expected else 0))
    return blocks


def test_block_parser_sees_languages_and_expectations():
    markdown = ("text\n```bash\n# expect: exit 2\nfalse\n```\n```text\nout\n```\n"
                "```python\nprint(1)\n```\n")
    assert runnable_blocks(markdown) == [("bash", "# expect: exit 2\nfalse\n", 2),
                                         ("python", "print(1)\n", 0)]


@pytest.mark.slow
def test_tutorial_runs_as_written(tmp_path):
    blocks = runnable_blocks(TUTORIAL.read_text())
    # What the tutorial promises: a recipe checked, a broken one failing, a bench, a full FMM.
    commands = "\n".join(code for _, code, _ in blocks)
    for needed in ("fmmloopy check --recipes my_recipes.py", "fmmloopy check --memcheck",
                   "fmmloopy bench", "fmmloopy show", "fmmloopy.Fmm(",
                   "examples/laplace_sphere.py"):
        assert needed in commands, needed
    assert any(language == "python" for language, _, _ in blocks)
    assert sum(expected == 1 for _, _, expected in blocks) >= 2  # the broken recipes

    (tmp_path / "examples").symlink_to(ROOT / "examples", target_is_directory=True)
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("FMMLOOPY_RECIPES", None)
    for number, (language, code, expected) in enumerate(blocks, 1):
        if language == "bash":
            command = ["bash", "-e", "-o", "pipefail", "-c", code]
        else:
            command = [sys.executable, "-c", code]
        done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == expected, (
            f"block {number} ({language}) exited with {done.returncode}, expected {expected}:\n"
            f"{code}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}")
