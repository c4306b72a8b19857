"""Run FMM3D's own Python tests and examples against ``fmmloopy.fmm3d``, the import changed.

Usage: ``python benchmarks/fmm3d_own_tests.py FMM3D_DIR [--only NAME ...]``, ``FMM3D_DIR`` a
checkout of https://github.com/flatironinstitute/FMM3D (or a bare git directory of one: its
``HEAD`` is read). Each of ``python/test/*.py`` and ``python/examples/*.py`` is read from there,
its line ``import fmm3dpy as fmm`` replaced by ``import fmmloopy.fmm3d as fmm`` (the only change;
nothing of FMM3D is copied into this repository), and run in a process of its own in a scratch
folder. A test passes where it exits 0, prints no ``Failed`` line and, for the test files,
prints FMM3D's ``all ... tests succeeded``; the report lists each file's outcome, seconds and,
where it failed, its last lines.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ORIGINAL_IMPORT = "import fmm3dpy as fmm"
REPLACEMENT = "import fmmloopy.fmm3d as fmm"


def fmm3d_files(where: Path) -> dict[str, str]:
    """``python/test/*.py`` and ``python/examples/*.py`` of a checkout or a bare git directory,
    by path."""
    if (where / "python").is_dir():
        return {str(path.relative_to(where)): path.read_text()
                for folder in ("python/test", "python/examples")
                for path in sorted((where / folder).glob("*.py"))}
    listed = subprocess.run(["git", "--git-dir", str(where), "ls-tree", "-r", "--name-only",
                             "HEAD", "python/test", "python/examples"],
                            capture_output=True, text=True, check=True).stdout.split()
    return {name: subprocess.run(["git", "--git-dir", str(where), "show", f"HEAD:{name}"],
                                 capture_output=True, text=True, check=True).stdout
            for name in listed if name.endswith(".py")}


def run_one(name: str, source: str, scratch: Path) -> dict:
    """One file run with the import changed: its outcome, seconds and last lines."""
    if ORIGINAL_IMPORT not in source:
        return {"name": name, "ok": False, "seconds": 0.0,
                "tail": f"no line {ORIGINAL_IMPORT!r} to change"}
    script = scratch / Path(name).name
    script.write_text(source.replace(ORIGINAL_IMPORT, REPLACEMENT))
    clock = time.perf_counter()
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          cwd=scratch)
    seconds = time.perf_counter() - clock
    output = done.stdout + done.stderr
    failed = [line for line in output.splitlines() if line.startswith("Failed")]
    succeeded = "/test/" not in name or "tests succeeded" in done.stdout
    return {"name": name, "ok": done.returncode == 0 and not failed and succeeded,
            "seconds": seconds, "failed": failed,
            "tail": "\n".join(output.strip().splitlines()[-8:])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("fmm3d", type=Path, help="an FMM3D checkout or bare git directory")
    parser.add_argument("--only", nargs="+", help="run only the files whose names hold these")
    args = parser.parse_args()
    files = fmm3d_files(args.fmm3d)
    if args.only:
        files = {name: text for name, text in files.items()
                 if any(part in name for part in args.only)}
    results = []
    with tempfile.TemporaryDirectory(prefix="fmm3d-tests-") as scratch:
        for name, source in files.items():
            result = run_one(name, source, Path(scratch))
            results.append(result)
            print(f"{'ok  ' if result['ok'] else 'FAIL'} {name} ({result['seconds']:.1f} s)",
                  flush=True)
            if not result["ok"]:
                print("     " + result["tail"].replace("\n", "\n     "), flush=True)
    passed = sum(result["ok"] for result in results)
    print(f"{passed} of {len(results)} of FMM3D's Python tests and examples passed")
    raise SystemExit(0 if passed == len(results) else 1)


if __name__ == "__main__":
    main()
