"""The kernel cache's data format: a GeneratedKernel goes to JSON and back unchanged, and
anything malformed is refused with a ValueError naming the field, never half read."""

import copy
import json

import pytest

from fmmloopy.execution.generated_kernel import GeneratedKernel, KernelArgument


def _kernel() -> GeneratedKernel:
    return GeneratedKernel(
        device_code="__kernel void doubled(...) {}",
        build_options=("-cl-fast-relaxed-math",),
        kernel_name="doubled",
        arguments=(KernelArgument("a", True, "<f8", ("n",)),
                   KernelArgument("out", True, "<f8", ("n",)),
                   KernelArgument("n", False, "<i4")),
        groups=("(n + 3) // 4",), group_size=("4",),
        argument_names=("a", "out", "n"), written_names=("out",),
        reshaped={"a": (("n",), ("n // 4", "4"))})


def test_round_trip_through_json():
    kernel = _kernel()
    assert GeneratedKernel.from_data(json.loads(json.dumps(kernel.as_data()))) == kernel


def _broken(path, value):
    data = json.loads(json.dumps(_kernel().as_data()))
    target = data
    for step in path[:-1]:
        target = target[step]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return data


@pytest.mark.parametrize("data, named", [
    ([], "not an object"),
    (_broken(("groups",), KeyError), "fields"),
    (_broken(("device_code",), 3), "device_code"),
    (_broken(("build_options",), "-O3"), "build_options"),
    (_broken(("arguments", 0, "is_array"), 1), "argument"),
    (_broken(("arguments", 2, "dtype"), None), "argument"),
    (_broken(("arguments",), {}), "argument"),
    (_broken(("arguments", 0, "shape"), [3]), "shape"),
    (_broken(("group_size",), [4]), "group_size"),
    (_broken(("reshaped", "a"), [["n"]]), "reshaped"),
    (_broken(("written_names",), None), "written_names"),
])
def test_malformed_data_is_refused(data, named):
    original = copy.deepcopy(data)
    with pytest.raises(ValueError, match=named):
        GeneratedKernel.from_data(data)
    assert data == original  # read, not repaired in place
