"""A transformed kernel against the sequential one, on a sample of the target boxes of a launch.

The candidate kernel runs the whole launch, as it would in an FMM (every work-group, every list,
every size); the reference (the ``sequential`` recipe, or for ``sequential`` itself the numpy
reference) runs only on a sample of its target boxes (:func:`sample_rows`): the largest boxes,
the longest lists, the most source points, the first and last rows, rows spread evenly over
the launch and the first and last row of every level. Outputs of different target boxes never
depend on each other, so the sampled rows must agree; rows of boxes the launch does not target
must keep their initial values. A disagreement is described by where it is (:class:`Mismatch`):
target box, its row in the launch, its level, its points and list, the point or coefficient.

Used by ``fmmloopy check`` (:mod:`fmmloopy.checking.check`) and by :class:`fmmloopy.Fmm`'s first-use
verification of recipes that are not shipped (:mod:`fmmloopy.driver.plan`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pyopencl as cl
import pyopencl.array as cla

from fmmloopy.base.precision import FLOAT64, Precision
from fmmloopy.maths.green import GreenKernel
from fmmloopy.maths.operators import MATVEC, PARTICLES, OperatorSpec
from fmmloopy.maths.pair_precision import rsqrt_power
from fmmloopy.tree.csr import ranges_to_indices, select_rows

#: Normwise relative difference allowed between a recipe and the reference, in float64. Both sum
#: the same terms; only the order of summation and fused multiply-adds differ, which moves a sum
#: of at most a few tens of thousands of terms by O(n * 1e-16) relative to its largest term.
RELATIVE_TOLERANCE = 1e-12

#: Below float64 (float32), each compared entry must lie within its own rounding bound
#: (:func:`rounding_bounds`): ``u (C + lam sqrt(n + 1)) T + u K X`` for the unit round-off
#: ``u``, the sum ``T`` of the magnitudes of the entry's ``n`` terms and ``X`` the same weighted
#: by how far the kernel's computed coordinates can move each term
#: (:meth:`~fmmloopy.maths.operators.OperatorSpec.host_magnitudes`). ``C``: the roundings of one
#: term (offset, squared distance, reciprocal square root, the kernel's products, the strength,
#: the level scale), at most 16 for the kernels here.
TERM_ROUNDINGS = 16
#: ``lam``: the probabilistic bound of a sum of ``n`` rounded terms, ``lam sqrt(n) u`` relative to
#: the sum of their magnitudes, fails with probability below ``2 exp(-lam**2 / 2)`` (Higham and
#: Mary, SIAM J. Sci. Comput. 2019): 7.5 gives under 1e-12 per entry, 1e-6 over 10**6 entries.
PROBABILISTIC_FACTOR = 7.5
#: ``K``: a computed surface coordinate ``centre + half_width * unit`` carries two roundings of
#: its magnitude per axis (the product, the sum), so the offset moves by at most ``2 sqrt(3) u E``
#: in the 2-norm for ``E`` the coordinates' magnitudes (both sides where both are surfaces).
COORDINATE_ROUNDINGS = 2 * 3 ** 0.5

#: Rows taken by each criterion of :func:`sample_rows`.
ROWS_PER_CRITERION = 8

#: Wrong entries described in a failure message.
DESCRIBED_ENTRIES = 2


def run_once(kernel, queue: cl.CommandQueue, inputs: dict, warm_up: bool = False,
             ) -> tuple[dict[str, np.ndarray], float]:
    """Run ``kernel`` (a :class:`~fmmloopy.execution.compiled.CompiledOperator`) on host ``inputs``
    (target-major lists, converted to the kernel's layout here); its outputs and seconds.

    Outputs start from the values in ``inputs``. With ``warm_up`` it runs once untimed first.
    """
    inputs = kernel.arguments_from(inputs)
    outputs = kernel.written_names
    device_inputs = {name: cla.to_device(queue, value) for name, value in inputs.items()
                     if name not in outputs and isinstance(value, np.ndarray)}
    scalars = {name: value for name, value in inputs.items() if not isinstance(value, np.ndarray)}

    def once():
        fresh = {name: cla.to_device(queue, inputs[name]) for name in outputs}
        result = kernel(queue, **device_inputs, **scalars, **fresh)
        queue.finish()
        return result

    if warm_up:
        once()
    start = time.perf_counter()
    result = once()
    seconds = time.perf_counter() - start
    return {name: result[name].get() for name in outputs}, seconds


def random_operands(spec: OperatorSpec, sizes: dict[str, int], tree, rng: np.random.Generator,
                    green: GreenKernel | None = None, nboxes: int | None = None
                    ) -> dict[str, np.ndarray]:
    """Random values for what ``spec`` reads and adds into (strengths and results, or source and
    target vectors), shaped for ``tree`` (and, for particles, for the components of ``green``'s
    inputs and outputs): outputs start from random values, so a kernel that overwrites instead
    of adding is caught. A complex kernel's values are complex, with independent random real
    and imaginary parts (a kernel that loses either is caught). ``nboxes``: the rows of a
    matvec's vectors where they are not the tree's boxes (several strength vectors folded
    into the boxes, :func:`~fmmloopy.execution.kernel_arguments.fold_vectors`)."""
    nboxes = tree.nboxes if nboxes is None else nboxes
    def values(shape: tuple[int, ...]) -> np.ndarray:
        return random_values(rng, shape, green is not None and green.is_complex)
    if spec.template == MATVEC:
        return {"source_vectors": values((nboxes, sizes["n_source_coeffs"])),
                "target_vectors": values((nboxes, sizes["n_target_coeffs"])),
                "n_target_coeffs": sizes["n_target_coeffs"],
                "n_source_coeffs": sizes["n_source_coeffs"]}

    def shape(kind: str, npoints: int, components: int) -> tuple[int, ...]:
        if kind != PARTICLES:
            return (tree.nboxes * components, sizes["n_surface"])
        return (components, npoints) if components > 1 else (npoints,)
    n_in, n_out = (1, 1) if green is None else (green.n_inputs, green.n_outputs)
    sizes = {"n_surface": sizes["n_surface"]} if "n_surface" in sizes else {}
    return {"strengths": values(shape(spec.sources, tree.nsources, n_in)),
            "result": values(shape(spec.targets, tree.ntargets, n_out))} | sizes


def random_values(rng: np.random.Generator, shape: tuple[int, ...],
                  complex_values: bool = False) -> np.ndarray:
    """Standard normal values of ``shape``; complex ones with independent real and imaginary
    parts where ``complex_values``."""
    real = rng.standard_normal(shape)
    return real + 1j * rng.standard_normal(shape) if complex_values else real


# {{{ which rows

@dataclass(frozen=True)
class RowFacts:
    """Per row of a launch (one target box each): what makes a row large or special."""

    boxes: np.ndarray  # target box of each row
    levels: np.ndarray
    list_lengths: np.ndarray  # source boxes listed
    targets: np.ndarray  # target points (particles) or output coefficients/surface points
    sources: np.ndarray  # source points (particles or surfaces) over the row's list

    @classmethod
    def of(cls, spec: OperatorSpec, sizes: dict[str, int], inputs: dict) -> RowFacts:
        boxes = np.asarray(inputs["target_boxes"], dtype=np.int64)
        starts = np.asarray(inputs["source_box_starts"], dtype=np.int64)
        entries = np.asarray(inputs["source_box_lists"], dtype=np.int64)
        lengths = np.diff(starts)
        if spec.template == MATVEC:
            targets = np.full(len(boxes), sizes["n_target_coeffs"])
            per_entry = np.full(len(entries), sizes["n_source_coeffs"])
        else:
            targets = (inputs["box_target_counts"][boxes] if spec.targets == PARTICLES
                       else np.full(len(boxes), sizes["n_surface"]))
            per_entry = (inputs["box_source_counts"][entries] if spec.sources == PARTICLES
                         else np.full(len(entries), sizes["n_surface"]))
        cumulative = np.concatenate([[0], np.cumsum(per_entry, dtype=np.int64)])
        sources = cumulative[starts[1:]] - cumulative[starts[:-1]]
        return cls(boxes, np.asarray(inputs["box_levels"])[boxes], lengths,
                   np.asarray(targets, dtype=np.int64), sources)


def sample_rows(facts: RowFacts, per_criterion: int = ROWS_PER_CRITERION) -> np.ndarray:
    """Rows (positions in ``target_boxes``) to compare: the ``per_criterion`` rows with the most
    targets, the longest lists, the most source points; the first and last rows; rows spread
    evenly; the first and last row of every level. Sorted, without repeats."""
    nrows = len(facts.boxes)
    if nrows <= 6 * per_criterion:
        return np.arange(nrows)
    picked = [np.arange(per_criterion), np.arange(nrows - per_criterion, nrows),
              np.linspace(0, nrows - 1, per_criterion).round().astype(np.int64)]
    for measure in (facts.targets, facts.list_lengths, facts.sources):
        picked.append(np.argsort(-measure, kind="stable")[:per_criterion])
    for level in np.unique(facts.levels):
        rows = np.flatnonzero(facts.levels == level)
        picked.append(rows[[0, -1]])
    return np.unique(np.concatenate(picked))


def sampled_inputs(inputs: dict, rows: np.ndarray) -> dict:
    """``inputs`` with the launch cut to ``rows`` (target boxes and their CSR lists)."""
    aligned = (inputs["matrix_indices"],) if "matrix_indices" in inputs else ()
    starts, entries, *indices = select_rows(inputs["source_box_starts"],
                                            inputs["source_box_lists"], rows, *aligned)
    cut = dict(inputs, target_boxes=np.asarray(inputs["target_boxes"])[rows].astype(np.int32),
               ntarget_boxes=len(rows), source_box_starts=starts, source_box_lists=entries,
               nsource_list_entries=len(entries))
    if indices:
        cut["matrix_indices"] = indices[0]
    if "max_box_targets" in inputs:
        counts = inputs["box_target_counts"][cut["target_boxes"]]
        cut["max_box_targets"] = int(counts.max()) if len(counts) else 0
    return cut

# }}}


# {{{ where rows live in an output

def _particle_outputs(spec: OperatorSpec) -> bool:
    """Whether ``spec``'s output is indexed by target point (else by box and point/coeff)."""
    return spec.template != MATVEC and spec.targets == PARTICLES


def _output_rows(spec: OperatorSpec, name: str, inputs: dict, boxes: np.ndarray) -> np.ndarray:
    """Flat indices of output ``name`` that belong to target ``boxes``."""
    if _particle_outputs(spec):
        return ranges_to_indices(inputs["box_target_starts"][boxes].astype(np.int64),
                                 inputs["box_target_counts"][boxes].astype(np.int64))
    width = np.shape(inputs[name])[1]
    return (boxes[:, None].astype(np.int64) * width + np.arange(width)[None, :]).ravel()

# }}}


@dataclass(frozen=True)
class Comparison:
    """The outcome of one candidate-against-reference comparison."""

    max_relative_error: float
    compared_rows: int
    total_rows: int
    candidate_seconds: float
    reference_seconds: float
    mismatch: str = ""  # where the first wrong entries are; empty when all agree
    #: What :attr:`max_relative_error` must not exceed: :data:`RELATIVE_TOLERANCE` in float64;
    #: below, the error is the largest difference as a fraction of its entry's rounding bound
    #: (:data:`TERM_ROUNDINGS`), which must not exceed 1.
    tolerance: float = RELATIVE_TOLERANCE

    @property
    def ok(self) -> bool:
        return self.max_relative_error <= self.tolerance and not self.mismatch


def compare(candidate, reference, spec: OperatorSpec, sizes: dict[str, int], inputs: dict,
            queue: cl.CommandQueue, *, green: GreenKernel | None = None,
            rows: np.ndarray | None = None, warm_up: bool = False,
            precision: Precision = FLOAT64, rsqrt_error: float | None = None) -> Comparison:
    """Run ``candidate`` on the whole launch ``inputs`` and ``reference`` on sampled ``rows``
    (default :func:`sample_rows`); compare the sampled rows, and the rows of boxes the launch
    does not target with their initial values.

    ``reference`` is a compiled kernel, or None for the numpy host reference (then ``green``
    is the Green's function).

    ``precision`` below float64: ``candidate`` is a kernel of that precision and runs on the
    inputs rounded to it; the reference is the float64 host reference on the same rounded
    inputs, and each compared entry must lie within its rounding bound
    (:func:`rounding_bounds`; ``reference`` is not used).

    ``rsqrt_error``: ``candidate`` computes each ``1/sqrt`` within that relative error
    (:mod:`fmmloopy.maths.pair_precision`); compared as below float64, each entry allowed its
    rounding bound plus ``rsqrt_power(green) * rsqrt_error`` times the sum of its terms'
    magnitudes (``reference`` is not used).
    """
    facts = RowFacts.of(spec, sizes, inputs)
    rows = sample_rows(facts) if rows is None else rows
    if precision != FLOAT64 or rsqrt_error is not None:
        term_error = 0.0 if rsqrt_error is None else rsqrt_power(green) * rsqrt_error
        return _compare_rounded(candidate, spec, sizes, inputs, queue, green, facts, rows,
                                warm_up, precision, term_error)
    actual, candidate_seconds = run_once(candidate, queue, inputs, warm_up=warm_up)
    cut = sampled_inputs(inputs, rows)
    if reference is None:
        start = time.perf_counter()
        expected = spec.host_reference(green, cut, sizes)
        reference_seconds = time.perf_counter() - start
    else:
        expected, reference_seconds = run_once(reference, queue, cut, warm_up=warm_up)
    worst, mismatch = 0.0, ""
    for name, value in expected.items():
        for label, part_inputs, (got, want) in _components(spec, name, inputs,
                                                           actual[name], value):
            error, where = _compare_output(spec, name, part_inputs, facts, rows, got, want,
                                           label)
            worst = max(worst, error)
            mismatch = mismatch or where
    return Comparison(worst, len(rows), len(facts.boxes), candidate_seconds, reference_seconds,
                      mismatch)


def _components(spec: OperatorSpec, name: str, inputs: dict, *arrays: np.ndarray):
    """``(label, inputs, arrays)`` per component of output ``name``: the components of each
    target point (particles ``(components, n)``), or of each box of a surface of several
    components (row ``box * components + component``), each as an output of its own; one part
    for an output of one component."""
    value = arrays[0]
    if _particle_outputs(spec) and np.ndim(value) == 2:
        for k in range(len(value)):
            yield (f"{name!r} (component {k})", dict(inputs, **{name: inputs[name][k]}),
                   tuple(np.asarray(array)[k] for array in arrays))
    elif not _particle_outputs(spec) and spec.template != MATVEC \
            and len(value) > inputs["nboxes"]:
        components = len(value) // inputs["nboxes"]

        def component(array, k):
            array = np.asarray(array)
            return np.ascontiguousarray(
                array.reshape((-1, components, array.shape[-1]))[:, k])
        for k in range(components):
            yield (f"{name!r} (component {k})",
                   dict(inputs, **{name: component(inputs[name], k)}),
                   tuple(component(array, k) for array in arrays))
    else:
        yield repr(name), inputs, arrays


def rounded_inputs(inputs: dict, precision: Precision, wide: bool = False) -> dict:
    """``inputs`` with their real and complex arrays rounded to ``precision`` (kept in float64
    or complex128 where ``wide``: the same numbers, for the references)."""
    def rounded(value):
        if not isinstance(value, np.ndarray) or value.dtype.kind not in "fc":
            return value
        complex_values = value.dtype.kind == "c"
        narrow = value.astype(precision.value_dtype(complex_values))
        return narrow.astype(np.complex128 if complex_values else np.float64) if wide \
            else narrow
    return {name: rounded(value) for name, value in inputs.items()}


def rounding_bounds(precision: Precision, terms: np.ndarray, coordinates: np.ndarray,
                    term_counts: np.ndarray) -> np.ndarray:
    """Per entry, the most a kernel of ``precision`` may differ from the exact sum of the same
    rounded inputs: ``u ((C + lam sqrt(n + 1)) terms + K coordinates)`` (:data:`TERM_ROUNDINGS`,
    :data:`PROBABILISTIC_FACTOR`, :data:`COORDINATE_ROUNDINGS`) for ``n = term_counts`` (the
    initial value counts as one more term)."""
    return precision.unit_roundoff * (
        (TERM_ROUNDINGS + PROBABILISTIC_FACTOR * np.sqrt(term_counts + 1.0)) * terms
        + COORDINATE_ROUNDINGS * coordinates)


def _compare_rounded(candidate, spec: OperatorSpec, sizes: dict[str, int], inputs: dict,
                     queue: cl.CommandQueue, green: GreenKernel | None, facts: RowFacts,
                     rows: np.ndarray, warm_up: bool, precision: Precision,
                     term_error: float = 0.0) -> Comparison:
    """:func:`compare` below float64: every compared entry within its rounding bound, plus
    ``term_error`` times the sum of its terms' magnitudes."""
    actual, candidate_seconds = run_once(candidate, queue, rounded_inputs(inputs, precision),
                                         warm_up=warm_up)
    wide = rounded_inputs(inputs, precision, wide=True)
    cut = sampled_inputs(wide, rows)
    start = time.perf_counter()
    expected = spec.host_reference(green, cut, sizes, precision.dtype)
    magnitudes = spec.host_magnitudes(green, cut, sizes, precision.dtype)
    reference_seconds = time.perf_counter() - start
    worst, mismatch = 0.0, ""
    for name, value in expected.items():
        terms, coordinates = magnitudes[name]
        for label, part_inputs, (got, want, part_terms, part_coordinates) in _components(
                spec, name, wide, actual[name], value, terms, coordinates):
            sampled = [_output_rows(spec, name, part_inputs, facts.boxes[[row]]) for row in rows]
            counts = np.concatenate([np.full(len(indices), facts.sources[row])
                                     for indices, row in zip(sampled, rows, strict=True)])
            sampled = np.concatenate(sampled)
            terms_sampled = np.ravel(part_terms)[sampled]
            bound = (rounding_bounds(precision, terms_sampled,
                                     np.ravel(part_coordinates)[sampled], counts)
                     + term_error * terms_sampled)
            error, where = _compare_output(spec, name, part_inputs, facts, rows, got, want,
                                           label, bound)
            worst = max(worst, error)
            mismatch = mismatch or where
    return Comparison(worst, len(rows), len(facts.boxes), candidate_seconds, reference_seconds,
                      mismatch, tolerance=1.0)


def _compare_output(spec: OperatorSpec, name: str, inputs: dict, facts: RowFacts,
                    rows: np.ndarray, actual: np.ndarray, expected: np.ndarray,
                    label: str | None = None, bounds: np.ndarray | None = None
                    ) -> tuple[float, str]:
    """Largest relative difference on the compared entries and, if beyond the tolerance, a
    description of the first wrong ones (of the output called ``label``, default
    ``repr(name)``). With ``bounds`` (one per entry of the sampled rows, in the order of
    :func:`_output_rows`), the largest difference as a fraction of its entry's bound, which
    must not exceed 1; entries of rows the launch does not target must keep their values
    exactly."""
    actual, expected = np.ravel(actual), np.ravel(expected)
    initial = np.ravel(inputs[name])
    targeted = np.zeros(actual.size, dtype=bool)
    targeted[_output_rows(spec, name, inputs, facts.boxes)] = True
    sampled = _output_rows(spec, name, inputs, facts.boxes[rows])
    untouched = np.flatnonzero(~targeted)
    compared = np.concatenate([sampled, untouched])
    reference = np.concatenate([expected[sampled], initial[untouched]])
    got = actual[compared]
    scale = float(np.max(np.abs(reference))) if reference.size else 0.0
    with np.errstate(invalid="ignore", over="ignore"):
        difference = np.abs(got - reference)
    difference[~np.isfinite(got)] = np.inf
    if bounds is None:
        allowed = np.full(difference.shape, RELATIVE_TOLERANCE * (scale or 1.0))
        error = float(difference.max() / (scale or 1.0)) if difference.size else 0.0
    else:
        allowed = np.concatenate([bounds, np.zeros(len(untouched))])
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.where(difference == 0, 0.0, difference / allowed)
        error = float(ratio.max(initial=0.0))
    wrong = np.flatnonzero(difference > allowed)
    if not len(wrong):
        return error, ""
    described = [_describe(spec, name, inputs, facts, int(compared[i]), got[i], reference[i])
                 for i in wrong[:DESCRIBED_ENTRIES]]
    return error, (f"{len(wrong)} of {len(compared)} compared entries of "
                   f"{label or repr(name)} wrong; first: "
                   + "; ".join(described))


def _describe(spec: OperatorSpec, name: str, inputs: dict, facts: RowFacts, index: int,
              got: float, want: float) -> str:
    """Where flat entry ``index`` of output ``name`` lives: box, row, point or coefficient."""
    if _particle_outputs(spec):
        starts = inputs["box_target_starts"][facts.boxes]
        counts = inputs["box_target_counts"][facts.boxes]
        rows = np.flatnonzero((starts <= index) & (index < starts + counts))
        if not len(rows):
            return (f"target point {index} (in no target box of this launch: must keep its "
                    f"value): got {got:.6g}, expected {want:.6g}")
        box = int(facts.boxes[rows[0]])
        what = f"target {index - int(starts[rows[0]])} of {int(counts[rows[0]])} in the box"
    else:
        width = np.shape(inputs[name])[1]
        box, within = divmod(index, width)
        noun = "coefficient" if spec.template == MATVEC else "surface point"
        what = f"{noun} {within} of {width}"
    values = f"got {got:.6g}, expected {want:.6g}"
    positions = np.flatnonzero(facts.boxes == box)
    if not len(positions):
        return f"box {box} (not a target of this launch: must keep its value), {what}: {values}"
    row = int(positions[0])
    inputs_noun = "source coefficients" if spec.template == MATVEC else "source points"
    return (f"target box {box} (row {row} of {len(facts.boxes)}, level {int(facts.levels[row])},"
            f" list of {int(facts.list_lengths[row])} boxes with {int(facts.sources[row])} "
            f"{inputs_noun}), {what}: {values}")
