"""loopy's internals behind fmmloopy.tuning.loopy_internals: each wrapper on a tiny kernel,
a clear message (installed loopy version, the internal) when one moves, and the kernel cache
falling back to loopy's executor, with one warning, when they did."""

import importlib.metadata
import warnings

import loopy as lp
import numpy as np
import pyopencl.array as cla
import pytest
from loopy.kernel.data import GroupInameTag, LocalInameTag
from loopy.target.execution import ExecutorBase
from pymbolic import evaluate

from fmmloopy.base.devices import context_for
from fmmloopy.checking.problems import check_problems
from fmmloopy.execution import cache_files, compiled, generation, kernel_cache
from fmmloopy.execution.compiled import compiled_operator
from fmmloopy.execution.kernel_cache import KernelCacheWarning
from fmmloopy.execution.launcher import Launcher
from fmmloopy.maths.operators import get_operator
from fmmloopy.tuning import loopy_internals
from fmmloopy.tuning.loopy_internals import LoopyInternalsChanged

LOOPY = importlib.metadata.version("loopy")


def _moved(what: str) -> str:
    return (f"loopy {LOOPY}: an internal fmmloopy uses ({what}) moved; "
            "fmmloopy/tuning/loopy_internals.py must follow it")


def _doubled(*, typed: bool = True) -> lp.TranslationUnit:
    """``out[i] = 2 a[i]`` over n, in work-groups of 4; ``a`` untyped unless ``typed``."""
    knl = lp.make_kernel(
        "{[i]: 0 <= i < n}", "out[i] = 2 * a[i]",
        [lp.GlobalArg("a", np.float64 if typed else None, shape=("n",)),
         lp.GlobalArg("out", np.float64, shape=("n",), is_output=True),
         lp.ValueArg("n", np.int32)], name="doubled", lang_version=(2018, 2))
    knl = lp.split_iname(knl, "i", 4, outer_tag="g.0", inner_tag="l.0")
    return lp.set_options(knl, build_options=["-cl-fast-relaxed-math"], return_dict=True)


def _two_kernels() -> lp.TranslationUnit:
    """Two device kernels, a global temporary passed between them."""
    knl = lp.make_kernel(
        "{[i, j]: 0 <= i, j < n}",
        """
        tmp[i] = 2 * a[i] {id=first}
        ... gbarrier {id=sync, dep=first}
        out[j] = tmp[n - 1 - j] {dep=sync}
        """,
        [lp.GlobalArg("a", np.float64, shape=("n",)),
         lp.GlobalArg("out", np.float64, shape=("n",), is_output=True),
         lp.TemporaryVariable("tmp", np.float64, shape=("n",),
                              address_space=lp.AddressSpace.GLOBAL),
         lp.ValueArg("n", np.int32)], name="reversed_doubled", lang_version=(2018, 2))
    return lp.tag_inames(knl, {"i": "g.0", "j": "g.0"})


@pytest.fixture
def context(device):
    return context_for(device)


def _checked(call, what: str):
    """``call()``, failing the test with the installed loopy version and ``what`` if one of
    loopy's internals moved."""
    try:
        return call()
    except LoopyInternalsChanged as exc:
        pytest.fail(f"{_moved(what)}: {exc}")


def test_every_internal_is_where_loopy_2025_2_had_it():
    problem = loopy_internals.self_check()
    assert problem is None, _moved("see the message") + f": {problem}"


def test_runs_plainly_tells_typed_arguments_from_runtime_typed(context):
    typed = _doubled().executor(context)
    assert _checked(lambda: loopy_internals.runs_plainly(typed), "runs_plainly") is True
    untyped = _doubled(typed=False).executor(context)
    assert _checked(lambda: loopy_internals.runs_plainly(untyped), "runs_plainly") is False


def test_describe_launch_gives_the_kernel_its_arguments_and_grid(context):
    t_unit = _doubled()
    launch = _checked(lambda: loopy_internals.describe_launch(t_unit.executor(context),
                                                              "doubled"),
                      "describe_launch")
    assert launch is not None, _moved("describe_launch found no single device kernel")
    assert launch.kernel_name == "doubled"
    assert launch.kernel.linearization is not None
    assert set(launch.passed_names) == {"a", "out", "n"}
    assert [str(size) for size in launch.group_size] == ["4"]
    assert [int(evaluate(size, {"n": n})) for n in (1, 4, 5, 17)
            for size in launch.groups] == [1, 1, 2, 5]
    assert "__kernel" in lp.generate_code_v2(launch.scheduled).device_code()


def test_describe_launch_refuses_several_device_kernels(context):
    executor = _two_kernels().executor(context)
    assert _checked(lambda: loopy_internals.describe_launch(executor, "reversed_doubled"),
                    "describe_launch") is None


def test_the_description_runs_as_loopy_runs_it(context, queue):
    """The wrappers' result, as data, launched without loopy, equals loopy's executor."""
    t_unit = _doubled()
    executor = t_unit.executor(context)
    generated = _checked(lambda: generation.generate(t_unit, executor, {}), "generate")
    assert generated is not None
    assert [argument.name for argument in generated.arguments] == ["a", "out", "n"]
    assert generated.build_options == ("-cl-fast-relaxed-math",)
    assert generated.written_names == ("out",)
    a = cla.to_device(queue, np.arange(13, dtype=np.float64))
    ours = cla.zeros(queue, 13, np.float64)
    _event, outputs = Launcher(generated, context)(queue, a=a, out=ours, n=13)
    _event, theirs = executor(queue, a=a, n=13)
    np.testing.assert_array_equal(outputs["out"].get(), theirs["out"].get())
    np.testing.assert_array_equal(ours.get(), 2 * np.arange(13))


def _private_temporary() -> lp.TemporaryVariable:
    return lp.TemporaryVariable("acc", np.float64, shape=(),
                                address_space=lp.AddressSpace.PRIVATE)


def test_race_rule_follows_loopy_check():
    """loopy's rule: a private temporary is per work-item (a local loop does not race on it),
    a local one is shared by the work-group (a local loop races, a group loop does not)."""
    local = lp.TemporaryVariable("tile", np.float64, shape=(4,),
                                 address_space=lp.AddressSpace.LOCAL)
    race = loopy_internals.is_racing_iname_tag
    assert _checked(lambda: race(_private_temporary(), LocalInameTag(0)),
                    "is_racing_iname_tag") is False
    assert _checked(lambda: race(local, LocalInameTag(0)), "is_racing_iname_tag") is True
    assert _checked(lambda: race(local, GroupInameTag(0)), "is_racing_iname_tag") is False


def _executor(context):
    return _doubled().executor(context)


#: What removing each internal breaks: (owner, attribute, the call that must notice, the name
#: the message must give); an owner given as a dotted path is removed whole.
REMOVALS = [
    (ExecutorBase, "get_typed_and_scheduled_translation_unit",
     lambda ex: loopy_internals.describe_launch(ex, "doubled"),
     "get_typed_and_scheduled_translation_unit"),
    ("loopy.schedule.CallKernel", None,
     lambda ex: loopy_internals.describe_launch(ex, "doubled"), "loopy.schedule.CallKernel"),
    ("loopy.schedule.get_insn_ids_for_block_at", None,
     lambda ex: loopy_internals.describe_launch(ex, "doubled"),
     "loopy.schedule.get_insn_ids_for_block_at"),
    ("loopy.schedule.tools.get_subkernel_arg_info", None,
     lambda ex: loopy_internals.describe_launch(ex, "doubled"),
     "loopy.schedule.tools.get_subkernel_arg_info"),
    (lp.LoopKernel, "get_grid_sizes_for_insn_ids_as_exprs",
     lambda ex: loopy_internals.describe_launch(ex, "doubled"),
     "get_grid_sizes_for_insn_ids_as_exprs"),
    ("loopy.check._is_racing_iname_tag", None,
     lambda ex: loopy_internals.is_racing_iname_tag(_private_temporary(), LocalInameTag(0)),
     "loopy.check._is_racing_iname_tag"),
    ("instance", "has_runtime_typed_args", loopy_internals.runs_plainly,
     "executor.has_runtime_typed_args"),
    ("instance", "packing_controller", loopy_internals.runs_plainly,
     "executor.packing_controller"),
]


@pytest.mark.parametrize("owner, attribute, call, named", REMOVALS,
                         ids=[removal[3] for removal in REMOVALS])
def test_a_missing_internal_names_itself_and_the_loopy_version(monkeypatch, context, owner,
                                                                attribute, call, named):
    executor = _executor(context)
    if owner == "instance":
        delattr(executor, attribute)
    elif attribute is None:
        monkeypatch.delattr(owner)
    else:
        monkeypatch.delattr(owner, attribute)
    with pytest.raises(LoopyInternalsChanged) as caught:
        call(executor)
    message = str(caught.value)
    assert f"installed loopy {LOOPY} " in message and named in message
    assert "as loopy 2025.2 did" in message and "loopy_internals.py" in message
    if owner != "instance":  # the self-check finds names before they are used
        problem = loopy_internals.self_check()
        assert problem is not None and named in problem and f"loopy {LOOPY} " in problem


def test_a_changed_signature_is_reported_not_called(monkeypatch, context):
    monkeypatch.setattr("loopy.schedule.tools.get_subkernel_arg_info",
                        lambda kernel: pytest.fail("called with the wrong arguments"))
    with pytest.raises(LoopyInternalsChanged, match="get_subkernel_arg_info") as caught:
        loopy_internals.describe_launch(_executor(context), "doubled")
    assert f"loopy {LOOPY} " in str(caught.value)


@pytest.fixture
def empty_kernel_cache(tmp_path, monkeypatch, no_shipped_kernels):
    monkeypatch.setenv("FMMLOOPY_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv(kernel_cache.KERNEL_CACHE_ENV, raising=False)
    monkeypatch.setattr(compiled, "_CACHE", {})
    monkeypatch.setattr(cache_files, "_warned_messages", set())
    return tmp_path


def _run_p2p(queue, p2p) -> np.ndarray:
    problem = check_problems()[0]
    inputs = {name: cla.to_device(queue, value) if isinstance(value, np.ndarray) else value
              for name, value in problem.arguments(get_operator("p2p"), {}).items()
              if name in p2p.argument_names}
    return p2p(queue, **inputs)["result"].get()


@pytest.mark.parametrize("how", ["self-check", "at use"])
def test_the_kernel_cache_falls_back_to_loopys_executor(empty_kernel_cache, monkeypatch, device,
                                                        queue, how):
    """Internals gone: one warning naming them, the kernel runs through loopy's executor (the
    public path) and gives what the data path gives, and nothing is stored."""
    problem = _moved("test") + " (simulated)"
    with monkeypatch.context() as patch:
        if how == "self-check":
            patch.setattr(loopy_internals, "self_check", lambda: problem)
        else:
            def moved(executor):
                raise LoopyInternalsChanged(problem)
            patch.setattr(loopy_internals, "runs_plainly", moved)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fallback = compiled_operator("p2p", device)
            public = _run_p2p(queue, fallback)
            assert compiled_operator("p2m", device, n_surface=26).generated is None
        warned = [str(w.message) for w in caught if issubclass(w.category, KernelCacheWarning)]
        assert len(warned) == 1 and problem in warned[0], warned
        assert "run through loopy's executor and are not stored" in warned[0]
        assert fallback.generated is None
        assert isinstance(fallback._executors[queue.context.int_ptr], ExecutorBase)
        assert not list(empty_kernel_cache.glob("kernels/*.json"))

    monkeypatch.setattr(compiled, "_CACHE", {})
    data = compiled_operator("p2p", device)
    np.testing.assert_allclose(_run_p2p(queue, data), public, rtol=1e-13, atol=0)
    assert data.generated is not None
    assert len(list(empty_kernel_cache.glob("kernels/*.json"))) == 1
