"""fmmloopy: loopy kernels, transform recipes and a thin driver for the kernel-independent FMM.

``fmmloopy.Fmm(sources, targets)(charges)`` evaluates potentials (``dipoles=``, ``gradient=True``:
dipole sources, gradients as ``fmmloopy.Fields``; ``kernel=``: ``"laplace"``,
``"yukawa:kappa=10"``, :func:`yukawa`, ``"helmholtz:k=3"`` or :func:`helmholtz` (complex
charges and potentials), ``"stokes"`` or :func:`stokes` (Stokes flow: forces ``(N, 3)`` in,
velocities ``(M, 3)`` out, ``fmmloopy.Flow`` with their gradient and the pressure),
``"rpy:radius=0.01"`` or :func:`rpy` (the Rotne-Prager-Yamakawa mobility of spheres),
``"regularized_stokes:epsilon=0.01"`` or :func:`regularized_stokes` (Cortez's blobs), or a kernel
of the user's own, :func:`user_kernel` or :class:`GreenKernel`); ``fmmloopy.evaluate`` does one
evaluation; ``fmmloopy.recipe`` registers a transform recipe (see ``docs/``);
``fmmloopy.DistributedFmm`` is the same FMM over the ranks of an MPI job
(``pip install "fmmloopy[mpi]"``, docs/scale-out.md);
``fmmloopy.linear_operator(fmm)`` is an ``Fmm`` as a SciPy ``LinearOperator``;
``fmmloopy.DirectSum`` (``fmmloopy.direct``) sums every pair on the device, a reference. Charges of
shape ``(N, k)`` give potentials ``(M, k)`` in one call. Set-up stages report through
:mod:`logging` (logger ``fmmloopy``); ``fmmloopy.show_progress()`` prints the slow ones.
"""

# What the CPU recipes compile, probed on each device in a child process before it is used.
import fmmloopy.tuning.probe_programs  # noqa: F401
from fmmloopy.api.direct import DirectSum, direct
from fmmloopy.api.distributed import DistributedFmm
from fmmloopy.api.fmm import Fmm, evaluate
from fmmloopy.api.operator import linear_operator
from fmmloopy.api.units import Fields, Flow, HessianFields
from fmmloopy.base.opencl_runtimes import prepare_opencl
from fmmloopy.base.progress import show_progress
from fmmloopy.maths.green import (
    GreenKernel,
    helmholtz,
    regularized_stokes,
    rpy,
    stokes,
    user_kernel,
    yukawa,
)
from fmmloopy.tree.octree import root_box_side
from fmmloopy.tuning.recipe import recipe

__all__ = ["DirectSum", "DistributedFmm", "Fields", "Flow", "Fmm", "GreenKernel", "HessianFields",
           "direct",
           "evaluate", "helmholtz", "linear_operator", "recipe", "regularized_stokes",
           "root_box_side", "rpy",
           "show_progress", "stokes", "user_kernel", "yukawa"]
__version__ = "0.1.0"

# Importing lists no OpenCL platform; before one is: the CPU runtimes pip installed, and PoCL's
# cache kept where a build that died can be dropped (fmmloopy.base.opencl_runtimes).
prepare_opencl()
