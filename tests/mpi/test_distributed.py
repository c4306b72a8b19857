"""DistributedFmm against the single-process Fmm on the same points (docs/scale-out.md).

Every rank draws the same global problem (the test may hold it all; the FMM does not), passes
its random share, and compares its own results with the single-process FMM's at its own
targets. The bound, 1e-12 relative to the largest value: the two sum the same
terms in a different order (partial multipoles added over ranks, points of one leaf in another
order), which moves a result by a few units in the last place (measured: 2e-16 to 5e-16).
"""

import time

import numpy as np
import pytest

import fmmloopy
from fmmloopy.api.distributed import DistributedFmm, rank_speed
from fmmloopy.base.distributions import DISTRIBUTIONS

#: Relative to the largest value of a result (module docstring).
EQUAL = 1e-12


def check(comm, ok: bool, message: str) -> None:
    """Assert ``ok`` on every rank, naming each rank where it failed."""
    failures = [f"rank {rank}: {text}" for rank, (good, text) in
                enumerate(comm.allgather((bool(ok), message))) if not good]
    assert not failures, "; ".join(failures)


def shares(comm, n: int, rng: np.random.Generator, empty_rank: int | None = None) -> np.ndarray:
    """This rank's indices of a random split of ``n`` items (none on ``empty_rank``)."""
    size = comm.Get_size()
    owner = rng.integers(0, size, n)
    if empty_rank is not None and size > 1:
        owner[owner == empty_rank] = (empty_rank + 1) % size
    return np.flatnonzero(owner == comm.Get_rank())


def single_process(comm, *args, call=None, **options):
    """The single-process FMM's result on rank 0, sent to every rank."""
    result = None
    if comm.Get_rank() == 0:
        result = call(fmmloopy.Fmm(*args, **options))
    request = comm.Ibarrier()  # the others wait asleep: rank 0 gets the cores
    while not request.Test():
        time.sleep(0.005)
    return comm.bcast(result, root=0)


def relative_difference(got: np.ndarray, expected: np.ndarray, scale: float) -> float:
    return float(np.abs(got - expected).max() / scale) if got.size else 0.0


#: On an odd and an even count of ranks (3, with a middle rank, and 2: tests/mpi/conftest.py):
#: the leaves are cut differently, and so are the multipoles summed from several ranks' parts
#: (docs/scale-out.md); the rank given no points is the last of 2, the middle one of 3. On the
#: sphere of 3000 points n_crit="auto" chooses a root cube wider than the points' bounding cube
#: (2^(2/3) where a pair costs 20 matvec flops, 2^(1/3) at 30: AVX-512 and AVX2).
@pytest.mark.both_parities
@pytest.mark.parametrize("distribution, n, separate_targets, n_crit, empty_rank", [
    ("sphere", 6000, False, 64, None),
    ("cube", 6000, False, "auto", 0),
    ("plummer", 6000, False, 40, None),
    ("sphere", 6000, True, 64, 1),
    ("plummer", 6000, True, "auto", None),
    ("sphere", 3000, False, "auto", None),
])
def test_equals_the_single_process_fmm(comm, distribution, n, separate_targets, n_crit,
                                       empty_rank):
    rng = np.random.default_rng(7)
    sources = DISTRIBUTIONS[distribution](n, rng)
    charges = rng.uniform(-1, 1, n)
    targets = rng.uniform(-1.2, 1.2, (2500, 3)) if separate_targets else None
    mine = shares(comm, n, rng, empty_rank)
    my_targets = mine if targets is None else shares(comm, len(targets), rng, empty_rank)
    fmm = DistributedFmm(sources[mine], None if targets is None else targets[my_targets],
                         comm=comm, order=4, n_crit=n_crit)
    got = fmm(charges[mine])
    expected = single_process(comm, sources, targets, order=4, n_crit=n_crit,
                              call=lambda f: (f(charges), f.n_crit, f.tree.nboxes,
                                              f.tree.root_half_width))
    potential, chosen, nboxes, root = expected
    check(comm, (fmm.n_crit, fmm.skeleton.nboxes, fmm.skeleton.root_half_width) == (
        chosen, nboxes, root), f"tree n_crit {fmm.n_crit}, {fmm.skeleton.nboxes} boxes, root "
          f"half-width {fmm.skeleton.root_half_width}; one process: {chosen}, {nboxes}, {root}")
    scale = np.abs(potential).max()
    difference = relative_difference(got, potential[my_targets], scale)
    check(comm, got.shape == (len(my_targets),) and difference <= EQUAL,
          f"shape {got.shape}, difference {difference:.3g}")


def test_dipoles_gradients_and_hessians_equal_the_single_process_fmm(comm):
    rng = np.random.default_rng(3)
    n = 4000
    sources = DISTRIBUTIONS["cube"](n, rng)
    charges, dipoles = rng.uniform(-1, 1, n), rng.uniform(-1, 1, (n, 3))
    mine = shares(comm, n, rng)
    fmm = DistributedFmm(sources[mine], comm=comm, order=4, n_crit=50)
    got = fmm(charges[mine], dipoles=dipoles[mine], gradient=True, hessian=True)
    expected = single_process(
        comm, sources, order=4, n_crit=50,
        call=lambda f: tuple(f(charges, dipoles=dipoles, gradient=True, hessian=True)))
    differences = [relative_difference(value, reference[mine], np.abs(reference).max())
                   for value, reference in zip(got, expected, strict=True)]
    check(comm, max(differences) <= EQUAL,
          f"potential, gradient, Hessian differ by {differences}")


@pytest.mark.parametrize("kernel", ["yukawa:kappa=3", "helmholtz:k=2"])
def test_other_kernels_equal_the_single_process_fmm(comm, kernel):
    """A kernel without homogeneity (operators per level) and a complex one."""
    rng = np.random.default_rng(5)
    n = 3000
    sources = DISTRIBUTIONS["sphere"](n, rng)
    charges = rng.uniform(-1, 1, n) + (1j * rng.uniform(-1, 1, n) if "helm" in kernel else 0)
    mine = shares(comm, n, rng)
    fmm = DistributedFmm(sources[mine], comm=comm, kernel=kernel, order=4, n_crit=60)
    got = fmm(charges[mine])
    potential = single_process(comm, sources, kernel=kernel, order=4, n_crit=60,
                               call=lambda f: f(charges))
    difference = relative_difference(got, potential[mine], np.abs(potential).max())
    check(comm, got.dtype == potential.dtype and difference <= EQUAL,
          f"{got.dtype}, difference {difference:.3g}")


def test_stokes_equals_the_single_process_fmm(comm):
    """Stokes flow: four Laplace potentials per force vector, whose partial multipoles travel
    between the ranks as four folded rows per box; velocity, gradient and pressure."""
    rng = np.random.default_rng(9)
    n = 3000
    sources = DISTRIBUTIONS["plummer"](n, rng)
    forces = rng.uniform(-1, 1, (n, 3))
    mine = shares(comm, n, rng)
    kernel = "stokes:mu=0.7"
    fmm = DistributedFmm(sources[mine], comm=comm, kernel=kernel, order=4, n_crit=50)
    got = fmm(forces[mine], gradient=True, pressure=True)
    expected = single_process(comm, sources, kernel=kernel, order=4, n_crit=50,
                              call=lambda f: tuple(f(forces, gradient=True, pressure=True)))
    differences = [relative_difference(value, reference[mine], np.abs(reference).max())
                   for value, reference in zip(got, expected, strict=True)]
    check(comm, got.velocity.shape == (len(mine), 3) and max(differences) <= EQUAL,
          f"velocity, gradient, pressure differ by {differences}")


def test_stresslets_equal_the_single_process_fmm(comm):
    """Stresslets (a double layer) beside forces: force dipoles without psi charges in the far
    field, the [G | T] kernel in the near field, across ranks as in one process."""
    rng = np.random.default_rng(10)
    n = 3000
    sources = DISTRIBUTIONS["sphere"](n, rng)
    forces, strengths = rng.uniform(-1, 1, (2, n, 3))
    mine = shares(comm, n, rng)
    fmm = DistributedFmm(sources[mine], comm=comm, kernel="stokes", order=4, n_crit=50)
    got = fmm(forces[mine], stresslets=(strengths[mine], sources[mine]), pressure=True)
    expected = single_process(comm, sources, kernel="stokes", order=4, n_crit=50,
                              call=lambda f: tuple(f(forces, stresslets=(strengths, sources),
                                                     pressure=True)))
    differences = [relative_difference(value, reference[mine], np.abs(reference).max())
                   for value, reference in zip(got, expected, strict=True)
                   if value is not None]
    check(comm, max(differences) <= EQUAL, f"velocity, pressure differ by {differences}")


def test_far_offset_points_equal_the_single_process_fmm(comm):
    """A large offset and a tiny scale: the working coordinates come from the global bounds."""
    rng = np.random.default_rng(11)
    n = 3000
    sources = 1e6 + 1e-9 * DISTRIBUTIONS["cube"](n, rng)
    charges = rng.uniform(-1, 1, n)
    mine = shares(comm, n, rng)
    fmm = DistributedFmm(sources[mine], comm=comm, order=4, n_crit=60)
    got = fmm(charges[mine])
    potential = single_process(comm, sources, order=4, n_crit=60, call=lambda f: f(charges))
    difference = relative_difference(got, potential[mine], np.abs(potential).max())
    check(comm, difference <= EQUAL and np.any(fmm.coordinate_origin != 0),
          f"difference {difference:.3g}, origin {fmm.coordinate_origin}")


#: The rank that owns no leaf differs with the count: the first of 2, the middle one of 3.
@pytest.mark.both_parities
def test_more_ranks_than_leaves_and_no_points(comm):
    """Ranks may own no leaf: 12 random points, then clusters in fewer leaves than there are
    ranks (one cluster for 2 ranks: the root is the only leaf, rank 1's; two for 3: the middle
    rank owns none); no rank with points at all gives zeros."""
    rng = np.random.default_rng(2)
    sources = rng.random((12, 3))
    charges = rng.uniform(-1, 1, 12)
    mine = shares(comm, 12, rng)
    got = DistributedFmm(sources[mine], comm=comm, order=3, n_crit=4)(charges[mine])
    potential = single_process(comm, sources, order=3, n_crit=4, call=lambda f: f(charges))
    difference = relative_difference(got, potential[mine], np.abs(potential).max())
    nothing = DistributedFmm(np.zeros((0, 3)), comm=comm, order=3)(np.zeros(0))
    check(comm, difference <= EQUAL and nothing.shape == (0,),
          f"difference {difference:.3g}, no points: {nothing.shape}")

    # Four points near each of `clusters` corners of the unit cube (opposite corners
    # first, so that every cluster is in an octant of its own): one leaf each (n_crit 4).
    size = comm.Get_size()
    clusters = min(8, max(1, size - 1))
    corners = np.array([[0, 0, 0], [1, 1, 1], [1, 0, 0], [0, 1, 1], [0, 1, 0], [1, 0, 1],
                        [0, 0, 1], [1, 1, 0]])[:clusters]
    sources = (0.05 + 0.9 * np.repeat(corners, 4, axis=0)
               + 0.01 * rng.random((4 * clusters, 3)))
    charges = rng.uniform(-1, 1, len(sources))
    mine = shares(comm, len(sources), rng)
    fmm = DistributedFmm(sources[mine], comm=comm, order=3, n_crit=4)
    got = fmm(charges[mine])
    potential = single_process(comm, sources, order=3, n_crit=4, call=lambda f: f(charges))
    difference = relative_difference(got, potential[mine], np.abs(potential).max())
    leaves = np.bincount(fmm.owners[fmm.owners >= 0], minlength=size)
    check(comm, difference <= EQUAL and (size == 1 or np.any(leaves == 0)),
          f"clusters: difference {difference:.3g}, leaves per rank {leaves}")


def test_bad_points_on_one_rank_raise_on_every_rank(comm):
    rng = np.random.default_rng(1)
    last = comm.Get_size() - 1
    sources = rng.random((100, 3))
    if comm.Get_rank() == last:
        sources[7, 1] = np.nan
    with pytest.raises(ValueError) as info:
        DistributedFmm(sources, comm=comm, order=3)
    message = str(info.value)
    own = comm.Get_rank() == last
    check(comm, "NaN" in message or "finite" in message if own else f"rank {last}" in message,
          message)


def test_options_must_agree_over_ranks(comm):
    rng = np.random.default_rng(1)
    size, rank = comm.Get_size(), comm.Get_rank()
    order = 3 if rank == size - 1 else 4
    if size == 1:  # one rank always agrees with itself
        fmm = DistributedFmm(rng.random((50, 3)), comm=comm, order=order)
        check(comm, fmm.order == order, "one rank")
        return
    with pytest.raises(ValueError) as info:
        DistributedFmm(rng.random((50, 3)), comm=comm, order=order)
    check(comm, "order must be the same on every rank" in str(info.value), str(info.value))


def test_bad_charges_on_one_rank_raise_on_every_rank_and_the_fmm_goes_on(comm):
    rng = np.random.default_rng(4)
    sources = rng.random((400, 3))
    fmm = DistributedFmm(sources, comm=comm, order=3, n_crit=40)
    last = comm.Get_size() - 1
    charges = np.ones(400)
    bad = charges.copy()
    if comm.Get_rank() == last:
        bad = np.ones(399)  # wrong length on one rank
    with pytest.raises(ValueError) as info:
        fmm(bad)
    first = fmm(charges)
    again = fmm(charges)
    check(comm, np.array_equal(first, again) and first.shape == (400,),
          f"after the error: {info.value}")


def test_several_strength_vectors_are_refused_by_name(comm):
    """Charges (N, k) are not distributed yet: every rank gets the error naming it."""
    fmm = DistributedFmm(np.random.default_rng(5).random((300, 3)), comm=comm, order=3, n_crit=40)
    with pytest.raises(ValueError, match="one strength vector per call"):
        fmm(np.ones((300, 2)))
    check(comm, fmm(np.ones(300)).shape == (300,), "one vector still works")


@pytest.mark.parametrize("speed", ["given", "measure"])
def test_shares_follow_the_ranks_speeds(comm, speed):
    """Rank 0 three times as fast as the others takes three shares of the modelled work (to
    within the largest leaf), and the result is unchanged; ``"measure"`` weighs by each device's
    measured peak."""
    rng = np.random.default_rng(9)
    n = 5000
    sources = DISTRIBUTIONS["cube"](n, rng)
    charges = rng.uniform(-1, 1, n)
    mine = shares(comm, n, rng)
    rank, size = comm.Get_rank(), comm.Get_size()
    given = 3.0 if rank == 0 else 1.0
    fmm = DistributedFmm(sources[mine], comm=comm, order=4, n_crit=40,
                         speed=given if speed == "given" else "measure")
    got = fmm(charges[mine])
    potential = single_process(comm, sources, order=4, n_crit=40, call=lambda f: f(charges))
    difference = relative_difference(got, potential[mine], np.abs(potential).max())
    speeds = np.array(comm.allgather(fmm.speed))
    share = fmm.leaf_costs[fmm.owners == 0].sum() / fmm.leaf_costs.sum()
    wanted = speeds[0] / speeds.sum()
    check(comm, difference <= EQUAL and np.all(speeds > 0)
          and abs(share - wanted) <= fmm.leaf_costs.max() / fmm.leaf_costs.sum() + 1e-12
          and (speed == "measure" or np.isclose(wanted, 3 / (size + 2))),
          f"difference {difference:.3g}, speeds {speeds}, rank 0's share {share:.4f} "
          f"(wanted {wanted:.4f})")


def test_a_rank_failing_in_its_upward_pass_fails_every_rank_and_the_fmm_goes_on(comm):
    """No rank is left waiting in the multipole exchange for one that raised before it."""
    rng = np.random.default_rng(6)
    fmm = DistributedFmm(rng.random((600, 3)), comm=comm, order=3, n_crit=30)
    charges = np.ones(600)
    expected = fmm(charges)
    last = comm.Get_size() - 1
    failing = comm.Get_rank() == last and fmm.local is not None
    if failing:
        evaluate = fmm.local._evaluate
        fmm.local._evaluate = lambda *args: (_ for _ in ()).throw(RuntimeError("device lost"))
    with pytest.raises(RuntimeError) as info:
        fmm(charges)
    if failing:
        fmm.local._evaluate = evaluate
    again = fmm(charges)
    check(comm, "device lost" in str(info.value) and np.array_equal(again, expected),
          str(info.value))


def test_a_heavy_leaf_is_summed_by_a_nested_fmm_on_its_rank(comm):
    """A cluster finer than the tree resolves (max_depth 6) and coincident points: the rank
    owning the leaf sums its row with a nested FMM, as one process does."""
    rng = np.random.default_rng(8)
    n = 6000
    sources = rng.random((n, 3))
    sources[:1500] = 0.5 + 1e-7 * rng.random((1500, 3))
    sources[1500:1550] = sources[1500]
    charges = rng.uniform(-1, 1, n)
    mine = shares(comm, n, rng)
    fmm = DistributedFmm(sources[mine], comm=comm, order=4, n_crit=40, max_depth=6)
    got = fmm(charges[mine])
    nested = sum(comm.allgather(len(fmm.local.nested_rows) if fmm.local else 0))
    potential, single_nested = single_process(
        comm, sources, order=4, n_crit=40, max_depth=6,
        call=lambda f: (f(charges), len(f.nested_rows)))
    difference = relative_difference(got, potential[mine], np.abs(potential).max())
    check(comm, difference <= EQUAL and nested == single_nested >= 1,
          f"difference {difference:.3g}, nested rows {nested} (one process {single_nested})")


def test_ranks_on_different_devices_are_weighed_by_measured_speed():
    """Not collective: the choice of a rank's weight."""
    cpu, gpu = ("PoCL", "cpu", 2), ("NVIDIA CUDA", "H200", 132)
    measured = lambda: 250.0  # noqa: E731
    assert rank_speed(None, [cpu, cpu], measured) is None  # alike: equal shares
    assert rank_speed(None, [cpu, gpu], measured) == 250.0  # unlike: measured
    assert rank_speed("measure", [cpu, cpu], measured) == 250.0
    assert rank_speed(3.0, [cpu, gpu], measured) == 3.0  # given: as given


def test_eps_chooses_the_single_process_order(comm):
    """``eps=``: the order chosen over every rank's root box is the single-process FMM's, the
    results equal, and a call for a quantity the order was not chosen for is refused."""
    rng = np.random.default_rng(8)
    n = 2000
    sources = DISTRIBUTIONS["cube"](n, rng)
    charges = rng.uniform(-1, 1, n)
    mine = shares(comm, n, rng)
    fmm = DistributedFmm(sources[mine], comm=comm, kernel="yukawa:kappa=4", eps=1e-4, n_crit=60)
    got = fmm(charges[mine])
    order, potential = single_process(
        comm, sources, kernel="yukawa:kappa=4", eps=1e-4, n_crit=60,
        call=lambda f: (f.order, f(charges)))
    difference = relative_difference(got, potential[mine], np.abs(potential).max())
    check(comm, fmm.order == order and difference <= EQUAL,
          f"order {fmm.order} against {order}, difference {difference:.3g}")
    with pytest.raises(ValueError, match="eps_for"):
        fmm(charges[mine], gradient=True)


@pytest.mark.parametrize("separate_targets", [False, True])
def test_update_moves_every_ranks_points_and_equals_the_single_process_fmm(comm,
                                                                           separate_targets):
    """After update(), the single-process FMM of the moved points with the n_crit the first
    set-up chose (the bound of the module docstring); bad points on one rank (NaN, another
    count) raise on every rank and the FMM goes on with the points it had."""
    rng = np.random.default_rng(11)
    sources = DISTRIBUTIONS["sphere"](5000, rng)
    charges = rng.uniform(-1, 1, len(sources))
    targets = rng.uniform(-1.1, 1.1, (1500, 3)) if separate_targets else None
    mine = shares(comm, len(sources), rng)
    my_targets = mine if targets is None else shares(comm, len(targets), rng)
    fmm = DistributedFmm(sources[mine], None if targets is None else targets[my_targets],
                         comm=comm, order=4)
    before = fmm(charges[mine])
    moved = sources + 0.02 * rng.standard_normal(sources.shape)
    moved_targets = None if targets is None else 0.9 * targets
    fmm.update(moved[mine], None if targets is None else moved_targets[my_targets])
    got = fmm(charges[mine])
    check(comm, not len(got) or not np.array_equal(got, before), "the update changed nothing")
    expected = single_process(comm, moved, moved_targets, order=4, n_crit=fmm.n_crit,
                              call=lambda f: f(charges))
    scale = np.abs(expected).max()
    check(comm, relative_difference(got, expected[my_targets], scale) < EQUAL,
          f"moved: {relative_difference(got, expected[my_targets], scale):.1e}")
    last = comm.Get_size() - 1
    for bad in ("nan", "count"):
        bad_sources = moved[mine].copy()
        if comm.Get_rank() == last:
            bad_sources = bad_sources[:-1] if bad == "count" else bad_sources
            if bad == "nan" and len(bad_sources):
                bad_sources[0, 2] = np.nan
            elif bad == "nan":
                bad_sources = np.full((0, 2), np.nan)  # a rank without sources: bad shape
        with pytest.raises(ValueError) as info:
            fmm.update(bad_sources, None if targets is None else moved_targets[my_targets])
        check(comm, f"rank {last}" in str(info.value) or comm.Get_rank() == last,
              str(info.value))
        again = fmm(charges[mine])
        check(comm, np.array_equal(again, got), f"after the refused update ({bad})")
