"""fmmloopy.base.compiler_probe and the vector width it decides: the probe programs cover what
the shipped kernels compile; a compiler that aborts the process (planted: the probe's child dies
on a chosen program, as LLVM's ``Cannot select`` kills PoCL 3.0 on a Zen 4) makes fmmloopy take
narrower vectors or pass the device over, saying so in one line, and the next run is clean; the
target CPU PoCL names bounds the width; the default choice ranks the CPU runtimes."""

import json
import lzma
import os
import re
import subprocess
import sys
from types import SimpleNamespace

import pyopencl as cl
import pytest

from fmmloopy.base import compiler_probe, devices
from fmmloopy.base.compiler_probe import PROBE_ABORT_ENV, registered_programs
from fmmloopy.base.devices import VECTOR_DOUBLES_ENV
from fmmloopy.execution.shipped_kernels import SHIPPED_PATH

#: What loopy's generated code calls that no compiler could fail on differently by width.
_LOOPY_NAMES = {"LOOPY_CALL_WITH_INTEGER_TYPES", "LOOPY_DEFINE_FLOOR_DIV_POS_B", "MACRO_NAME",
                "SUFFIX", "__attribute__", "defined", "for", "if", "get_group_id",
                "get_local_id", "gid", "lid", "reqd_work_group_size"}


def _used(source: str) -> tuple[set[str], set[str]]:
    """The vector types and the functions a source calls."""
    types = set(re.findall(r"\b((?:double|float)(?:2|4|8|16))\b", source))
    calls = set(re.findall(r"\b([A-Za-z_][A-Za-z_0-9]*)\s*\(", source))
    return types, calls


def test_the_probe_programs_cover_the_shipped_kernels():
    """Every vector type and every function the shipped kernels of a vector width compile is
    in a probe program needed at that width: a recipe that starts using another is probed."""
    shipped = json.loads(lzma.open(SHIPPED_PATH).read())["entries"]
    programs = registered_programs().values()
    checked = 0
    for entry in shipped:
        lanes = entry["key"]["device"].get("vector_doubles_for_recipes")
        if lanes is None:
            continue  # the set-up's kernels: no vectors, the scalar program's maths
        probed_types, probed_calls = set(), set()
        for program in programs:
            if program.needed_at(int(lanes)):
                types, calls = _used(program.source)
                probed_types |= types
                probed_calls |= calls
        kernel = entry["kernel"]
        types, calls = _used(kernel["device_code"])
        calls -= _LOOPY_NAMES | {kernel["kernel_name"]} | {
            name for name in calls if name.startswith("loopy_")}
        assert types <= probed_types, (entry["key"]["operator"], lanes, types - probed_types)
        assert calls <= probed_calls, (entry["key"]["operator"], lanes, calls - probed_calls)
        assert set(kernel["build_options"]) <= {option for program in programs
                                                for option in program.options}
        checked += 1
    assert checked > 100


_RUN = """
import json, warnings
import numpy as np
import fmmloopy
from fmmloopy.base.devices import choose_device, vector_doubles
from fmmloopy.base.compiler_probe import probe_verdict
warnings.simplefilter("always")
device = choose_device({spec!r})
points = np.random.default_rng(1).random((3000, 3))
charges = np.random.default_rng(2).standard_normal(3000)
fmm = fmmloopy.Fmm(points, order=5, device=device)
potential = fmm(charges)
reference = fmmloopy.DirectSum(points, device=device)(charges)
print(json.dumps({{"device": [device.platform.name, device.name],
                  "lanes": vector_doubles(device),
                  "error": float(np.linalg.norm(potential - reference) / np.linalg.norm(reference)),
                  "verdict": probe_verdict(device)}}))
"""


def _run(cache, spec, abort=None):
    environment = {name: value for name, value in os.environ.items()
                   if name not in (PROBE_ABORT_ENV, VECTOR_DOUBLES_ENV)}
    environment["FMMLOOPY_CACHE_DIR"] = str(cache)
    environment.pop("POCL_CACHE_DIR", None)
    if abort:
        environment[PROBE_ABORT_ENV] = abort
    finished = subprocess.run([sys.executable, "-c", _RUN.format(spec=spec)],
                              capture_output=True, text=True, env=environment, timeout=600)
    assert finished.returncode == 0, finished.stderr[-3000:]
    return json.loads(finished.stdout.strip().splitlines()[-1]), finished.stderr


def test_a_compiler_that_aborts_falls_back_in_one_line_and_the_next_run_is_clean(device,
                                                                                   tmp_path,
                                                                                   monkeypatch):
    """The planted abort: the probe's child dies building the program of the device's own
    vector path (as PoCL 3.0's LLVM does on a Zen 4 on the wide path's ``sqrt``). On a device
    taking the wide path fmmloopy takes the narrow one on the same device, says so in one line,
    and the FMM is right; on one taking the narrow path the device is passed over, and asked
    for alone, the error names what happened (the passing over to another device, in one line:
    the fake devices of tests/test_devices.py). The next run, nothing planted, is clean: the
    device's own width, no warning, the same accuracy (nothing poisoned on disk). The runs
    leave ``$FMMLOOPY_VECTOR_DOUBLES`` unset, so the width compared is the probed one."""
    monkeypatch.delenv(VECTOR_DOUBLES_ENV, raising=False)
    wide = max(program.min_doubles for program in registered_programs().values())
    own = devices.vector_doubles(device)
    path = [name for name, program in registered_programs().items()
            if program.needed_at(own) and "float64" in name and name != "scalar"]
    assert len(path) == 1
    planted = f"{path[0]}@{device.name}"
    spec = devices.device_spec(device)  # this very device, not the best of its class
    if own >= wide:
        report, said = _run(tmp_path, spec, abort=planted)
        assert report["device"] == [device.platform.name, device.name]
        assert report["lanes"] < wide and report["error"] < 1e-5
        assert report["verdict"][path[0]].startswith("the compiler aborted the process")
        lines = [line for line in said.splitlines() if "DeviceFallbackWarning" in line]
        assert len(lines) == 1 and f"recipes use {report['lanes']}" in lines[0], said[-2000:]
    else:  # the narrow path fails too: the device is passed over (here the only one asked)
        with pytest.raises(AssertionError, match="the compiler aborted the process"):
            _run(tmp_path, spec, abort=planted)
    again, said_again = _run(tmp_path, spec)
    assert again["lanes"] == own and again["error"] < 1e-5
    assert "DeviceFallbackWarning" not in said_again
    assert all(problem is None for problem in again["verdict"].values())


def test_a_device_whose_compiler_aborts_on_everything_is_passed_over(tmp_path):
    """Abort planted on the scalar program, which every device needs: each device is passed
    over, and with none left the error names each one, what happened and the fix."""
    environment = dict(os.environ, FMMLOOPY_CACHE_DIR=str(tmp_path))
    environment[PROBE_ABORT_ENV] = "scalar"
    environment.pop("FMMLOOPY_DEVICE", None)
    finished = subprocess.run(
        [sys.executable, "-c", "from fmmloopy.base.devices import choose_device\n"
         "choose_device()"], capture_output=True, text=True, env=environment, timeout=600)
    assert finished.returncode == 1
    message = finished.stderr.strip().splitlines()[-1]
    assert message.startswith("RuntimeError: no usable OpenCL device: ")
    assert "the compiler aborted the process" in message and "pocl-opencl-icd" in message


def test_the_verdict_is_kept_on_disk_and_keyed_by_the_programs(device, tmp_path, monkeypatch):
    monkeypatch.setenv("FMMLOOPY_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv(compiler_probe._INHERITED_ENV, raising=False)
    monkeypatch.setattr(compiler_probe, "_VERDICTS", {})
    verdict = compiler_probe.probe_verdict(device)
    assert set(verdict) == set(registered_programs())
    stored = list((tmp_path / "compiler-probes").glob("*.json"))
    assert len(stored) == 1 and json.loads(stored[0].read_text())["verdict"] == verdict

    def no_child(*args):
        raise AssertionError("probed again")
    monkeypatch.setattr(compiler_probe, "_run_child", no_child)
    monkeypatch.setattr(compiler_probe, "_VERDICTS", {})
    assert compiler_probe.probe_verdict(device) == verdict  # read back, no child
    # A process started from this one reads this one's verdicts (its own cache folder empty).
    monkeypatch.setenv("FMMLOOPY_CACHE_DIR", str(tmp_path / "child"))
    monkeypatch.setattr(compiler_probe, "_VERDICTS", {})
    assert os.environ[compiler_probe._INHERITED_ENV] == str(tmp_path / "compiler-probes")
    assert compiler_probe.probe_verdict(device) == verdict


@pytest.mark.parametrize("version,target,lanes", [
    ("OpenCL 3.0 PoCL HSTR: pthread-x86_64-unknown-linux-gnu-znver3", "znver3", 4),
    ("OpenCL 3.0 PoCL HSTR: pthread-x86_64-unknown-linux-gnu-skylake-avx512",
     "skylake-avx512", 8),
    ("OpenCL 3.0 PoCL HSTR: pthread-x86_64-unknown-linux-gnu-rocketlake", "rocketlake", 8),
    ("OpenCL 3.0 PoCL HSTR: pthread-x86_64-unknown-linux-gnu-znver5", "znver5", 8),
    ("OpenCL 3.0 PoCL HSTR: pthread-x86_64-unknown-linux-gnu-nehalem", "nehalem", 2),
    ("OpenCL 3.1 (Build 0)", None, None),
])
def test_the_width_is_bounded_by_the_cpu_the_compiler_targets(version, target, lanes,
                                                              monkeypatch):
    """PoCL 3.0 on a Zen 4 reports 8 doubles but targets znver3: recipes see 4."""
    device = SimpleNamespace(version=version, preferred_vector_width_double=8)
    assert devices.compiler_target(device) == target
    assert devices.target_doubles(device) == lanes
    assert devices._claimed_doubles(device) == (8 if lanes is None else min(8, lanes))


def _cpu(platform, version="OpenCL 3.0"):
    return SimpleNamespace(type=cl.device_type.CPU, platform=SimpleNamespace(name=platform),
                           vendor="AuthenticAMD", name=f"cpu of {platform}", version=version)


def test_the_default_ranks_pocl_that_knows_the_cpu_then_intel_then_pocl_that_does_not(
        monkeypatch):
    monkeypatch.setattr(devices, "host_doubles", lambda: 8)
    knows = _cpu("Portable Computing Language",
                 "OpenCL 3.0 PoCL HSTR: pthread-x86_64-unknown-linux-gnu-skylake-avx512")
    older = _cpu("Portable Computing Language",
                 "OpenCL 3.0 PoCL HSTR: pthread-x86_64-unknown-linux-gnu-znver3")
    intel = _cpu("Intel(R) OpenCL", "OpenCL 3.1 (Build 0)")
    gpu = SimpleNamespace(type=cl.device_type.GPU, platform=SimpleNamespace(name="NVIDIA CUDA"),
                          vendor="NVIDIA", name="gpu", version="OpenCL 3.0 CUDA")
    ranked = sorted([older, intel, knows, gpu], key=devices.expected_speed_rank)
    assert ranked == [gpu, knows, intel, older]
    monkeypatch.setattr(devices, "host_doubles", lambda: 4)  # an AVX2 CPU: znver3 is all of it
    assert sorted([intel, older], key=devices.expected_speed_rank) == [older, intel]
