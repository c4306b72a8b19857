"""The public API: :class:`Fmm`, a linear operator ``charges -> potentials``, and :func:`evaluate`.

``Fmm(sources, targets)`` builds the tree, the lists, the precomputed KIFMM operators and the
transformed kernels once; each call with new charges reuses all of it. Potentials are
``sum_{i, x_i != y} q_i / (4 pi |x_i - y|)`` at every target ``y``, in the user's order.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import numpy as np
import pyopencl as cl

from fmmloopy.devices import choose_device, context_for
from fmmloopy.driver import build_plan
from fmmloopy.interaction_lists import build_interaction_lists
from fmmloopy.kernels import get_kernel
from fmmloopy.precompute import get_operators
from fmmloopy.tree import build_tree
from fmmloopy.validation import validate_charges

#: Orders (points per surface edge) the toolkit accepts.
MIN_ORDER, MAX_ORDER = 2, 16


class Fmm:
    """The kernel-independent FMM for fixed sources and targets, applied to many charge vectors.

    ``sources`` and ``targets`` are ``(N, 3)`` float arrays (``targets=None``: the sources).
    ``order`` is the number of points per edge of the equivalent and check surfaces
    (``6 (order - 1)**2 + 2`` points); ``n_crit`` the most points per leaf; ``device`` an OpenCL
    device or ``"cpu"``/``"gpu"``/a name; ``recipes`` a recipe name for every operator or a
    mapping operator -> recipe name (default: the device's own).
    """

    def __init__(self, sources, targets=None, *, kernel: str = "laplace", order: int = 6,
                 n_crit: int = 150, device=None,
                 recipes: str | Mapping[str, str] | None = None, max_depth: int = 20):
        if isinstance(order, bool) or not isinstance(order, (int, np.integer)) \
                or not MIN_ORDER <= order <= MAX_ORDER:
            raise ValueError(f"order must be an integer in [{MIN_ORDER}, {MAX_ORDER}], "
                             f"got {order!r}")
        self.kernel = get_kernel(kernel)
        self.order = int(order)
        self.setup_seconds: dict[str, float] = {}

        clock = time.perf_counter()
        self.tree = build_tree(sources, targets, n_crit=n_crit, max_depth=max_depth)
        self.setup_seconds["tree"] = time.perf_counter() - clock
        clock = time.perf_counter()
        self.lists = build_interaction_lists(self.tree)
        self.setup_seconds["lists"] = time.perf_counter() - clock
        clock = time.perf_counter()
        self.operators = get_operators(self.kernel, self.order)
        self.setup_seconds["precompute"] = time.perf_counter() - clock

        clock = time.perf_counter()
        self.device = choose_device(device)
        self.queue = cl.CommandQueue(context_for(self.device))
        self.plan = build_plan(self.tree, self.lists, self.operators, self.kernel, self.queue,
                               recipes)
        self.plan.build()
        self.setup_seconds["build"] = time.perf_counter() - clock

    @property
    def eval_seconds(self) -> dict[str, float]:
        """Seconds per operator (and ``total``) of the last call."""
        return dict(self.plan.eval_seconds)

    def __call__(self, charges) -> np.ndarray:
        """Potentials at the targets, in the user's order, for ``charges`` (one per source)."""
        charges = validate_charges(charges, self.tree.nsources)
        potential = self.plan.evaluate(self.tree.sources_to_tree(charges))
        return self.tree.targets_to_user(potential)


def evaluate(sources, charges, targets=None, **options) -> np.ndarray:
    """One FMM evaluation: ``Fmm(sources, targets, **options)(charges)``."""
    return Fmm(sources, targets, **options)(charges)
