"""A transformed kernel's generated code and launch as plain data: what the kernel cache stores.

:class:`GeneratedKernel` holds the OpenCL source, its build options, the device kernel's name, its
arguments in order (:class:`KernelArgument`), the launch grid, the outputs and the arrays a recipe
reshaped, all as strings, booleans and tuples of them, so that it goes to JSON and back
(:meth:`GeneratedKernel.as_data`, :meth:`GeneratedKernel.from_data`, which checks every field's
type). :mod:`fmmloopy.execution.generation` fills it from loopy, :mod:`fmmloopy.execution.launcher`
runs it, :mod:`fmmloopy.execution.kernel_cache` stores it; none of this module needs loopy.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class KernelArgument:
    """One argument of the device kernel, in the order the OpenCL kernel takes them."""

    name: str
    is_array: bool
    dtype: str  # numpy dtype string, e.g. "<f8"
    shape: tuple[str, ...] = ()  # arrays: the extents, as expressions in the scalars


@dataclass(frozen=True)
class GeneratedKernel:
    """What running one transformed kernel needs, without loopy, as plain data."""

    device_code: str
    build_options: tuple[str, ...]
    kernel_name: str
    #: The device kernel's arguments in order (loopy passes only those the kernel uses).
    arguments: tuple[KernelArgument, ...]
    #: Work-group counts and sizes per axis (global size = their product), as expressions.
    groups: tuple[str, ...]
    group_size: tuple[str, ...]
    #: Names of the translation unit's arguments (math level), in order.
    argument_names: tuple[str, ...]
    written_names: tuple[str, ...]
    #: Arrays whose shape the recipe split: name -> (math-level shape, kernel shape).
    reshaped: dict[str, tuple[tuple[str, ...], tuple[str, ...]]]

    def as_data(self) -> dict[str, Any]:
        """Plain JSON-able data."""
        return asdict(self)

    @classmethod
    def from_data(cls, data: Any) -> GeneratedKernel:
        """The kernel of :meth:`as_data`'s output; ValueError for anything malformed."""
        def strings(value, what: str) -> tuple[str, ...]:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"{what} is not a list of strings")
            return tuple(value)

        if not isinstance(data, dict):
            raise ValueError("the kernel is not an object")
        expected = {"device_code", "build_options", "kernel_name", "arguments", "groups",
                    "group_size", "argument_names", "written_names", "reshaped"}
        if set(data) != expected:
            raise ValueError(f"the kernel's fields are {sorted(data)}")
        for name in ("device_code", "kernel_name"):
            if not isinstance(data[name], str):
                raise ValueError(f"{name} is not a string")
        arguments = []
        for entry in data["arguments"] if isinstance(data["arguments"], list) else [None]:
            if (not isinstance(entry, dict) or set(entry) != {"name", "is_array", "dtype", "shape"}
                    or not isinstance(entry["name"], str) or not isinstance(entry["dtype"], str)
                    or not isinstance(entry["is_array"], bool)):
                raise ValueError("an argument is malformed")
            arguments.append(KernelArgument(entry["name"], entry["is_array"], entry["dtype"],
                                            strings(entry["shape"], "a shape")))
        reshaped = data["reshaped"]
        if not isinstance(reshaped, dict) or not all(
                isinstance(v, list) and len(v) == 2 for v in reshaped.values()):
            raise ValueError("reshaped is malformed")
        return cls(data["device_code"], strings(data["build_options"], "build_options"),
                   data["kernel_name"], tuple(arguments), strings(data["groups"], "groups"),
                   strings(data["group_size"], "group_size"),
                   strings(data["argument_names"], "argument_names"),
                   strings(data["written_names"], "written_names"),
                   {name: (strings(v[0], "a shape"), strings(v[1], "a shape"))
                    for name, v in reshaped.items()})
