"""Set-up progress through the standard :mod:`logging` module.

An FMM's set-up runs in stages (sorting the points, the precomputed operators, the tree, the
lists, the kernels); a cold stage can take from seconds to minutes (code generation and OpenCL
builds, operators at a high order). Each stage is a :func:`stage`: on the logger ``fmmloopy``
(:data:`LOGGER`) it logs at DEBUG when it starts and ends, and at INFO where it is slow: once
it has run :data:`SLOW_STAGE_SECONDS` ("... still running"), and when it ends after that long.
So a handler at INFO shows only the stages a user waits for. The library adds no handler of its
own (a :class:`logging.NullHandler`); :func:`show_progress` adds one that prints them, as
``examples/laplace_sphere.py`` and the ``fmmloopy`` command do.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["LOGGER", "SLOW_STAGE_SECONDS", "show_progress", "stage"]

#: The logger every stage reports to (child loggers of ``fmmloopy`` may be added later).
LOGGER = logging.getLogger("fmmloopy")
LOGGER.addHandler(logging.NullHandler())

#: A stage that runs this long is reported at INFO (while it runs, and when it ends).
SLOW_STAGE_SECONDS = 2.0


@contextmanager
def stage(description: str) -> Iterator[None]:
    """Run the body as the set-up stage ``description`` (module docstring)."""
    LOGGER.debug("%s ...", description)
    start = time.perf_counter()
    timer = threading.Timer(SLOW_STAGE_SECONDS, LOGGER.info, (
        "%s ... (still running after %.0f s)", description, SLOW_STAGE_SECONDS))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        seconds = time.perf_counter() - start
        LOGGER.log(logging.INFO if seconds >= SLOW_STAGE_SECONDS else logging.DEBUG,
                   "%s: %.1f s", description, seconds)


def show_progress(stream=None, level: int = logging.INFO) -> logging.Handler:
    """Print fmmloopy's progress messages of ``level`` and above to ``stream`` (standard
    error by default), once however often it is called; returns the handler."""
    for handler in LOGGER.handlers:
        if getattr(handler, "fmmloopy_progress", False):
            return handler
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(logging.Formatter("fmmloopy: %(message)s"))
    handler.fmmloopy_progress = True
    LOGGER.addHandler(handler)
    LOGGER.setLevel(min(level, LOGGER.level or level))
    handler.setLevel(level)
    return handler
