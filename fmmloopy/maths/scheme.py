"""The method as one value: :class:`KifmmScheme`, the KIFMM's steps in their passes.

A scheme owns what the driver needs to know about the method and nothing about a tree: its
steps (:class:`~fmmloopy.maths.kifmm.KifmmStep`: the operator each runs, the expansions it
reads and writes, its surfaces and matrices, the boxes it serves and the list it walks) grouped
in the three passes of an evaluation, the buffers they share (their widths, and which share an
allocation), the kernels each operator is built for, and the matrices each step uploads. The
driver (:mod:`fmmloopy.driver`) evaluates the steps' box selections on a tree and runs the
passes (:mod:`fmmloopy.driver.evaluation`); the precomputed operators
(:mod:`fmmloopy.maths.precompute`) fill in the matrices the steps name.

:data:`KIFMM` is the kernel-independent FMM of Ying, Biros and Zorin (2004) with its M2L
compressed per transfer-vector class; a variant (another M2L, another expansion) is another
scheme: its steps and matrices, the same driver.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from functools import cached_property

from fmmloopy.maths.complex_blocks import matvec_request
from fmmloopy.maths.green import LAPLACE_3D, SOURCE_FIELDS, TARGET_FIELDS, GreenKernel
from fmmloopy.maths.harmonic import harmonic_split, layered_kernel
from fmmloopy.maths.kifmm import (
    CHECKED_VECTORS,
    DOWNWARD_STEPS,
    LEAF_STEPS,
    POINT_BUFFERS,
    UPWARD_STEPS,
    KifmmStep,
    step_kernel,
)
from fmmloopy.maths.operators import PAIRWISE, get_operator, operator_sizes
from fmmloopy.maths.pair_precision import launch_rsqrt_error
from fmmloopy.maths.precompute import full_ranks, matrix_shapes

__all__ = ["FAR_FIELD", "KIFMM", "NEAR_FIELD", "KernelRequest", "KifmmScheme", "Pass",
           "plan_kernel_requests"]

#: The output fields a call may ask of every kernel; the Hessian of a scalar kernel's only
#: (:data:`SCALAR_OUTPUTS`; a tensor kernel's Hessian is the Stokeslet's Laplace sums' own,
#: :mod:`fmmloopy.maths.harmonic`).
USER_OUTPUTS = ("potential", "gradient")
SCALAR_OUTPUTS = USER_OUTPUTS + ("hessian",)

#: (operator, kernel it sums, sizes) of one transformed kernel.
KernelRequest = tuple[str, GreenKernel, dict[str, int]]


class Pass(str, Enum):
    """The passes of one evaluation, in order. Between the upward and the downward pass a
    variant may act on the multipoles (a distributed FMM exchanges them between ranks, a
    periodic one copies them to the images)."""

    UPWARD = "upward"  # multipoles of the boxes with sources, leaves first
    DOWNWARD = "downward"  # locals of the boxes with targets, coarsest level first
    LEAVES = "leaves"  # the potentials at the targets: far field, then near field


@dataclass(frozen=True)
class KifmmScheme:
    """The steps of a kernel-independent FMM, by pass, each pass in the order it runs."""

    upward: tuple[KifmmStep, ...]
    downward: tuple[KifmmStep, ...]
    leaves: tuple[KifmmStep, ...]
    #: Buffers that share one allocation (module :meth:`buffer_pools`).
    pooled: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        self.steps  # noqa: B018 - its names checked now: two steps of one name are refused

    @cached_property
    def steps(self) -> dict[str, KifmmStep]:
        """Every step by name, in the order of one evaluation."""
        steps = {}
        for step in (*self.upward, *self.downward, *self.leaves):
            if step.name in steps:
                raise ValueError(f"two steps named {step.name!r}")
            steps[step.name] = step
        return steps

    def step(self, name: str) -> KifmmStep:
        """The step called ``name``, with a clear error for an unknown one."""
        try:
            return self.steps[name]
        except KeyError:
            raise ValueError(f"unknown KIFMM step {name!r}; steps: {list(self.steps)}") from None

    def pass_of(self, step: KifmmStep) -> Pass:
        """The pass ``step`` belongs to."""
        for which, steps in ((Pass.UPWARD, self.upward), (Pass.DOWNWARD, self.downward),
                             (Pass.LEAVES, self.leaves)):
            if step in steps:
                return which
        raise ValueError(f"step {step.name!r} is not a step of this scheme")

    def buffer_pools(self) -> dict[str, str]:
        """Buffer -> the allocation it shares with others that never hold values at the same
        time (each buffer is zeroed before the first launch that uses it: one may read rows no
        launch wrote). The KIFMM's: the compressed M2L's per-class buffers, whose class's
        compress, M2L and expand steps run one after another."""
        return dict(self.pooled)

    def buffer_widths(self, n_e: int, shapes: dict[str, tuple[int, ...]],
                      components: int = 1) -> dict[str, int]:
        """Values per box of every per-box buffer (expansions and the buffers between
        factors): the rows of the matrix that writes it (``shapes``: the matrices'),
        ``components * n_e`` for those a pairwise step writes (a tensor kernel's densities per
        surface point). ValueError where two steps disagree (a step reading a buffer of another
        width)."""
        widths: dict[str, int] = {}

        def settle(name: str, width: int, step: str) -> None:
            if name in POINT_BUFFERS:
                return
            if widths.setdefault(name, width) != width:
                raise ValueError(f"step {step!r} takes buffer {name!r} as {width} values per "
                                 f"box, another step as {widths[name]}")
        for step in self.steps.values():
            if not step.matrices:
                settle(step.source, components * n_e, step.name)
                settle(step.target, components * n_e, step.name)
            for field, source, target in step.chain():
                settle(target, shapes[field][-2], step.name)
                settle(source, shapes[field][-1], step.name)
        return widths

    def step_matrix_shapes(self, n_e: int, ranks: dict[str, int]
                           ) -> dict[str, dict[str, tuple[int, ...]]]:
        """Step name -> the shapes of the matrices its launches take (uploaded once per
        plan); ``n_e``: the values of one expansion (points times components)."""
        shapes = matrix_shapes(n_e, ranks)
        return {name: {field: shapes[field] for field in step.matrices}
                for name, step in self.steps.items() if step.matrices}

    def surface_uploads(self) -> int:
        """Surfaces a plan uploads: one ``(3, n_e)`` array per pairwise step's surface."""
        return sum(len(step.surfaces) for step in self.steps.values())

    def operator_kernels(self, operator: str, green: GreenKernel) -> list[GreenKernel]:
        """The kernels an FMM may build ``operator`` for: the potential of charges, the same
        for :data:`~fmmloopy.maths.kifmm.CHECKED_VECTORS` strength vectors at once and, for
        the steps at the user's points, the one with every field a call may ask for (what
        ``fmmloopy check`` runs: fewer fields or vectors take the same template code with
        fewer components). A kernel whose far field is Laplace sums
        (:mod:`fmmloopy.maths.harmonic`): its own at the near field (P2P), the Laplace ones
        of :data:`FAR_FIELD` (for every field: its far kernel's) elsewhere; the Stokeslet's
        P2P also those of stresslets, alone and beside forces, every field."""
        full = green.with_fields((USER_OUTPUTS if green.is_tensor else SCALAR_OUTPUTS)
                                 + green.field_names[len(TARGET_FIELDS):], tuple(SOURCE_FIELDS))
        split = harmonic_split(green)
        layered = []
        if split is not None and operator != "p2p":
            green, full = LAPLACE_3D, split.far_kernel(full)
        elif green.name == "stokes" and split is not None:  # the near field of stresslets
            charges = full.with_fields(full.outputs, ("charge",))
            layered = [layered_kernel(charges, forces, True) for forces in (False, True)]
        kernels = [green.base, green.base.with_vectors(CHECKED_VECTORS), *layered]
        for step in self.steps.values():
            kernel = step_kernel(step, full)
            if step.operator == operator and kernel not in kernels:
                kernels.append(kernel)
        return kernels

    def kernel_requests(self, n_e: int, ranks: dict[str, int] | None, green: GreenKernel,
                        eps: float | None = None) -> list[KernelRequest]:
        """Every kernel a plan of operators with ``ranks`` asks for, summing ``green``,
        whatever boxes its tree holds (a tree without boxes for a step asks for fewer), each
        once. The sizes are launch arguments, so ``ranks`` only fills them in: None (before the
        operators are computed) asks for the same kernels. Under ``eps``, the pairwise
        kernels' ``rsqrt_error`` joins their sizes where it applies
        (:func:`~fmmloopy.maths.pair_precision.launch_rsqrt_error`)."""
        n_coeffs = n_e * green.density_components
        shapes = matrix_shapes(n_coeffs, full_ranks(n_coeffs) if ranks is None else ranks)
        requests: list[KernelRequest] = []
        for step in self.steps.values():
            if get_operator(step.operator).template == PAIRWISE:
                kernel = step_kernel(step, green)
                rsqrt_error = launch_rsqrt_error(get_operator(step.operator), kernel, eps)
                asked = [(step.operator, kernel, operator_sizes(step.operator, n_e) | (
                    {} if rsqrt_error is None else {"rsqrt_error": rsqrt_error}))]
            else:
                asked = [(step.operator, *matvec_request(
                              green.base, {"n_target_coeffs": shapes[field][-2],
                                           "n_source_coeffs": shapes[field][-1]}))
                         for field, _, _ in step.chain()]
            for request in asked:
                if request not in requests:
                    requests.append(request)
        return requests


#: The KIFMM with its M2L compressed per transfer-vector class (:mod:`fmmloopy.maths.kifmm`).
KIFMM = KifmmScheme(UPWARD_STEPS, DOWNWARD_STEPS, LEAF_STEPS,
                    pooled=tuple((name, pool) for step in DOWNWARD_STEPS
                                 if step.operator == "m2l"
                                 for name, pool in ((step.source, "m2l_compressed"),
                                                    (step.target, "m2l_summed"))))


#: The KIFMM without its near field (every step but P2P), and its near field alone: a kernel
#: whose far field is another kernel's sums (the Stokeslet's Laplace potentials,
#: :mod:`fmmloopy.maths.harmonic`) runs the one for the far kernel, the other for itself.
FAR_FIELD = KifmmScheme(UPWARD_STEPS, DOWNWARD_STEPS,
                        tuple(step for step in LEAF_STEPS if step.operator != "p2p"),
                        pooled=KIFMM.pooled)
NEAR_FIELD = KifmmScheme((), (), tuple(step for step in LEAF_STEPS if step.operator == "p2p"))


def plan_kernel_requests(scheme: KifmmScheme, n_e: int, ranks: dict[str, int] | None,
                         green: GreenKernel, eps: float | None = None) -> list[KernelRequest]:
    """The kernels a plan of ``green`` asks for (:meth:`KifmmScheme.kernel_requests`, under
    ``eps``); for a kernel whose far field is Laplace sums, those of :data:`FAR_FIELD` for its
    far kernel and those of :data:`NEAR_FIELD` for itself."""
    split = harmonic_split(green)
    if split is None:
        return scheme.kernel_requests(n_e, ranks, green, eps)
    return (FAR_FIELD.kernel_requests(n_e, ranks, split.far_kernel(green), eps)
            + NEAR_FIELD.kernel_requests(n_e, ranks, green, eps))
