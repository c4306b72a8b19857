"""fmmloopy.base.opencl_runtimes: Intel's CPU runtime from PyPI found with nothing set by the
user (a vendors folder that keeps what the user's ``OCL_ICD_VENDORS`` showed, and hid), and
PoCL's cache cleaned of what a process that died while compiling left in it."""

import importlib.metadata
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pyopencl as cl
import pytest

from fmmloopy.base import opencl_runtimes
from fmmloopy.base.opencl_runtimes import remove_entries_of_dead_builds, vendors_folder


def test_the_vendors_folder_keeps_the_users_icds_and_adds_the_library(tmp_path):
    users = tmp_path / "users"
    users.mkdir()
    (users / "a.icd").write_text("/opt/a/libA.so\n")
    (users / "notes.txt").write_text("not an icd")
    library = tmp_path / "lib" / "libintelocl.so"
    folder = vendors_folder(str(users), [library], tmp_path / "root")
    assert {p.name: p.read_text() for p in folder.iterdir()} == {
        "a.icd": "/opt/a/libA.so\n", "fmmloopy-libintelocl.icd": f"{library}\n"}
    assert vendors_folder(str(users), [library], tmp_path / "root") == folder  # written once
    empty = tmp_path / "empty"
    empty.mkdir()  # a system OpenCL hidden: only the library
    hidden = vendors_folder(str(empty), [library], tmp_path / "root")
    assert [p.name for p in hidden.iterdir()] == ["fmmloopy-libintelocl.icd"]
    named = vendors_folder(str(users / "a.icd"), [], tmp_path / "root")
    assert [p.read_text() for p in named.iterdir()] == ["/opt/a/libA.so\n"]
    same = vendors_folder(str(users), [Path("/opt/a/libA.so")], tmp_path / "root")
    assert [p.name for p in same.iterdir()] == ["a.icd"]  # named already: not twice


def _installed(distribution):
    try:
        importlib.metadata.version(distribution)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


@pytest.mark.skipif(not _installed("intel-opencl-rt"),
                    reason="Intel's CPU runtime is a dependency on Linux x86-64 only")
def test_intels_runtime_from_pip_is_listed_with_a_system_opencl_hidden(tmp_path):
    """With OCL_ICD_VENDORS at an empty folder, what pip installed is all there is: PoCL from
    PyOpenCL's wheel and Intel's runtime, found by fmmloopy, class cpu-intel."""
    empty = tmp_path / "empty"
    empty.mkdir()
    environment = dict(os.environ, OCL_ICD_VENDORS=str(empty), FMMLOOPY_CACHE_DIR=str(tmp_path))
    code = textwrap.dedent("""
        import fmmloopy, pyopencl as cl
        from fmmloopy.base.devices import device_classes
        for platform in cl.get_platforms():
            for device in platform.get_devices():
                print(platform.name, "|", device_classes(device)[0])
    """)
    listed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=environment, timeout=300, check=True).stdout
    assert "Intel(R) OpenCL | cpu-intel" in listed
    assert opencl_runtimes.intel_cpu_library() is not None
    environment[opencl_runtimes.INTEL_OPENCL_ENV] = "off"
    listed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=environment, timeout=300, check=True).stdout
    assert "Intel(R) OpenCL" not in listed


def test_entries_written_after_a_dead_process_started_are_removed(tmp_path):
    cache = tmp_path / "pocl"
    old = cache / "AB" / "OLDPROGRAM"
    (old / "kernel").mkdir(parents=True)
    (old / "program.bc").write_text("built before")
    os.utime(old / "program.bc", (1e9, 1e9))
    os.utime(old / "kernel", (1e9, 1e9))
    os.utime(old, (1e9, 1e9))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    markers = cache / ".fmmloopy-users"
    markers.mkdir()
    marker = markers / f"{opencl_runtimes.host_name()}-{dead.stdout.strip()}"
    marker.touch()
    alive = markers / f"{opencl_runtimes.host_name()}-{os.getpid()}"
    alive.touch()
    half = cache / "CD" / "HALFBUILT"
    half.mkdir(parents=True)
    (half / "program.bc").write_text("the compiler died after this")
    with pytest.warns(RuntimeWarning, match="removed 1 PoCL cache entries written by a "
                                            "process that died while compiling"):
        assert remove_entries_of_dead_builds(cache) == [half]
    assert old.is_dir() and not half.exists()
    assert not marker.exists() and alive.exists()  # a living process's marker stays
    assert remove_entries_of_dead_builds(cache) == []


def test_a_process_that_dies_while_compiling_does_not_poison_the_next(tmp_path):
    """A process aborts after PoCL compiled into fmmloopy's PoCL cache (as LLVM's abort would
    take it down mid-build); the next process that imports fmmloopy drops what it wrote, and
    builds and runs the same kernel."""
    environment = {name: value for name, value in os.environ.items()
                   if name != opencl_runtimes.POCL_CACHE_ENV}
    environment["FMMLOOPY_CACHE_DIR"] = str(tmp_path)
    code = textwrap.dedent("""
        import os, sys, numpy as np, pyopencl as cl
        import fmmloopy
        device = [d for p in cl.get_platforms() if "Portable" in p.name
                  for d in p.get_devices()][0]
        context = cl.Context([device]); queue = cl.CommandQueue(context)
        x = cl.Buffer(context, cl.mem_flags.READ_WRITE, 64 * 8)
        program = cl.Program(context, "__kernel void k(__global double *x)"
                             "{ x[get_global_id(0)] = sqrt(2.0); }").build()
        program.k(queue, (64,), None, x); queue.finish()
        out = np.empty(64); cl.enqueue_copy(queue, out, x)
        assert abs(out[0] - 2 ** 0.5) < 1e-15
        if sys.argv[1] == "die":
            os.abort()
        print(os.environ["POCL_CACHE_DIR"])
    """)
    if not any("Portable" in platform.name for platform in cl.get_platforms()):
        pytest.skip("no PoCL platform")
    died = subprocess.run([sys.executable, "-c", code, "die"], env=environment,
                          capture_output=True, text=True, timeout=300)
    assert died.returncode < 0
    pocl = tmp_path / "pocl"
    written = [entry for entry in pocl.glob("*/*") if not entry.parent.name.startswith(".")]
    assert written and list((pocl / ".fmmloopy-users").iterdir())
    clean = subprocess.run([sys.executable, "-c", code, "live"], env=environment,
                           capture_output=True, text=True, timeout=300)
    assert clean.returncode == 0, clean.stderr[-2000:]
    assert clean.stdout.strip() == str(pocl)
    assert "removed" in clean.stderr and "died while compiling" in clean.stderr
    assert list((pocl / ".fmmloopy-users").iterdir()) == []
