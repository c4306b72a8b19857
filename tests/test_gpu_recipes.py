"""The ``gpu`` recipes: group sizes from the device, staging in local memory behind barriers that
every work-item of a group reaches. (``fmmloopy check`` runs them for correctness on PoCL.)"""

import subprocess
import sys
from types import SimpleNamespace

import loopy as lp
import numpy as np
import pytest
from conftest import check_labels, coarse_root_labels

from fmmloopy.maths.operators import OPERATORS, PAIRWISE, PARTICLES, math_kernel, operator_sizes
from fmmloopy.tuning.races import silence_benign_races
from fmmloopy.tuning.recipe import RecipeContext
from fmmloopy.tuning.registry import select_recipe
from fmmloopy.tuning.tools import local_work_size, simd_width

NVIDIA = SimpleNamespace(warp_size_nv=32, max_work_group_size=1024, local_mem_size=49152)
AMD = SimpleNamespace(wavefront_width_amd=64, max_work_group_size=256, local_mem_size=65536)
OTHER = SimpleNamespace(max_work_group_size=512, local_mem_size=65536)


def gpu_code(operator: str, device, order: int = 6) -> str:
    """Device code of ``operator`` under the ``gpu`` recipe, as if for ``device``."""
    spec = OPERATORS[operator]
    sizes = operator_sizes(operator, 6 * (order - 1) ** 2 + 2, rank=100)
    recipe = next(r for r in _gpu_recipes() if spec.template in r.targets)
    ctx = RecipeContext(operator, spec.template, device, dict(sizes, dtype=np.dtype(np.float64)))
    # As fmmloopy.execution.compiled does: the recipe's proven-benign write races silenced, no
    # other.
    transformed = silence_benign_races(recipe(math_kernel(operator, **sizes), ctx))
    return lp.generate_code_v2(transformed).device_code()


def _gpu_recipes():
    from fmmloopy.tuning.registry import ensure_loaded, registered
    ensure_loaded()
    return [r for r in registered() if r.name == "gpu" and r.device == "gpu"]


def test_simd_width_and_group_size_come_from_the_device():
    assert (simd_width(NVIDIA), simd_width(AMD), simd_width(OTHER)) == (32, 64, 32)
    assert local_work_size(NVIDIA, 152, 256) == 160  # rounded up to whole warps
    assert local_work_size(AMD, 152, 256) == 192  # ... to whole wavefronts
    assert local_work_size(AMD, 300, 1024) == 256  # the device's limit; the rest in chunks
    assert local_work_size(NVIDIA, 5, 256) == 32


@pytest.mark.parametrize("device,matvec_group", [(NVIDIA, 256), (AMD, 256), (OTHER, 256)])
def test_work_group_sizes_in_the_generated_code(device, matvec_group):
    # M2M: the coefficient counts are launch arguments, so the group is the recipe's largest
    # (whole warps or wavefronts), rows beyond it in chunks.
    assert f"reqd_work_group_size({matvec_group}, 1, 1)" in gpu_code("m2m", device)
    assert "reqd_work_group_size(64, 1, 1)" in gpu_code("p2p", device)


@pytest.mark.parametrize("operator", sorted(OPERATORS))
def test_staging_is_synchronised_and_loops_are_uniform(operator):
    code = gpu_code(operator, NVIDIA)
    # Sources (pairwise) or the source vector (matvec) are read from local memory ...
    assert "__local double" in code
    spec = OPERATORS[operator]
    staged = ("source_vectors_local" if spec.template != PAIRWISE
              else "sources_local" if spec.sources == PARTICLES else "source_surface_local")
    assert [line for line in code.splitlines() if staged in line.partition(" = ")[2]]
    # ... behind a barrier after filling and one before refilling.
    assert code.count("barrier(CLK_LOCAL_MEM_FENCE)") >= 2
    # No loop bound depends on the work-item, so each barrier is met by the whole group.
    loops = [line for line in code.splitlines() if line.strip().startswith("for (")]
    assert loops and not [line for line in loops if "lid(" in line]


def test_gpu_recipe_is_chosen_by_name_on_any_device(device):
    assert select_recipe("p2p", PAIRWISE, device, "gpu").device == "gpu"


NARROW_RECIPES = '''
import dataclasses
from types import SimpleNamespace

from fmmloopy.tuning.recipe import recipe
from fmmloopy.transforms.gpu import matvec_gpu, pairwise_gpu

#: Groups of 8: the check's leaves (up to 40 targets) and source boxes then take several chunks,
#: and source vectors (26 or 56 coefficients) are staged in several rounds.
NARROW = SimpleNamespace(warp_size_nv=8, max_work_group_size=8, local_mem_size=32768)


@recipe("pairwise", "matvec", device="any", name="gpu_narrow")
def gpu_narrow(knl, ctx):
    gpu = pairwise_gpu if ctx.template == "pairwise" else matvec_gpu
    return gpu(knl, dataclasses.replace(ctx, device=NARROW))
'''


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fmmloopy.cli", *args],
                          capture_output=True, text=True, timeout=900)


@pytest.fixture
def narrow_recipes(tmp_path):
    path = tmp_path / "narrow_gpu_recipes.py"
    path.write_text(NARROW_RECIPES)
    return str(path)


def test_narrow_work_groups_pass_the_check(narrow_recipes):
    """Several target chunks, source chunks and staging rounds per box: the loops around the
    barriers run more than once, which the check's small trees never ask of 32-wide groups.
    Groups of 8 ask it on the small problems already (leaves of up to 40 targets, surfaces of
    26 and 56 points); the shipped ``gpu`` recipe at production sizes is
    tests/test_check.py's."""
    done = run_cli("check", "--small-only", "--recipes", narrow_recipes, "--recipe",
                   "gpu_narrow")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith(("ok ", "FAIL"))]
    assert lines and all(line.startswith("ok ") for line in lines)
    assert {line.split()[1] for line in lines} == {
        label for operator in OPERATORS
        for label in check_labels(operator) + coarse_root_labels(operator)}


def test_narrow_work_groups_have_no_races_or_out_of_bounds_accesses(narrow_recipes):
    """The same on the Oclgrind simulator: refilling local memory while another work-item still
    reads it would be a data race; a work-item past the last source reading it, out of bounds."""
    done = run_cli("check", "--memcheck", "--recipes", narrow_recipes, "--recipe", "gpu_narrow",
                   "--operator", "p2p", "--operator", "m2p", "--operator", "m2m")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith(("ok ", "FAIL"))]
    # p2p, m2p and m2m, each for one and for three strength vectors, p2p and m2p with their
    # fields too: on each of the two tiny problems
    assert len(lines) == 2 * sum(len(check_labels(op)) for op in ("p2p", "m2p", "m2m"))
    assert all(line.startswith("ok ") for line in lines)
