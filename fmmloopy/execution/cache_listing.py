"""What ``fmmloopy cache list`` and ``fmmloopy cache clear`` show and delete: every file of the
kernel, program and operator caches, each with its status (why it would be rejected)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from fmmloopy.execution.cache_files import cache_dir
from fmmloopy.execution.kernel_cache import kernel_file_status, kernels_dir
from fmmloopy.execution.operator_cache import cache_file_status
from fmmloopy.execution.program_cache import program_file_status, programs_dir


@dataclass(frozen=True)
class CacheEntry:
    """One file of the kernel or operator cache, as ``fmmloopy cache list`` shows it."""

    path: Path
    kind: str  # "kernel", "program", "operators" or "temporary"
    size: int
    modified: float
    status: str  # "ok", or why it would be rejected

    def line(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(self.modified))
        return f"{self.kind:9s} {self.size:10d} B  {when}  {self.status:10s} {self.path.name}"


def cache_entries() -> list[CacheEntry]:
    """Every file of the kernel and operator caches (kernels, built programs, operator ``.npz``
    files, leftover temporary files), in name order."""
    entries = []
    for folder in (cache_dir(), kernels_dir(), programs_dir()):
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if not path.is_file():
                continue
            info = path.stat()
            if path.name.endswith(".tmp"):
                kind, status = "temporary", "leftover"
            elif folder == kernels_dir():
                kind, status = "kernel", kernel_file_status(path)
            elif folder == programs_dir():
                kind, status = "program", program_file_status(path)
            elif path.suffix == ".npz":
                kind, status = "operators", cache_file_status(path)
            else:
                continue
            entries.append(CacheEntry(path, kind, info.st_size, info.st_mtime, status))
    return entries


def clear_cache() -> tuple[int, int]:
    """Delete every file :func:`cache_entries` lists; (files, bytes) removed."""
    files = size = 0
    for entry in cache_entries():
        entry.path.unlink()
        files, size = files + 1, size + entry.size
    return files, size
