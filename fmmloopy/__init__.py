"""fmmloopy: loopy kernels, transform recipes and a thin driver for the kernel-independent FMM.

``fmmloopy.Fmm(sources, targets)(charges)`` evaluates potentials (``dipoles=``, ``gradient=True``:
dipole sources, gradients as ``fmmloopy.Fields``); ``fmmloopy.evaluate`` does one
evaluation; ``fmmloopy.recipe`` registers a transform recipe (see ``docs/``).
"""

from fmmloopy.api.fmm import Fields, Fmm, evaluate
from fmmloopy.tuning.recipe import recipe

__all__ = ["Fields", "Fmm", "evaluate", "recipe"]
__version__ = "0.1.0"
