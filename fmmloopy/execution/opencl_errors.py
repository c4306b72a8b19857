"""OpenCL errors in words: what a status such as ``OUT_OF_RESOURCES`` means for a recipe.

:func:`explain_opencl_error` turns an OpenCL status (out of resources, work-group too large,
build failure) into a sentence, for the errors that name the operator and recipe.
"""

from __future__ import annotations

import re

import pyopencl as cl

from fmmloopy.execution.resources import gigabytes


def _hints(device: cl.Device) -> dict[str, str]:
    return {
        "OUT_OF_RESOURCES": "the device ran out of resources for this kernel (registers, local "
                            "or private memory of a work-group, or memory); try a recipe with "
                            "smaller work-groups or less local memory",
        "MEM_OBJECT_ALLOCATION_FAILURE": "the device could not allocate memory for the "
                                         "kernel's buffers; use fewer points or a lower order",
        "OUT_OF_HOST_MEMORY": "the OpenCL runtime ran out of host memory",
        "INVALID_WORK_GROUP_SIZE": "the recipe's work-group size is not allowed on this device "
                                   f"(at most {device.max_work_group_size} work-items, "
                                   f"{list(device.max_work_item_sizes)} per axis)",
        "INVALID_BUFFER_SIZE": "a buffer is larger than the device allocates at once "
                               f"({gigabytes(device.max_mem_alloc_size)})",
        "BUILD_PROGRAM_FAILURE": "the OpenCL compiler rejected the code generated for the "
                                 "recipe (build log below)",
        "INVALID_BUILD_OPTIONS": "the recipe added build options this OpenCL compiler does not "
                                 "accept",
    }


#: What a build log says where the compiler refused its options rather than the code: NVIDIA's
#: OpenCL reports an unknown option as BUILD_PROGRAM_FAILURE ("Don't understand command line
#: argument"), where PoCL returns INVALID_BUILD_OPTIONS.
_REFUSED_OPTIONS = re.compile(r"command[ -]line (argument|option)|unknown (argument|option)|"
                              r"unrecognized (command[ -]line )?option|invalid build option",
                              re.IGNORECASE)


def explain_opencl_error(exc: BaseException, device: cl.Device) -> str | None:
    """A sentence for an OpenCL error's status, or None if ``exc`` has no known status."""
    code = getattr(exc, "code", None)
    if not isinstance(exc, cl.Error) or code is None:
        return None
    names = [name for name in dir(cl.status_code)
             if not name.startswith("_") and getattr(cl.status_code, name) == code]
    hints = _hints(device)
    if "BUILD_PROGRAM_FAILURE" in names and _REFUSED_OPTIONS.search(str(exc)):
        return f"{hints['INVALID_BUILD_OPTIONS']} (build log below)"
    return next((hints[name] for name in names if name in hints), None)
