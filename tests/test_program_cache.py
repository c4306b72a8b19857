"""fmmloopy.execution.program_cache: a source is built once per process; once it is built
from source a second time, later processes load the device's binary, which computes what the
source does; a file that is damaged, foreign,
unsafe or refused by the driver is deleted and the source built; ``FMMLOOPY_KERNEL_CACHE``
switches it off (``off``) or keeps it alone (``programs``)."""

import json
import os
import uuid

import numpy as np
import pyopencl as cl
import pyopencl.array as cla
import pytest

from fmmloopy.execution import kernel_cache, program_cache
from fmmloopy.execution.cache_files import CACHE_ENV
from fmmloopy.execution.cache_listing import cache_entries
from fmmloopy.execution.kernel_cache import KERNEL_CACHE_ENV, KernelCacheWarning


def _source() -> str:
    """A kernel no other test builds (a fresh comment), so its first build is from source."""
    return (f"// {uuid.uuid4().hex}\n"
            "__kernel void axpy(__global double *y, __global const double *x, double a)\n"
            "{ int i = get_global_id(0); y[i] = fma(a, x[i], y[i]); }\n")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A private cache directory of this test's own, the programs of this process forgotten."""
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(KERNEL_CACHE_ENV, raising=False)
    program_cache.forget_programs()
    yield tmp_path / "cache" / "programs"
    program_cache.forget_programs()


def _origin(context, source) -> tuple[str, cl.Program]:
    before = dict(program_cache.ORIGINS)
    program = program_cache.built_program(context, source, ("-cl-mad-enable",))
    changed = [name for name, count in program_cache.ORIGINS.items()
               if count != before.get(name, 0)]
    assert len(changed) == 1
    return changed[0], program


def _built_twice(context, source, options=("-cl-mad-enable",)) -> None:
    """``source`` built from source in two processes (as far as this cache can tell): the first
    leaves its mark, the second stores the binary."""
    for _ in range(2):
        program_cache.built_program(context, source, options)
        program_cache.forget_programs()


def _runs_axpy(queue, program) -> None:
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal(100), rng.standard_normal(100)
    y_device = cla.to_device(queue, y)
    cl.Kernel(program, "axpy")(queue, (100,), None, y_device.data, cla.to_device(queue, x).data,
                              np.float64(2.5))
    # one fused multiply-add against numpy's product and sum: they differ by at most the
    # roundings of the product and of the two sums, half an ulp each
    expected = y + 2.5 * x
    assert (np.abs(y_device.get() - expected)
            <= 2.3e-16 * (np.abs(2.5 * x) + np.abs(expected))).all()


def test_a_source_built_in_two_processes_is_then_loaded_as_a_binary(cache, queue):
    source = _source()
    origin, built = _origin(queue.context, source)
    (mark,) = cache.iterdir()  # the first build leaves a mark, no binary
    assert origin == "source" and mark.suffix == program_cache.SEEN_SUFFIX
    assert mark.stat().st_size == 0
    assert [entry.status for entry in cache_entries() if entry.kind == "program"] == [
        "built once"]
    assert _origin(queue.context, source) == ("memory", built)
    program_cache.forget_programs()  # as a new process finds it
    origin, again = _origin(queue.context, source)
    (path,) = cache.iterdir()  # the second build stores the binary in place of the mark
    assert origin == "source" and path.suffix == program_cache.SUFFIX
    program_cache.forget_programs()
    origin, loaded = _origin(queue.context, source)
    assert origin == "binary" and loaded is not again
    _runs_axpy(queue, loaded)
    assert [entry.status for entry in cache_entries() if entry.kind == "program"] == ["ok"]


def test_other_options_are_another_program(cache, queue):
    source = _source()
    _built_twice(queue.context, source, ())
    _built_twice(queue.context, source, ("-cl-mad-enable",))
    assert sorted(path.suffix for path in cache.iterdir()) == [program_cache.SUFFIX] * 2


@pytest.mark.parametrize("damage", ["flip a byte of the binary", "cut the binary",
                                    "another key in the header", "no header",
                                    "a binary the driver refuses"])
def test_a_damaged_file_is_deleted_and_the_source_built(cache, queue, damage):
    source = _source()
    _built_twice(queue.context, source)
    (path,) = cache.iterdir()
    header, _, binary = path.read_bytes().partition(b"\n")
    if damage == "flip a byte of the binary":
        stored = header + b"\n" + binary[:100] + bytes([binary[100] ^ 1]) + binary[101:]
    elif damage == "cut the binary":
        stored = header + b"\n" + binary[: len(binary) // 2]
    elif damage == "another key in the header":
        fields = json.loads(header)
        fields["key"] = "0" * 64
        stored = json.dumps(fields).encode() + b"\n" + binary
    elif damage == "no header":
        stored = binary
    else:  # a consistent header over bytes that are no program
        junk = b"not a program binary" * 10
        stored = json.dumps(program_cache._header(json.loads(header)["key"], junk),
                            sort_keys=True).encode() + b"\n" + junk
    path.write_bytes(stored)
    assert [entry.status for entry in cache_entries() if entry.kind == "program"] == [
        "ok" if damage == "a binary the driver refuses" else "corrupt"]
    program_cache.forget_programs()
    with pytest.warns(KernelCacheWarning, match="rejected"):
        origin, program = _origin(queue.context, source)
    assert origin == "source"
    _runs_axpy(queue, program)
    assert path.exists()  # written again from the new build (at once: it was built before)
    program_cache.forget_programs()
    assert _origin(queue.context, source)[0] == "binary"


def test_a_file_others_may_write_is_not_read(cache, queue):
    source = _source()
    _built_twice(queue.context, source)
    (path,) = cache.iterdir()
    os.chmod(path, 0o666)
    program_cache.forget_programs()
    with pytest.warns(KernelCacheWarning, match="writable by other users"):
        assert _origin(queue.context, source)[0] == "source"


def test_off_stores_nothing_and_programs_keeps_programs_only(cache, queue, monkeypatch):
    monkeypatch.setenv(KERNEL_CACHE_ENV, "off")
    assert not kernel_cache.programs_enabled()
    _built_twice(queue.context, _source())
    assert not cache.exists()
    monkeypatch.setenv(KERNEL_CACHE_ENV, kernel_cache.PROGRAMS_ONLY)
    assert kernel_cache.programs_enabled() and not kernel_cache.enabled()
    _built_twice(queue.context, _source())
    assert [path.suffix for path in cache.iterdir()] == [program_cache.SUFFIX]


def test_cache_clear_removes_programs_and_marks(cache, queue):
    from fmmloopy.execution.cache_listing import clear_cache
    _built_twice(queue.context, _source())
    program_cache.built_program(queue.context, _source())
    assert sorted(path.suffix for path in cache.iterdir()) == [".bin", ".seen"]
    files, size = clear_cache()
    assert files == 2 and size > 0 and not list(cache.iterdir())
