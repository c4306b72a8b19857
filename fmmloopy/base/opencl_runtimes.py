"""What fmmloopy sets up before the OpenCL loader lists its platforms: CPU runtimes that pip
installed where the loader does not look, and PoCL's kernel cache where a build that died cannot
spoil a later run. :func:`prepare_opencl` does both, once per process, when fmmloopy is imported.

**Intel's CPU runtime from PyPI** (``intel-opencl-rt``, a dependency of fmmloopy on Linux x86-64)
installs ``lib/libintelocl.so`` into the environment and an ``etc/OpenCL/vendors/intel-cpu.icd``
naming a placeholder path meant for a conda post-link step; the OpenCL loader of PyOpenCL's
wheels (ocl-icd) reads ``$OCL_ICD_VENDORS`` (else ``/etc/OpenCL/vendors``) and its own folder,
and never finds it. :func:`prepare_opencl` writes a vendors folder in fmmloopy's cache holding
the ``.icd`` files the loader would have read plus one naming the installed library (its
``RUNPATH`` is ``$ORIGIN``: the maths libraries of ``intel-cmplr-lib-rt`` beside it are found
with no library path set) and points ``$OCL_ICD_VENDORS`` there. A user's own
``$OCL_ICD_VENDORS`` is kept (its ``.icd`` files are copied, so what it hides stays hidden).
``FMMLOOPY_INTEL_OPENCL=off`` leaves the runtime out.

**PoCL's kernel cache** is a folder per program that PoCL fills as it compiles. A process that
died inside the compiler (LLVM aborts on code it cannot select) leaves a half-written entry that
fails every later run (``INVALID_KERNEL_NAME``) until it is removed by hand. Unless
``$POCL_CACHE_DIR`` is set, fmmloopy keeps PoCL's cache in its own cache folder and writes a
marker there for each process that uses it (host and pid in its name), removed when the process
exits; a marker left by a process of this host that no longer exists means it died, and every
cache entry written since the marker was made is removed before PoCL starts.
"""

from __future__ import annotations

import atexit
import hashlib
import importlib.metadata
import logging
import os
import shutil
import time
import warnings
from pathlib import Path

from fmmloopy.base.cache_location import cache_dir, host_name, process_exists

__all__ = ["ICD_VENDORS_ENV", "INTEL_OPENCL_ENV", "POCL_CACHE_ENV", "intel_cpu_library",
           "prepare_opencl", "remove_entries_of_dead_builds", "vendors_folder"]

_LOG = logging.getLogger(__name__)

#: The OpenCL loader's folder (or file) of ``.icd`` files.
ICD_VENDORS_ENV = "OCL_ICD_VENDORS"
#: ``off`` keeps Intel's CPU runtime from PyPI out of the OpenCL platforms fmmloopy sees.
INTEL_OPENCL_ENV = "FMMLOOPY_INTEL_OPENCL"
#: PoCL's kernel cache folder.
POCL_CACHE_ENV = "POCL_CACHE_DIR"
#: Where the loader looks without ``$OCL_ICD_VENDORS`` (ocl-icd and Khronos' loader alike).
SYSTEM_VENDORS = Path("/etc/OpenCL/vendors")
#: The distribution of Intel's CPU runtime on PyPI, and its library.
INTEL_DISTRIBUTION = "intel-opencl-rt"
INTEL_LIBRARY = "libintelocl.so"

#: Sub-folders of fmmloopy's cache: the vendors folders, PoCL's kernel cache.
_VENDORS_FOLDER = "opencl-vendors"
_POCL_FOLDER = "pocl"
#: Markers of the processes using the PoCL cache, in a folder of it.
_MARKERS = ".fmmloopy-users"

#: The vendors folder fmmloopy set ``$OCL_ICD_VENDORS`` to (a process it starts inherits both).
_OURS_ENV = "FMMLOOPY_OCL_ICD_VENDORS"

_prepared = False


def intel_cpu_library() -> Path | None:
    """The ``libintelocl.so`` of Intel's CPU runtime installed with pip, or None."""
    if os.environ.get(INTEL_OPENCL_ENV, "").strip().lower() in ("off", "0", "no"):
        return None
    try:
        files = importlib.metadata.files(INTEL_DISTRIBUTION) or ()
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in files:
        if file.name == INTEL_LIBRARY:
            path = Path(file.locate()).resolve()
            if path.is_file():
                return path
    return None


def _icd_files(setting: str | None) -> dict[str, str]:
    """The ``.icd`` files (name: text) that the loader reads for ``$OCL_ICD_VENDORS`` =
    ``setting`` (None: unset): a folder's ``*.icd``, one ``.icd`` file, or a library name."""
    if not setting:
        folder = SYSTEM_VENDORS
    else:
        folder = Path(setting)
        if not folder.is_dir():
            if folder.suffix == ".icd" and folder.is_file():
                return {folder.name: folder.read_text()}
            return {"user-library.icd": setting + "\n"}
    if not folder.is_dir():
        return {}
    return {path.name: path.read_text() for path in sorted(folder.glob("*.icd"))
            if path.is_file()}


def vendors_folder(setting: str | None, extra_libraries: list[Path],
                   root: Path | None = None) -> Path:
    """A folder of ``.icd`` files: those the loader reads for ``$OCL_ICD_VENDORS`` = ``setting``
    and one naming each of ``extra_libraries`` (not named already); under ``root`` (default:
    fmmloopy's cache), named by its contents' digest and written once (a temporary folder
    renamed into place, so concurrent processes agree)."""
    files = _icd_files(setting)
    named = {text.strip() for text in files.values()}
    for library in extra_libraries:
        if str(library) not in named:
            files[f"fmmloopy-{library.stem}.icd"] = f"{library}\n"
    digest = hashlib.sha256(repr(sorted(files.items())).encode()).hexdigest()[:16]
    root = root if root is not None else cache_dir() / _VENDORS_FOLDER
    folder = root / digest
    if not folder.is_dir():
        root.mkdir(parents=True, exist_ok=True)
        temporary = root / f".{digest}.{host_name()}-{os.getpid()}"
        shutil.rmtree(temporary, ignore_errors=True)
        temporary.mkdir()
        for name, text in files.items():
            (temporary / name).write_text(text)
        try:
            temporary.rename(folder)
        except OSError:  # another process made it first
            shutil.rmtree(temporary, ignore_errors=True)
    return folder


def _register_pip_runtimes() -> None:
    library = intel_cpu_library()
    if library is None:
        return
    setting = os.environ.get(ICD_VENDORS_ENV)
    if setting and setting == os.environ.get(_OURS_ENV):
        return  # set by the fmmloopy process that started this one
    folder = str(vendors_folder(setting, [library]))
    os.environ[ICD_VENDORS_ENV] = folder
    os.environ[_OURS_ENV] = folder


def _marker_name() -> str:
    return f"{host_name()}-{os.getpid()}"


def remove_entries_of_dead_builds(pocl_cache: Path) -> list[Path]:
    """Remove from ``pocl_cache`` every entry written since a process of this host that no
    longer exists started using it (its marker left behind), and those markers; the removed
    entries."""
    markers = pocl_cache / _MARKERS
    if not markers.is_dir():
        return []
    prefix = host_name() + "-"
    dead = []
    for marker in markers.iterdir():
        pid = marker.name[len(prefix):]
        if marker.name.startswith(prefix) and pid.isdigit() and not process_exists(int(pid)):
            dead.append(marker)
    if not dead:
        return []
    since = min(marker.stat().st_mtime for marker in dead)
    removed = []
    for entry in pocl_cache.glob("*/*"):  # <two letters>/<program digest>
        if (entry.is_dir() and not entry.parent.name.startswith(".")
                and _newest_time(entry) >= since):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    for marker in dead:
        marker.unlink(missing_ok=True)
    if removed:
        warnings.warn(f"fmmloopy: removed {len(removed)} PoCL cache entries written by a "
                      f"process that died while compiling ({', '.join(m.name for m in dead)})",
                      RuntimeWarning, stacklevel=2)
    return removed


def _newest_time(folder: Path) -> float:
    times = [folder.stat().st_mtime]
    times += [path.stat().st_mtime for path in folder.rglob("*")]
    return max(times)


def _keep_pocl_cache() -> None:
    pocl_cache = cache_dir() / _POCL_FOLDER
    setting = os.environ.get(POCL_CACHE_ENV)
    if setting and Path(setting) != pocl_cache:
        return  # the user's own (a process of fmmloopy's inherits fmmloopy's: marked too)
    try:
        (pocl_cache / _MARKERS).mkdir(parents=True, exist_ok=True)
        remove_entries_of_dead_builds(pocl_cache)
        marker = pocl_cache / _MARKERS / _marker_name()
        marker.touch()
        os.utime(marker, (time.time(), time.time()))
    except OSError as exc:  # a read-only home: PoCL keeps its own default
        _LOG.info("PoCL's cache left where PoCL puts it: %s", exc)
        return
    os.environ[POCL_CACHE_ENV] = str(pocl_cache)
    atexit.register(marker.unlink, missing_ok=True)


def prepare_opencl() -> None:
    """Register the CPU runtimes pip installed, keep PoCL's cache where fmmloopy can check
    it (module docstring) and leave PyOpenCL's warning about a compiler's report of a build
    that succeeded unshown; once per process, before any OpenCL platform is listed (it has no
    effect on a loader that has listed them already)."""
    global _prepared
    if _prepared:
        return
    _prepared = True
    _register_pip_runtimes()
    _keep_pocl_cache()
    # Intel's compiler reports every build ("Compilation started ... Kernel was 8-way
    # vectorized"); PyOpenCL turns any such report into a warning. A failed build still raises;
    # PYOPENCL_COMPILER_OUTPUT=1 prints the reports instead.
    warnings.filterwarnings("ignore", message="Non-empty compiler output encountered",
                            category=UserWarning)
