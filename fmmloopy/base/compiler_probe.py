"""What an OpenCL device's compiler really builds, observed in a child process.

A compiler can abort the process that calls it: PoCL 3.0 from PyPI (LLVM 14) on an AMD Zen 4
targets ``znver3`` yet reports vectors of 8 doubles, and LLVM stops the process with ``Cannot
select`` on an 8-wide ``sqrt``. No error is raised to catch. So before a device's first kernels
are built, the programs registered here (:func:`register_probe_program`: a scalar one here,
and the layers above add what their recipes compile, e.g. each vector width's maths) are built
and launched in a child process (:mod:`fmmloopy.base.probe_child`) that reports each one as it
goes; a program the child dies on is reported with the child's last words (LLVM's message) and
the child is started again for the rest. The child uses a PoCL cache of its own, removed after,
so a build that died there leaves nothing behind.

The verdict, one entry per program (None where it built and ran, else why not), is kept per
process and on disk under fmmloopy's cache (``compiler-probes/``), keyed by everything it depends
on: the platform, device and driver versions, this CPU (model and instruction-set flags), the
programs' sources, and the environment variables that change what a runtime compiles
(:data:`COMPILE_ENVIRONMENT`); a process also reads the verdicts of the process that started
it. ``$FMMLOOPY_PROBE_ABORT`` names a program on which the child
aborts as a crashing compiler would (a testing aid, :func:`planted_abort`; part of the key).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from fmmloopy.base.cache_location import cache_dir

__all__ = ["COMPILE_ENVIRONMENT", "PROBE_ABORT_ENV", "ProbeProgram", "cpu_flags",
           "cpu_signature", "planted_abort", "probe_verdict", "register_probe_program",
           "registered_programs"]

#: Names a probe program on which the child process aborts (tests of the fallbacks).
PROBE_ABORT_ENV = "FMMLOOPY_PROBE_ABORT"
#: Environment variables that change what an OpenCL runtime compiles (Intel's target
#: instruction set; PoCL's target CPU and vectoriser), part of a verdict's key.
COMPILE_ENVIRONMENT = ("CL_CONFIG_CPU_TARGET_ARCH", "POCL_WORK_GROUP_METHOD")
#: Seconds one child may take (every program's build included) before it counts as hung.
CHILD_TIMEOUT = 300.0
#: Values of the buffer each probe kernel reads and writes.
BUFFER_SIZE = 256


@dataclass(frozen=True)
class ProbeProgram:
    """An OpenCL program to build and launch: ``kernel(__global double *x)`` over
    ``global_size`` work-items in groups of ``local_size`` (``x`` holds :data:`BUFFER_SIZE`
    doubles), with ``options`` as the build options. Recipes compile it where they assume
    vectors of ``min_doubles`` to ``max_doubles`` float64 lanes
    (:func:`fmmloopy.base.devices.vector_doubles`)."""

    name: str
    source: str
    kernel: str
    options: tuple[str, ...] = ()
    global_size: int = 16
    local_size: int = 16
    min_doubles: int = 1
    max_doubles: int = 64

    def needed_at(self, lanes: int) -> bool:
        """Whether recipes that assume ``lanes`` float64 lanes compile what this probes."""
        return self.min_doubles <= lanes <= self.max_doubles

    def as_request(self) -> dict:
        return {"name": self.name, "source": self.source, "kernel": self.kernel,
                "options": list(self.options), "global_size": self.global_size,
                "local_size": self.local_size}


#: The scalar program every device must build: float64 arithmetic, ``sqrt`` and ``rsqrt``.
SCALAR = ProbeProgram(
    "scalar",
    "__kernel void __attribute__((reqd_work_group_size(16, 1, 1))) "
    "fmmloopy_probe(__global double *x)\n"
    "{ int i = get_global_id(0); x[i] = sqrt(x[i]) + rsqrt(x[i] + 1.0) + 1.0 / x[i]; }\n",
    "fmmloopy_probe")

_PROGRAMS: dict[str, ProbeProgram] = {SCALAR.name: SCALAR}
_VERDICTS: dict[str, dict[str, str | None]] = {}
_LOCK = threading.Lock()


def register_probe_program(program: ProbeProgram) -> ProbeProgram:
    """Add ``program`` to what every device is probed with (a program of the same name is
    replaced); ``program``."""
    _PROGRAMS[program.name] = program
    return program


def registered_programs() -> dict[str, ProbeProgram]:
    """The probe programs by name."""
    return dict(_PROGRAMS)


@functools.lru_cache(maxsize=1)
def cpu_signature() -> str:
    """This CPU as a compiler sees it: its model name and instruction-set flags
    (``/proc/cpuinfo``; the platform's processor name elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        import platform
        return platform.processor() or platform.machine()
    fields = {}
    for line in text.splitlines():
        name, _, value = line.partition(":")
        name = name.strip()
        if name in ("model name", "flags", "vendor_id", "cpu family", "model") \
                and name not in fields:
            fields[name] = value.strip()
    return json.dumps(fields, sort_keys=True)


def cpu_flags() -> list[str]:
    """This CPU's instruction-set flags (``/proc/cpuinfo``), empty where unknown."""
    signature = cpu_signature()
    if not signature.startswith("{"):
        return []
    return json.loads(signature).get("flags", "").split()


def _device_description(device) -> dict:
    return {"platform": device.platform.name, "platform_version": device.platform.version,
            "device": device.name, "device_version": device.version,
            "driver": device.driver_version}


def _key(device, programs: dict[str, ProbeProgram]) -> str:
    described = _device_description(device) | {
        "cpu": cpu_signature(),
        "environment": {name: os.environ.get(name) for name in COMPILE_ENVIRONMENT},
        "abort": planted_abort(device),
        "programs": [programs[name].as_request() for name in sorted(programs)]}
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()


def planted_abort(device) -> str | None:
    """The probe program on which the child aborts on ``device``: ``$FMMLOOPY_PROBE_ABORT``,
    ``name`` (every device) or ``name@text`` (the devices whose name, or whose platform's name,
    is ``text``); None where nothing is planted."""
    planted = os.environ.get(PROBE_ABORT_ENV, "").strip()
    name, _, where = planted.partition("@")
    if not name or (where and where not in (device.name, device.platform.name)):
        return None
    return name


#: The verdicts folder of the process that started this one (inherited): read where this
#: process's own has no verdict (a test or a worker with a cache folder of its own probes
#: nothing its parent probed).
_INHERITED_ENV = "FMMLOOPY_PROBE_VERDICTS_FROM"


def _verdicts_dir() -> Path:
    return cache_dir() / "compiler-probes"


def _run_child(device, programs: list[ProbeProgram]) -> tuple[dict, str]:
    """Run one child on ``programs``: (what it reported by name, its last words)."""
    request = {"platform": device.platform.name, "device": device.name,
               "size": BUFFER_SIZE, "abort": planted_abort(device),
               "programs": [program.as_request() for program in programs]}
    with tempfile.TemporaryDirectory(prefix="fmmloopy-probe-") as scratch:
        environment = dict(os.environ, POCL_CACHE_DIR=scratch)
        try:
            finished = subprocess.run(
                [sys.executable, str(Path(__file__).with_name("probe_child.py"))],
                input=json.dumps(request), capture_output=True, text=True,
                timeout=CHILD_TIMEOUT, env=environment)
            stdout, stderr, code = finished.stdout, finished.stderr, finished.returncode
        except subprocess.TimeoutExpired as exc:
            stdout = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
            stderr, code = f"no answer within {CHILD_TIMEOUT:.0f} s", None
    reports = {}
    for line in stdout.splitlines():
        try:
            report = json.loads(line)
        except json.JSONDecodeError:
            continue
        reports[report.get("name")] = report
    words = [line.strip() for line in (stderr or "").splitlines() if line.strip()]
    last = next((line for line in words if "LLVM ERROR" in line or "error" in line.lower()),
                words[-1] if words else "")
    if code is not None and code < 0:
        last = f"{last} (the child process died of signal {-code})".strip()
    elif code not in (0, None):
        last = f"{last} (the child process exited with {code})".strip()
    return reports, last


def _probe(device, programs: dict[str, ProbeProgram]) -> dict[str, str | None]:
    verdict: dict[str, str | None] = {}
    remaining = [programs[name] for name in sorted(programs, key=lambda n: n != SCALAR.name)]
    while remaining:
        reports, last_words = _run_child(device, remaining)
        if None in reports:  # the child could not find the device
            for program in remaining:
                verdict[program.name] = reports[None].get("message", "device not found")
            break
        left = []
        for program in remaining:
            report = reports.get(program.name)
            if report is None:
                left.append(program)
            elif report["status"] == "ok":
                verdict[program.name] = None
            elif report["status"] == "error":
                verdict[program.name] = report.get("message") or "build failed"
            else:  # started, never finished: the compiler took the process down
                verdict[program.name] = ("the compiler aborted the process: "
                                         + (last_words or "no message"))
        if len(left) == len(remaining):  # the child died before its first program
            for program in left:
                verdict[program.name] = f"the probe's process failed: {last_words}"
            break
        remaining = left
    return verdict


def probe_verdict(device) -> dict[str, str | None]:
    """For each registered probe program, None where ``device`` builds and runs it, else why
    not; probed in a child process once per device, runtime, CPU and program set (kept on
    disk)."""
    programs = registered_programs()
    key = _key(device, programs)
    with _LOCK:
        if key in _VERDICTS:
            return _VERDICTS[key]
        path = _verdicts_dir() / f"{key}.json"
        inherited = os.environ.get(_INHERITED_ENV)
        verdict = None
        for candidate in [path] + ([Path(inherited) / path.name] if inherited else []):
            verdict = _stored(candidate, key, programs)
            if verdict is not None:
                break
        if verdict is None:
            verdict = _probe(device, programs)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                temporary = path.with_suffix(f".{os.getpid()}.tmp")
                temporary.write_text(json.dumps({"key": key, "device": _device_description(
                    device), "verdict": verdict}, indent=1, sort_keys=True))
                os.replace(temporary, path)
            except OSError:
                pass  # kept for this process only
        _VERDICTS[key] = verdict
        os.environ.setdefault(_INHERITED_ENV, str(_verdicts_dir()))
        return verdict


def _stored(path: Path, key: str, programs: dict[str, ProbeProgram]) -> dict | None:
    try:
        stored = json.loads(path.read_text())
        if stored.get("key") == key and set(stored["verdict"]) == set(programs):
            return stored["verdict"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None
