"""The child process of :mod:`fmmloopy.base.compiler_probe`: builds and launches the probe
programs it reads from standard input on one OpenCL device, one line of JSON on standard output
per program (``start``, then ``ok`` or ``error``), flushed before the next step, so that the
parent sees which program a compiler that aborts the process was building.

Run as a script (by path, not as part of the package), it imports only the standard library,
NumPy and PyOpenCL: it starts in a fraction of a second.
"""

import json
import os
import sys


def _say(**fields) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def _run(request: dict) -> None:
    import numpy as np
    import pyopencl as cl

    device = next((d for p in cl.get_platforms() if p.name == request["platform"]
                   for d in p.get_devices() if d.name == request["device"]), None)
    if device is None:
        _say(name=None, status="error", message="device not found in the child process")
        return
    context = cl.Context([device])
    values = np.linspace(1.0, 2.0, request["size"])

    def probe(program: dict) -> None:
        _say(name=program["name"], status="start")
        if program["name"] == request.get("abort"):
            os.abort()  # a compiler that dies on this program (tests: FMMLOOPY_PROBE_ABORT)
        try:
            queue = cl.CommandQueue(context)
            buffer = cl.Buffer(context, cl.mem_flags.READ_WRITE | cl.mem_flags.COPY_HOST_PTR,
                               hostbuf=values.copy())
            built = cl.Program(context, program["source"]).build(
                options=program["options"], cache_dir=False)
            kernel = getattr(built, program["kernel"])
            kernel(queue, (program["global_size"],), (program["local_size"],), buffer)
            queue.finish()
            result = np.empty_like(values)
            cl.enqueue_copy(queue, result, buffer)
            _say(name=program["name"], status="ok", finite=bool(np.isfinite(result).all()))
        except cl.Error as exc:
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
            errors = [line for line in lines if "error" in line.lower() and "clBuild" not in line]
            _say(name=program["name"], status="error",
                 message=(errors or lines or [type(exc).__name__])[0])

    for program in request["programs"]:
        probe(program)


if __name__ == "__main__":
    _run(json.load(sys.stdin))
