"""Robustness of the operator cache: stale temporary files, one build per entry, closed files.

These call :func:`fmmloopy.execution.operator_cache.load_or_build` with a cheap fake build, so they
take seconds, not the real precomputation.
"""

import gc
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings

import numpy as np
import pytest

from fmmloopy.execution import cache_files, operator_cache
from fmmloopy.execution.operator_cache import CacheFileError, OperatorCacheWarning
from fmmloopy.maths.green import LAPLACE_3D

KEY = operator_cache.operator_key(LAPLACE_3D, 2, 1e-12)
ARRAYS = {"m2l": np.arange(24.0).reshape(2, 3, 4), "l2l": np.eye(3)}
HOUR = 3600.0


def build():
    return {name: array.copy() for name, array in ARRAYS.items()}


def make(arrays):
    return arrays


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty cache directory (subprocesses inherit it through the environment)."""
    directory = tmp_path / "cache"
    monkeypatch.setenv(cache_files.CACHE_ENV, str(directory))
    return directory


def this_host():
    """The host name as the cache writes it into a temporary file's name."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())


def dead_pid():
    """The process id of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", ""])
    child.wait()
    return child.pid


def temporary(entry, writer, random, age=0.0):
    """A temporary file of ``entry`` as ``write_atomically`` names it, last modified ``age``
    seconds ago; ``writer`` is ``"<host>-<pid>."`` or empty (names before writer tags)."""
    return written(entry.with_name(f"{entry.name}.{writer}{random}.tmp"), age)


def written(path, age=0.0):
    """``path``, written and last modified ``age`` seconds ago."""
    path.write_bytes(b"part of an entry")
    when = time.time() - age
    os.utime(path, (when, when))
    return path


def test_stale_temporaries_are_removed_and_live_ones_kept(cache):
    entry = operator_cache.cache_path(KEY)
    other = entry.with_name("kifmm-laplace-order9-v2-0123456789abcdef.npz")
    cache.mkdir()
    host, dead, alive = this_host(), dead_pid(), os.getppid()
    stale = [
        temporary(other, f"{host}-{dead}.", "dead0001", age=300),  # its writer is gone
        temporary(other, f"{host}-{alive}.", "old00001", age=2 * HOUR),  # untouched for 2 h
        temporary(other, "", "legacy01", age=2 * HOUR),  # named before writer tags
        temporary(entry, "otherhost-1.", "remote01", age=2 * HOUR),
    ]
    kept = [
        temporary(other, f"{host}-{os.getpid()}.", "live0001"),  # this process: alive
        temporary(other, f"{host}-{alive}.", "live0002", age=300),  # alive, long write
        temporary(other, f"{host}-{dead}.", "fresh001", age=5),  # within the grace period
        temporary(other, f"otherhost-{dead}.", "remote02", age=300),  # no pid check elsewhere
        temporary(other, "", "legacy02", age=300),
        written(cache / "scratch.tmp", age=2 * HOUR),  # not the cache's own pattern
        written(cache / "notes.txt.abcdefgh.tmp", age=2 * HOUR),  # not a cache entry's
    ]
    operator_cache.load_or_build(KEY, build, make)
    assert [path.name for path in stale if path.exists()] == []
    assert [path.name for path in kept if not path.exists()] == []
    assert sorted(cache.iterdir()) == sorted([entry, *kept])


def test_writing_a_cache_file_removes_stale_temporaries_beside_it(cache):
    """The kernel cache writes with ``write_atomically`` too, in its own directory."""
    kernels = cache / "kernels"
    kernels.mkdir(parents=True)
    stale = temporary(kernels / "p2p-cpu-0123.json", f"{this_host()}-{dead_pid()}.", "dead0002",
                      age=300)
    cache_files.write_atomically(kernels / "m2l-cpu-4567.json", lambda s: s.write(b"{}"))
    assert not stale.exists()
    assert [path.name for path in kernels.iterdir()] == ["m2l-cpu-4567.json"]


_BUILD_IN_SUBPROCESS = """
import json, os, sys, time
from pathlib import Path
import numpy as np
from fmmloopy.execution import operator_cache

work, processes, key = Path(sys.argv[1]), int(sys.argv[2]), json.loads(sys.argv[3])
(work / f"ready-{os.getpid()}").touch()
while len(list(work.glob("ready-*"))) < processes:  # start together
    time.sleep(0.01)

def build():
    with open(work / "builds.log", "a") as log:
        log.write(f"{os.getpid()}\\n")
    (work / "building").touch()
    time.sleep(float(sys.argv[4]))
    return {"m2l": np.arange(24.0).reshape(2, 3, 4), "l2l": np.eye(3)}

arrays = operator_cache.load_or_build(key, build, lambda arrays: arrays)
print(operator_cache.array_checksum(arrays))
"""


def start_builders(work, processes, seconds):
    """``processes`` processes calling ``load_or_build`` on ``KEY`` once all have started; each
    build appends a line to ``work/builds.log`` and takes ``seconds``."""
    work.mkdir(exist_ok=True)
    command = [sys.executable, "-W", "error", "-c", _BUILD_IN_SUBPROCESS, str(work),
               str(processes), json.dumps(KEY), str(seconds)]
    return [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=os.environ.copy()) for _ in range(processes)]


def builds(work):
    log = work / "builds.log"
    return log.read_text().split() if log.exists() else []


def test_concurrent_processes_build_an_empty_entry_once(cache, tmp_path):
    work = tmp_path / "work"
    builders = start_builders(work, 3, seconds=1.0)
    outputs = [builder.communicate(timeout=30) for builder in builders]
    assert [builder.returncode for builder in builders] == [0, 0, 0], outputs
    assert len(builds(work)) == 1
    assert {stdout.strip() for stdout, _ in outputs} == {operator_cache.array_checksum(ARRAYS)}
    assert list(cache.iterdir()) == [operator_cache.cache_path(KEY)]  # no lock files left


def run_in_threads(calls, *builds):
    """Call ``load_or_build`` with each build in a thread of its own, each started once the
    previous one is building (or done); the results, or the exceptions raised."""
    results = [None] * len(builds)

    def call(index, build):
        try:
            results[index] = operator_cache.load_or_build(KEY, build, make)
        except Exception as error:
            results[index] = error

    threads = []
    for index, one in enumerate(builds):
        threads.append(threading.Thread(target=call, args=(index, one), daemon=True))
        threads[-1].start()
        deadline = time.monotonic() + 5
        while not calls and threads[-1].is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
    for thread in threads:
        thread.join(timeout=10)
    assert not any(thread.is_alive() for thread in threads), "deadlock"
    return results


def test_threads_build_once_and_a_failing_build_releases_the_lock(cache):
    calls = []

    def failing():
        calls.append("failing")
        time.sleep(0.5)
        raise RuntimeError("the build failed")

    def slow():
        calls.append("slow")
        time.sleep(0.3)
        return build()

    results = run_in_threads(calls, failing, slow, slow, slow)
    assert calls == ["failing", "slow"]  # the next thread builds, the others load its entry
    assert isinstance(results[0], RuntimeError)
    for arrays in results[1:]:
        np.testing.assert_array_equal(arrays["m2l"], ARRAYS["m2l"])
    assert list(cache.iterdir()) == [operator_cache.cache_path(KEY)]


def test_a_killed_builder_releases_the_lock(cache, tmp_path):
    work = tmp_path / "work"
    (holder,) = start_builders(work, 1, seconds=60)
    try:
        deadline = time.monotonic() + 8
        while not (work / "building").exists():
            assert holder.poll() is None and time.monotonic() < deadline, holder.communicate()
            time.sleep(0.01)
        built_at = []

        def waiting():
            built_at.append(time.monotonic())
            return build()

        waiter = threading.Thread(
            target=operator_cache.load_or_build, args=(KEY, waiting, make), daemon=True)
        waiter.start()
        time.sleep(0.5)
        assert built_at == [], "built while another process was building the entry"
        killed_at = time.monotonic()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.communicate(timeout=10)
    waiter.join(timeout=5)
    assert not waiter.is_alive()
    assert len(built_at) == 1 and built_at[0] > killed_at
    operator_cache.load_arrays(operator_cache.cache_path(KEY), KEY)
    assert list(cache.iterdir()) == [operator_cache.cache_path(KEY)]


def test_a_truncated_file_is_closed_and_rejected(cache):
    path = operator_cache.cache_path(KEY)
    operator_cache.load_or_build(KEY, build, make)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(CacheFileError, match="unreadable"):
            operator_cache.load_arrays(path, KEY)
        assert operator_cache.cache_file_status(path) == "corrupt"
        rebuilt = operator_cache.load_or_build(KEY, build, make)
        gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []
    (rejected,) = [str(w.message) for w in caught if w.category is OperatorCacheWarning]
    assert re.search(rf"rejected .*{path.name}: unreadable .*; rebuilding it", rejected)
    np.testing.assert_array_equal(rebuilt["m2l"], ARRAYS["m2l"])
    operator_cache.load_arrays(path, KEY)  # the rebuilt file is valid
